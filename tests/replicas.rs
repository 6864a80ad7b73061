//! Several replicas behind one load balancer share their small state through a real
//! `redis-server`: a signed webhook accepted at one replica is a replay at every other, a
//! token's rate limit holds for the fleet, and an unreachable server costs no request (local
//! fallback, `degraded` health) until it returns.
//!
//! Each test starts its own `redis-server`; without one installed the tests say SKIPPED and
//! pass (`.ci/run` installs it).

mod support;

use std::path::Path;

use serde_json::Value;
use support::receiver::sign;
use support::redis::RedisServer;
use support::*;

const HOOK_SECRET: &str = "whsec_c2Vjb25kLXNlY3JldC0wMTIzNDU2Nzg5YWJjZA==";

/// A replica: the test config plus `[state]` on `redis`, a webhook source and a token of one
/// event per second.
fn replica(dir: &Path, redis: &RedisServer, name: &str, state_extra: &str) -> Gateway {
    let more = format!(
        "[[api.tokens]]\ntenant_id = \"acme\"\ntoken = \"limited-token\"\nmax_events_per_second = 1\n\
         [[sources.webhooks]]\nname = \"govapi\"\ntenant_id = \"acme\"\nsecrets = [\"{HOOK_SECRET}\"]\ntolerance = \"300s\"\n\
         [state]\nbackend = \"redis\"\nurl = \"{}\"\nreplica_id = \"{name}\"\nkey_prefix = \"test:\"\n{state_extra}\n",
        redis.url()
    );
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config_text(&dir, "", "", &more)).unwrap();
    let gw = Gateway::start(&cfg);
    wait_until("the replica reaches the shared state", || {
        gw.health()["state"]["ok"] == true
    });
    gw
}

fn hook(gw: &Gateway, id: &str, ts: i64) -> (u16, Value) {
    let body = format!(r#"{{"type":"alert","event_id":"{id}","tenant_id":"acme","title":"x"}}"#);
    let resp = client()
        .post(gw.url("/v1/hooks/govapi"))
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(HOOK_SECRET, id, ts, body.as_bytes()),
        )
        .body(body)
        .send()
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `n` decisions with ids unique in the test binary.
fn decisions(n: usize) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    (0..n)
        .map(|_| {
            let i = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!(
                "{{\"type\":\"decision\",\"event_id\":\"d-{i}\",\"tenant_id\":\"acme\",\"endpoint_id\":\"ep-1001\",\"decision\":\"allow\",\"risk\":\"low\"}}\n"
            )
        })
        .collect()
}

fn metric(gw: &Gateway, line_start: &str) -> Option<f64> {
    gw.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn a_webhook_accepted_at_one_replica_is_a_replay_at_every_other() {
    let Some(redis) = RedisServer::start("replicas::replay") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let fleet: Vec<Gateway> = ["a", "b", "c"]
        .iter()
        .map(|n| replica(dir.path(), &redis, n, ""))
        .collect();
    let ts = now_s();
    assert_eq!(hook(&fleet[0], "msg-fleet-1", ts).0, 200);
    for gw in &fleet[1..] {
        let (status, body) = hook(gw, "msg-fleet-1", ts);
        assert_eq!(status, 401, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("(replay)"),
            "{body}"
        );
    }
    // Concurrent copies at all three: exactly one is accepted.
    let ts = now_s();
    let answers: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = fleet
            .iter()
            .flat_map(|gw| [gw, gw])
            .map(|gw| s.spawn(move || hook(gw, "msg-fleet-2", ts).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|&&s| s == 200).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|&&s| s == 401).count(),
        5,
        "{answers:?}"
    );
    assert!(
        metric(
            &fleet[1],
            "thoth_state_ops_total{op=\"replay\",outcome=\"conflict\"} "
        )
        .unwrap()
            >= 1.0
    );
}

#[test]
fn a_tokens_rate_limit_holds_for_the_fleet() {
    let Some(redis) = RedisServer::start("replicas::rate") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), &redis, "a", "");
    let b = replica(dir.path(), &redis, "b", "");
    let c = client();
    // One event per second: a batch of 30 passes on a full bucket and leaves 29 s of debt,
    // which the other replica sees.
    let (status, body, _) = post_ndjson(&c, &a, "limited-token", decisions(30));
    assert_eq!(status, 200, "{body}");
    let (status, body, headers) = post_ndjson(&c, &b, "limited-token", decisions(1));
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "rate_limited");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((20..=30).contains(&retry), "Retry-After {retry}");
    // Other tokens are not limited.
    assert_eq!(post_ndjson(&c, &b, "acme-token", decisions(5)).0, 200);
    assert!(metric(&b, "thoth_state_ops_total{op=\"rate\",outcome=\"ok\"} ").unwrap() >= 1.0);
}

