//! Standard Webhooks signatures (v1, HMAC-SHA256), used both to sign outbound webhooks and to
//! verify inbound ones, and the GitHub-style `X-Hub-Signature-256`.
//!
//! Signed content: `{webhook-id}.{webhook-timestamp}.{body}`; header `webhook-signature`:
//! space-separated `v1,<base64>`, one per active secret (rotation). Secrets are `whsec_` +
//! base64; the HMAC key is the decoded bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A `whsec_` secret, decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; the error never repeats the secret.
    pub fn parse(text: &str) -> Result<WebhookSecret, String> {
        let b64 = text
            .trim()
            .strip_prefix("whsec_")
            .ok_or("a webhook secret must start with whsec_")?;
        let key = STANDARD
            .decode(b64)
            .map_err(|_| "the part after whsec_ is not valid base64".to_string())?;
        if key.len() < 16 {
            return Err(format!(
                "a webhook secret must decode to at least 16 bytes (this one has {})",
                key.len()
            ));
        }
        Ok(WebhookSecret { key })
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length")
    }

    fn signed(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64>` for this secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.signed(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

/// The `webhook-signature` header value: one `v1,…` per secret, space-separated.
pub fn sign_webhook(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `sha256=<hex>` for `X-Hub-Signature-256` (key: the secret's bytes as given).
pub fn hub_signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why an inbound webhook is refused (each maps to a precise 401 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("header webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {0} s away from now, outside the tolerance of {1} s")]
    OutsideTolerance(i64, u64),
    #[error("no v1 signature in webhook-signature matches the body with any configured secret")]
    BadSignature,
}

/// The signature headers of an inbound webhook, checked before its body is read: all present,
/// the timestamp a Unix time within the tolerance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders<'a> {
    pub id: &'a str,
    /// `webhook-timestamp`, Unix seconds.
    pub timestamp: i64,
    signatures: Vec<Vec<u8>>,
}

/// Most `v1` signatures looked at in one header (rotation needs two or three).
const MAX_SIGNATURES: usize = 16;

/// Checks the Standard Webhooks headers alone: what can be refused before reading a body.
pub fn check_webhook_headers<'a>(
    id: Option<&'a str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: i64,
    tolerance_s: u64,
) -> Result<SignedHeaders<'a>, VerifyError> {
    let id = id.ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = timestamp.ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signature = signature.ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    // Saturating: a hostile timestamp such as i64::MIN must be refused, not overflow.
    let skew = now.saturating_sub(ts);
    if skew.unsigned_abs() > tolerance_s {
        return Err(VerifyError::OutsideTolerance(skew, tolerance_s));
    }
    let signatures = signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .take(MAX_SIGNATURES)
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .collect();
    Ok(SignedHeaders {
        id,
        timestamp: ts,
        signatures,
    })
}

impl SignedHeaders<'_> {
    /// Verifies the body: some configured secret's HMAC matches some `v1` signature. Each
    /// secret hashes the body once, whatever the number of signatures (linear in the body),
    /// and every comparison is constant-time.
    pub fn verify(&self, secrets: &[WebhookSecret], body: &[u8]) -> Result<(), VerifyError> {
        for secret in secrets {
            let mac = secret.signed(self.id, self.timestamp, body);
            for candidate in &self.signatures {
                // `verify_slice` compares in constant time; the clone only copies the state.
                if mac.clone().verify_slice(candidate).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(VerifyError::BadSignature)
    }
}

/// Verifies an inbound webhook's signature and timestamp. `now` and the timestamp are Unix
/// seconds. Every configured secret is tried against every `v1` signature, in constant time.
pub fn verify_webhook(
    secrets: &[WebhookSecret],
    id: Option<&str>,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    tolerance_s: u64,
) -> Result<(), VerifyError> {
    check_webhook_headers(id, timestamp, signature, now, tolerance_s)?.verify(secrets, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;

    #[test]
    fn standard_webhooks_published_vector() {
        let s = WebhookSecret::parse(SECRET).unwrap();
        assert_eq!(
            s.sign(ID, TS, BODY),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            verify_webhook(&[s], Some(ID), Some("1614265330"), Some(sig), BODY, TS, 300),
            Ok(())
        );
    }

    #[test]
    fn github_published_vector() {
        assert_eq!(
            hub_signature(b"It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn rotation_and_every_failure_reason() {
        let old = WebhookSecret::parse(SECRET).unwrap();
        let new = WebhookSecret::parse("whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==").unwrap();
        let both = [old.clone(), new.clone()];
        let header = sign_webhook(&both, ID, TS, BODY);
        assert_eq!(header.split(' ').count(), 2);
        // A verifier with only one of the secrets accepts the pair (rotation).
        for only in [&old, &new] {
            let v = verify_webhook(
                std::slice::from_ref(only),
                Some(ID),
                Some("1614265330"),
                Some(&header),
                BODY,
                TS,
                300,
            );
            assert_eq!(v, Ok(()));
        }
        let sig = old.sign(ID, TS, BODY);
        let v = |id: Option<&str>, ts: Option<&str>, sig: Option<&str>, body: &[u8], now: i64| {
            verify_webhook(std::slice::from_ref(&new), id, ts, sig, body, now, 300)
        };
        assert_eq!(
            v(Some(ID), Some("1614265330"), Some(&sig), BODY, TS),
            Err(VerifyError::BadSignature)
        );
        let good = new.sign(ID, TS, BODY);
        assert_eq!(
            v(
                Some(ID),
                Some("1614265330"),
                Some(&good),
                b"{\"test\": 1}",
                TS
            ),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            v(None, Some("1"), Some(&good), BODY, TS),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
        assert_eq!(
            v(Some(ID), Some("soon"), Some(&good), BODY, TS),
            Err(VerifyError::BadTimestamp)
        );
        assert_eq!(
            v(Some(ID), Some("1614265330"), Some(&good), BODY, TS + 301),
            Err(VerifyError::OutsideTolerance(301, 300))
        );
        assert_eq!(
            v(Some(ID), Some("1614265330"), Some(&good), BODY, TS - 400),
            Err(VerifyError::OutsideTolerance(-400, 300))
        );
        // Found by fuzzing: extreme timestamps are refused instead of overflowing.
        assert_eq!(
            v(
                Some(ID),
                Some("-9223372036854775808"),
                Some(&good),
                BODY,
                TS
            ),
            Err(VerifyError::OutsideTolerance(i64::MAX, 300))
        );
        assert_eq!(
            v(
                Some(ID),
                Some("9223372036854775807"),
                Some(&good),
                BODY,
                -TS
            ),
            Err(VerifyError::OutsideTolerance(i64::MIN, 300))
        );
        assert_eq!(
            v(Some(ID), Some("1614265330"), Some("v2,abc v1,!!"), BODY, TS),
            Err(VerifyError::BadSignature)
        );
    }

    #[test]
    fn secrets_must_be_whsec_base64() {
        assert!(WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(WebhookSecret::parse("whsec_***").is_err());
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=")
            .unwrap_err()
            .contains("at least 16 bytes"));
        assert_eq!(
            format!("{:?}", WebhookSecret::parse(SECRET).unwrap()),
            "WebhookSecret(<redacted>)"
        );
    }
}
