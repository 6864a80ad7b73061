//! Standard Webhooks verification with hostile headers: never panics, and a body signed with
//! a configured secret always verifies while any change to it does not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_event::{sign_webhook, verify_webhook, WebhookSecret};

const SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";
const NOW: i64 = 1_764_547_200;

fuzz_target!(|data: &[u8]| {
    let secrets = [WebhookSecret::parse(SECRET).unwrap()];
    // Split the input into headers and body.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\n');
    let id = parts.next();
    let ts = parts.next();
    let sig = parts.next();
    let body = parts.next().unwrap_or("").as_bytes();
    let _ = verify_webhook(&secrets, id, ts, sig, body, NOW, 300);

    // Round trip: a genuine signature verifies; the same with one body byte flipped does not.
    let id = id.unwrap_or("msg");
    let signature = sign_webhook(&secrets, id, NOW, body);
    let now_s = NOW.to_string();
    assert!(verify_webhook(
        &secrets,
        Some(id),
        Some(&now_s),
        Some(&signature),
        body,
        NOW,
        300
    )
    .is_ok());
    if !body.is_empty() {
        let mut altered = body.to_vec();
        altered[0] ^= 1;
        assert!(verify_webhook(
            &secrets,
            Some(id),
            Some(&now_s),
            Some(&signature),
            &altered,
            NOW,
            300
        )
        .is_err());
    }
});