#[test]
fn an_unreachable_server_costs_no_request_and_health_recovers_when_it_returns() {
    let Some(mut redis) = RedisServer::start("replicas::unreachable") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), &redis, "a", "expected_replicas = 2");
    let health = a.health();
    assert_eq!(health["state"]["backend"], "redis", "{health}");
    assert_eq!(metric(&a, "thoth_state_up "), Some(1.0));

    let c = client();
    // Under load (two senders posting decisions), the server is killed: every batch is
    // accepted before, during and after, and none waits on the server.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let accepted = std::thread::scope(|s| {
        let senders: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let c = client();
                    let mut batches = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) || batches < 10 {
                        let (status, body, _) = post_ndjson(&c, &a, "acme-token", decisions(50));
                        assert_eq!(status, 200, "{body}");
                        batches += 1;
                    }
                    batches * 50
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(300));
        redis.kill9();
        std::thread::sleep(std::time::Duration::from_millis(700));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        senders.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    }) as usize;
    wait_until("health says degraded", || {
        let h = a.health();
        h["status"] == "degraded" && h["state"]["ok"] == false
    });
    let h = a.health();
    let error = h["state"]["last_error"].as_str().unwrap();
    assert!(error.starts_with("redis"), "{h}");
    assert!(!error.contains("127.0.0.1:"), "the URL is never shown: {h}");
    assert_eq!(metric(&a, "thoth_state_up "), Some(0.0));

    // Replay ids fall back to the replica's own cache.
    let ts = now_s();
    assert_eq!(hook(&a, "msg-down-1", ts).0, 200);
    assert_eq!(hook(&a, "msg-down-1", ts).0, 401);
    // The rate limit falls back to a local bucket of limit / expected_replicas (≥ 1).
    assert_eq!(post_ndjson(&c, &a, "limited-token", decisions(1)).0, 200);
    assert_eq!(post_ndjson(&c, &a, "limited-token", decisions(1)).0, 429);
    assert!(
        metric(
            &a,
            "thoth_state_ops_total{op=\"rate\",outcome=\"fallback\"} "
        )
        .unwrap()
            >= 1.0
    );

    redis.restart();
    wait_until("health is ok again", || {
        let h = a.health();
        h["state"]["ok"] == true && h["status"] == "ok"
    });
    assert_eq!(metric(&a, "thoth_state_up "), Some(1.0));
    // And the shared state is used again.
    assert_eq!(hook(&a, "msg-up-1", now_s()).0, 200);
    let key = redis
        .command("EXISTS test:replay:govapi:msg-up-1\r\n")
        .unwrap();
    assert_eq!(key.trim(), ":1", "the claim is in the server");
    // Everything accepted while the server was gone was delivered.
    let delivered = || {
        read_out(&dir.path().join("a"))
            .iter()
            .filter(|e| e["type"] == "decision")
            .count()
    };
    // Everything accepted, plus the one rate-limited decision, was delivered.
    wait_until("every accepted decision delivered", || {
        delivered() > accepted
    });
    assert_eq!(delivered(), accepted + 1);
}

