//! End-to-end: HTTPS on the ingest listener (`[api.tls]`) and client certificates mapped to
//! tenants (`[[api.tls.clients]]`, by DNS name or by fingerprint).

mod support;

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
use sha2::{Digest, Sha256};
use support::*;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// (certificate PEM, key PEM, certificate DER) for these names, signed by `ca`.
fn leaf(ca: &Ca, names: &[&str], ip: bool) -> (String, String, Vec<u8>) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    if ip {
        p.subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    }
    let cert = p.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

struct Pki {
    ca_pem: String,
    acme: (String, String),
    globex: (String, String),
    stranger: (String, String),
    rogue: (String, String),
}

fn setup(dir: &Path, client_auth: &str) -> (std::path::PathBuf, Pki) {
    let ca1 = ca("thoth ingest CA");
    let other = ca("some other CA");
    let (server_cert, server_key, _) = leaf(&ca1, &["localhost"], true);
    let (acme_cert, acme_key, _) = leaf(&ca1, &["proxy.acme.example"], false);
    let (globex_cert, globex_key, globex_der) = leaf(&ca1, &["anything.globex.example"], false);
    let (stranger_cert, stranger_key, _) = leaf(&ca1, &["stranger.example"], false);
    let (rogue_cert, rogue_key, _) = leaf(&other, &["proxy.acme.example"], false);
    std::fs::write(dir.join("server.pem"), &server_cert).unwrap();
    std::fs::write(dir.join("server.key"), &server_key).unwrap();
    std::fs::write(dir.join("clients-ca.pem"), ca1.cert.pem()).unwrap();
    let fingerprint = hex::encode(Sha256::digest(&globex_der));
    let tls = format!(
        r#"
[api.tls]
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "clients-ca.pem"
client_auth = "{client_auth}"
[[api.tls.clients]]
dns_name = "proxy.acme.example"
tenant_id = "acme"
[[api.tls.clients]]
sha256 = "{fingerprint}"
tenant_id = "globex"
"#
    );
    // `[api.tls]` belongs inside `[api]`: put it right after the token entries.
    let text = config_text(dir, "", "", "").replace("\n[wal]\n", &format!("{tls}\n[wal]\n"));
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    (
        cfg,
        Pki {
            ca_pem: ca1.cert.pem(),
            acme: (acme_cert, acme_key),
            globex: (globex_cert, globex_key),
            stranger: (stranger_cert, stranger_key),
            rogue: (rogue_cert, rogue_key),
        },
    )
}

fn https_client(pki: &Pki, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    client_trusting(&pki.ca_pem, identity)
}

/// An HTTPS client trusting only `ca_pem`, presenting `identity` (certificate, key) if given.
fn client_trusting(ca_pem: &str, identity: Option<&(String, String)>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn post(
    c: &reqwest::blocking::Client,
    gw: &Gateway,
    token: Option<&str>,
    line: String,
) -> Result<(u16, String), String> {
    let url = format!(
        "https://localhost:{}/v1/events",
        gw.addr.rsplit(':').next().unwrap()
    );
    let mut req = c
        .post(url)
        .header("content-type", "application/x-ndjson")
        .body(line);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().unwrap_or_default();
    Ok((status, body["error"].as_str().unwrap_or("").to_string()))
}

#[test]
fn client_certificates_stand_for_their_tenant_and_tokens_still_work_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, pki) = setup(dir.path(), "optional");
    let gw = Gateway::start(&cfg);
    assert!(
        gw.logs().contains("scheme=\"https\"") || gw.logs().contains("https"),
        "{}",
        gw.logs()
    );

    let acme = https_client(&pki, Some(&pki.acme));
    assert_eq!(
        post(&acme, &gw, None, decision("mtls-1", "acme", "ep-1001")),
        Ok((200, String::new()))
    );
    assert_eq!(
        post(&acme, &gw, None, decision("mtls-x", "globex", "ep-2001")),
        Ok((403, "forbidden_tenant".into())),
        "a certificate of acme cannot submit for globex"
    );
    let globex = https_client(&pki, Some(&pki.globex));
    assert_eq!(
        post(&globex, &gw, None, decision("mtls-2", "globex", "ep-2001")),
        Ok((200, String::new()))
    );
    // A valid but unmapped certificate authenticates nobody; a token still does.
    let stranger = https_client(&pki, Some(&pki.stranger));
    assert_eq!(
        post(&stranger, &gw, None, decision("mtls-y", "acme", "ep-1001")),
        Ok((401, "unauthorized".into()))
    );
    assert_eq!(
        post(
            &stranger,
            &gw,
            Some("acme-token"),
            decision("mtls-3", "acme", "ep-1001")
        ),
        Ok((200, String::new()))
    );
    // No certificate at all (client_auth = optional): tokens work over HTTPS.
    let anonymous = https_client(&pki, None);
    assert_eq!(
        post(
            &anonymous,
            &gw,
            Some("globex-token"),
            decision("mtls-4", "globex", "ep-2001")
        ),
        Ok((200, String::new()))
    );
    // A certificate from another CA fails the handshake.
    let rogue = https_client(&pki, Some(&pki.rogue));
    assert!(post(&rogue, &gw, None, decision("mtls-z", "acme", "ep-1001")).is_err());
    // Plain HTTP to the TLS port gets no answer from the API.
    let plain = client()
        .post(gw.url("/v1/events"))
        .bearer_auth("acme-token")
        .header("content-type", "application/x-ndjson")
        .body(decision("mtls-plain", "acme", "ep-1001"))
        .send();
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200);

    for id in ["mtls-1", "mtls-2", "mtls-3", "mtls-4"] {
        wait_for_event(dir.path(), id);
    }
    let out = read_out(dir.path());
    assert!(!out.iter().any(|e| {
        let id = e["event_id"].as_str().unwrap();
        id == "mtls-x" || id == "mtls-y" || id == "mtls-z" || id == "mtls-plain"
    }));
}