#[test]
fn validate_checks_the_state_section_without_showing_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "backend = \"memcached\"",
            "state.backend: \"memcached\" is not a state backend (local, redis)",
        ),
        (
            "backend = \"redis\"",
            "state.url: backend = \"redis\" needs `url` or `url_file`",
        ),
        (
            "backend = \"redis\"\nurl = \"http://user:hunter2@redis:6379\"",
            "state.url: not a redis:// or rediss:// URL",
        ),
        (
            "backend = \"local\"\nurl = \"redis://x\"",
            "state.url: only read with backend = \"redis\"",
        ),
        (
            "backend = \"redis\"\nurl = \"redis://x\"\nexpected_replicas = 0",
            "state.expected_replicas",
        ),
    ];
    for (section, expected) in cases {
        let cfg = dir.path().join("gateway.toml");
        std::fs::write(
            &cfg,
            config_text(dir.path(), "", "", &format!("[state]\n{section}\n")),
        )
        .unwrap();
        let out = std::process::Command::new(BIN)
            .args(["validate", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{section}: {text}");
        assert!(
            text.contains(expected),
            "{section}: expected {expected:?} in {text}"
        );
        assert!(
            !text.contains("hunter2"),
            "a password is never shown: {text}"
        );
    }
}

fn checkin(c: &reqwest::blocking::Client, gw: &Gateway) {
    let body =
        r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep-7f3a","status":"healthy"}"#;
    let (status, answer, _) = post_ndjson(c, gw, "acme-token", body.to_string());
    assert_eq!(status, 200, "{answer}");
}

fn endpoint_health(gw: &Gateway) -> Value {
    let ep: Value = client()
        .get(gw.url("/v1/endpoints/acme/ep-7f3a"))
        .bearer_auth("admin-token")
        .send()
        .unwrap()
        .json()
        .unwrap();
    ep["context"]["health"].clone()
}

fn stale_alerts(dir: &Path) -> Vec<Value> {
    read_out(dir)
        .into_iter()
        .filter(|e| e["title"] == "endpoint_stale" && e["endpoint_id"] == "ep-7f3a")
        .collect()
}

#[test]
fn check_ins_are_fleet_wide_and_exactly_one_replica_alerts_a_stale_endpoint() {
    let Some(redis) = RedisServer::start("replicas::checkins") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let short = "[checkins]\nstale_after = \"5s\"";
    let a = replica(dir.path(), &redis, "a", short);
    let b = replica(dir.path(), &redis, "b", short);
    let c = client();
    // Once at A, then only at B (the load balancer's choice) for longer than stale_after.
    checkin(&c, &a);
    wait_until("A's check-in is seen at B", || {
        endpoint_health(&b)["status"] == "healthy"
    });
    let until = std::time::Instant::now() + std::time::Duration::from_secs(8);
    while std::time::Instant::now() < until {
        checkin(&c, &b);
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(
        endpoint_health(&a)["status"],
        "healthy",
        "A sees B's check-ins"
    );
    assert!(
        stale_alerts(&dir.path().join("a")).is_empty(),
        "no false alert at A"
    );
    assert_eq!(
        a.health()["checkins"],
        b.health()["checkins"],
        "fleet-wide counts"
    );

    // Silence: the endpoint goes stale, and exactly one replica says so.
    wait_until("one stale alert", || {
        stale_alerts(&dir.path().join("a")).len() + stale_alerts(&dir.path().join("b")).len() > 0
    });
    std::thread::sleep(std::time::Duration::from_secs(3)); // more sweeps at both: no second
    let total =
        stale_alerts(&dir.path().join("a")).len() + stale_alerts(&dir.path().join("b")).len();
    assert_eq!(total, 1);
    assert_eq!(endpoint_health(&a)["status"], "stale");

    // A check-in anywhere clears it; the next staleness alerts once more.
    checkin(&c, &b);
    wait_until("A sees the new check-in", || {
        endpoint_health(&a)["status"] == "healthy"
    });
    wait_until("a second alert", || {
        stale_alerts(&dir.path().join("a")).len() + stale_alerts(&dir.path().join("b")).len() == 2
    });
}

#[test]
fn stale_alerting_pauses_while_the_server_is_unreachable() {
    let Some(mut redis) = RedisServer::start("replicas::stale_pause") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), &redis, "a", "[checkins]\nstale_after = \"2s\"");
    let c = client();
    checkin(&c, &a);
    wait_until("the check-in is in the server", || {
        redis
            .command("ZCARD test:checkins:last\r\n")
            .is_some_and(|r| r.trim() == ":1")
    });
    redis.kill9();
    wait_until("health says the state is unreachable", || {
        a.health()["state"]["ok"] == false
    });
    // Well past stale_after, with the fleet out of sight: no alert.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(stale_alerts(&dir.path().join("a")).is_empty());
    // A check-in while it is gone is accepted and waits in the outbox.
    checkin(&c, &a);
    redis.restart();
    wait_until(
        "the buffered check-in is written when the server returns",
        || {
            redis
                .command("ZCARD test:checkins:last\r\n")
                .is_some_and(|r| r.trim() == ":1")
        },
    );
    // Alerting resumes: the endpoint, silent since, is alerted once.
    wait_until("the stale alert after the server returned", || {
        stale_alerts(&dir.path().join("a")).len() == 1
    });
}

/// `[[mdm.providers]]` synced from the Jamf emulator every `every`, and one pushed.
fn mdm_providers(emu: &support::mdm::MdmEmulator, every: &str) -> String {
    format!(
        "[mdm]\nrefresh_interval = \"{every}\"\n\
         [[mdm.providers]]\nname = \"acme-api\"\ntenant_id = \"acme\"\nkind = \"jamf\"\nurl = \"{}\"\n\
         client_id = \"{}\"\nclient_secret = \"{}\"\nendpoint_id_attribute = \"Thoth Endpoint ID\"\n\
         [[mdm.providers]]\nname = \"acme-pushed\"\ntenant_id = \"acme\"\nkind = \"intune\"\n",
        emu.url(),
        support::mdm::JAMF_CLIENT_ID,
        support::mdm::JAMF_CLIENT_SECRET
    )
}

/// The MDM record a replica holds for an endpoint of acme, if any.
fn endpoint_record(gw: &Gateway, endpoint: &str) -> Option<Value> {
    let resp = client()
        .get(gw.url(&format!("/v1/endpoints/acme/{endpoint}")))
        .bearer_auth("admin-token")
        .send()
        .unwrap();
    if resp.status() != 200 {
        return None;
    }
    let ep: Value = resp.json().unwrap();
    Some(ep["context"]["endpoint"].clone()).filter(|e| !e.is_null())
}

#[test]
fn one_replica_syncs_an_mdm_api_and_every_replica_installs_its_snapshot_and_pushes() {
    let Some(redis) = RedisServer::start("replicas::mdm") else {
        return;
    };
    let emu = support::mdm::MdmEmulator::start(20, 0);
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), &redis, "a", &mdm_providers(&emu, "1h"));
    let b = replica(dir.path(), &redis, "b", &mdm_providers(&emu, "1h"));
    wait_until("both replicas hold the synced snapshot", || {
        endpoint_record(&a, "ep-7").is_some() && endpoint_record(&b, "ep-7").is_some()
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    // Each process's first sync fetches a token: one token, one sync, for the fleet.
    assert_eq!(emu.with(|s| s.tokens_issued), 1, "one replica synced");
    // `mdm sync` from the CLI takes the lease too: it is held for the refresh interval.
    let out = std::process::Command::new(BIN)
        .args(["mdm", "sync", "--provider", "acme-api", "--config"])
        .arg(dir.path().join("a").join("gateway.toml"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("another replica holds this provider's sync lease"),
        "{text}"
    );
    assert_eq!(emu.with(|s| s.tokens_issued), 1, "the CLI did not sync");

    // A push at B is in use at A too.
    let snapshot = serde_json::json!({"value": [{"id": "p-1", "deviceName": "PUSHED-1", "serialNumber": "PSN1",
        "operatingSystem": "Windows", "managementAgent": "mdm", "complianceState": "compliant"}]});
    let resp = client()
        .put(b.url("/v1/mdm/acme-pushed"))
        .bearer_auth("admin-token")
        .json(&snapshot)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let decision = r#"{"type":"decision","event_id":"pushed-at-b","tenant_id":"acme","endpoint_id":"x","device_serial":"PSN1","risk":"low","decision":"allow"}"#;
    wait_until("A enriches from B's push", || {
        let id = format!("pushed-{}", now_s());
        let line = decision.replace("pushed-at-b", &id);
        assert_eq!(post_ndjson(&client(), &a, "admin-token", line).0, 200);
        std::thread::sleep(std::time::Duration::from_millis(300));
        read_out(&dir.path().join("a"))
            .iter()
            .any(|e| e["context"]["endpoint"]["hostname"] == "PUSHED-1")
    });
}

#[test]
fn a_dead_mdm_leader_is_replaced_within_one_refresh_interval() {
    let Some(redis) = RedisServer::start("replicas::mdm_leader") else {
        return;
    };
    let emu = support::mdm::MdmEmulator::start(20, 0);
    // Every data request takes long: the first sync is still running when its replica dies.
    emu.with(|s| s.page_delay = std::time::Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let a = replica(dir.path(), &redis, "a", &mdm_providers(&emu, "3s"));
    wait_until("A is syncing", || emu.with(|s| s.requests) > 0);
    let lease = redis.command("GET test:mdm_lease:acme-api\r\n").unwrap();
    assert!(lease.contains("\r\na\r\n"), "A holds the lease: {lease:?}");
    let b = replica(dir.path(), &redis, "b", &mdm_providers(&emu, "3s"));
    a.kill9();
    emu.with(|s| s.page_delay = std::time::Duration::ZERO);
    wait_until("B took the lease and synced", || {
        endpoint_record(&b, "ep-7").is_some()
    });
    let lease = redis.command("GET test:mdm_lease:acme-api\r\n").unwrap();
    assert!(lease.contains("\r\nb\r\n"), "B holds the lease: {lease:?}");
}