#[test]
fn required_client_certificates_refuse_anonymous_connections_and_validate_checks_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (cfg, pki) = setup(dir.path(), "required");
    let gw = Gateway::start(&cfg);
    let anonymous = https_client(&pki, None);
    assert!(post(
        &anonymous,
        &gw,
        Some("acme-token"),
        decision("req-1", "acme", "ep-1001")
    )
    .is_err());
    let acme = https_client(&pki, Some(&pki.acme));
    assert_eq!(
        post(&acme, &gw, None, decision("req-2", "acme", "ep-1001")),
        Ok((200, String::new()))
    );
    drop(gw);

    // A key that does not belong to the certificate: validate names api.tls.
    let (_, other_key, _) = leaf(&ca("x"), &["localhost"], true);
    std::fs::write(dir.path().join("server.key"), other_key).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["validate", "--json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["errors"][0]["path"], "api.tls", "{report}");
}

#[test]
fn a_wildcard_certificate_stands_for_no_tenant_and_an_admin_certificate_reaches_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let ca1 = ca("thoth ingest CA");
    let (server_cert, server_key, _) = leaf(&ca1, &["localhost"], true);
    std::fs::write(dir.path().join("server.pem"), &server_cert).unwrap();
    std::fs::write(dir.path().join("server.key"), &server_key).unwrap();
    std::fs::write(dir.path().join("clients-ca.pem"), ca1.cert.pem()).unwrap();
    let tls = r#"
[api.tls]
cert_file = "server.pem"
key_file = "server.key"
client_ca_file = "clients-ca.pem"
[[api.tls.clients]]
dns_name = "a.tenants.example"
tenant_id = "acme"
[[api.tls.clients]]
dns_name = "b.tenants.example"
tenant_id = "globex"
[[api.tls.clients]]
dns_name = "ops.example"
admin = true
"#;
    let text = config_text(dir.path(), "", "", "").replace("\n[wal]\n", &format!("{tls}\n[wal]\n"));
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);
    let pki = |names: &[&str]| {
        let (cert, key, _) = leaf(&ca1, names, false);
        client_trusting(&ca1.cert.pem(), Some(&(cert, key)))
    };
    let https = |path: &str| {
        format!(
            "https://localhost:{}{path}",
            gw.addr.rsplit(':').next().unwrap()
        )
    };

    // A certificate valid for *.tenants.example would match both tenants' entries: it
    // stands for neither.
    let wildcard = pki(&["*.tenants.example"]);
    assert_eq!(
        post(&wildcard, &gw, None, decision("wild-1", "acme", "ep-1001")),
        Ok((401, "unauthorized".into()))
    );
    assert_eq!(
        post(
            &wildcard,
            &gw,
            None,
            decision("wild-2", "globex", "ep-2001")
        ),
        Ok((401, "unauthorized".into()))
    );
    // A certificate for both exact names matches two entries: neither either.
    let both = pki(&["a.tenants.example", "b.tenants.example"]);
    assert_eq!(
        post(&both, &gw, None, decision("both-1", "acme", "ep-1001")),
        Ok((401, "unauthorized".into()))
    );
    // The exact name stands for its tenant.
    let a = pki(&["a.tenants.example"]);
    assert_eq!(
        post(&a, &gw, None, decision("exact-1", "acme", "ep-1001")),
        Ok((200, String::new()))
    );
    assert_eq!(
        a.get(https("/v1/endpoints/acme/ep-7f3a"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        403,
        "a tenant's certificate is no admin"
    );
    // An admin certificate reaches the admin endpoints.
    let ops = pki(&["ops.example"]);
    let resp = ops.get(https("/v1/endpoints/acme/ep-7f3a")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let held: serde_json::Value = resp.json().unwrap();
    assert_eq!(held["context"]["endpoint"]["hostname"], "mbp-jdoe");
    assert_eq!(
        ops.post(https("/v1/reload"))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    wait_for_event(dir.path(), "exact-1");
    assert!(!read_out(dir.path()).iter().any(|e| e["event_id"]
        .as_str()
        .unwrap()
        .starts_with("wild")
        || e["event_id"] == "both-1"));
}
