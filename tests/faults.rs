//! Faults around the gateway (issue: hardening): the WAL's disk full, a cursor that cannot be
//! written, a sink that never answers, a name that does not resolve, a certificate for another
//! name, and the wall clock jumping. Each is reported clearly, loses nothing accepted and
//! leaves the gateway serving.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::hec::{Fault, Hec};
use support::*;

const HEC_TOKEN: &str = "faults-hec-token";

fn hec_sink(url: &str, extra: &str) -> String {
    format!(
        r#"
[sinks.splunk]
type = "splunk_hec"
endpoint = "{url}"
token = "{HEC_TOKEN}"
{extra}
[sinks.splunk.batch]
max_events = 100
timeout = "50ms"
[sinks.splunk.retry]
initial_backoff = "50ms"
max_backoff = "400ms"
"#
    )
}

fn write(dir: &Path, wal: &str, extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config_text(dir, wal, "", extra)).unwrap();
    cfg
}

fn metric(gw: &Gateway, line_prefix: &str) -> f64 {
    gw.metrics()
        .lines()
        .filter(|l| l.starts_with(line_prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn splunk_error(gw: &Gateway) -> String {
    gw.health()["sinks"]["splunk"]["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn ids(path: &Path) -> HashSet<String> {
    read_ndjson(path)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn batch(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| decision(&format!("{prefix}-{i}"), "acme", "ep-1001"))
        .collect()
}

/// Posts once; the status and the error code.
fn try_post(gw: &Gateway, lines: &[String]) -> (u16, String) {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let (status, resp, _) = post_ndjson(&client(), gw, "acme-token", body);
    (status, resp["error"].as_str().unwrap_or("").to_string())
}

/// Starts the gateway with its data dir on a 4 MiB tmpfs in a private mount namespace (no
/// privileges needed) and a WAL limit far above it, so the disk fills first. Returns the
/// gateway and its view of the data dir, from outside its mount namespace.
fn start_on_a_small_volume(dir: &Path) -> (Gateway, std::path::PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let cfg = write(dir, "max_bytes = \"1GiB\"\nsegment_bytes = \"256KiB\"", "");
    let mut cmd = Command::new("unshare");
    cmd.args(["--map-root-user", "--mount", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size=4m tmpfs '{}' && exec '{BIN}' run --config '{}'",
            data.display(),
            cfg.display()
        ));
    let gw = Gateway::start_command(cmd);
    let volume = Path::new("/proc")
        .join(gw.pid().to_string())
        .join("root")
        .join(data.strip_prefix("/").unwrap());
    (gw, volume)
}

#[test]
fn a_full_wal_disk_answers_503_corrupts_nothing_and_recovers_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, volume) = start_on_a_small_volume(dir.path());
    let (data, cfg) = (dir.path().join("data"), dir.path().join("gateway.toml"));
    assert!(volume.join("wal").is_dir(), "{}", volume.display());

    post_all(&gw, "acme-token", &batch("before", 50));
    // Fill the volume.
    let filler = volume.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).and_then(|()| f.flush()).is_ok() {}
    }
    // Appends now fail with ENOSPC: 503 with Retry-After, nothing accepted.
    let mut refused = None;
    for i in 0..200 {
        let (status, code) = try_post(&gw, &batch(&format!("full-{i}"), 100));
        if status == 503 {
            refused = Some((i, code));
            break;
        }
        assert_eq!(status, 200, "{code}");
    }
    let (first_refused, code) = refused.expect("a full disk must refuse appends");
    assert_eq!(code, "wal_unavailable");
    // The log line is written by the WAL's writer and read by another thread here: wait for it.
    wait_until("the disk error is logged", || {
        gw.logs().contains("No space left on device")
    });
    let health = client().get(gw.url("/health")).send().unwrap();
    assert_eq!(health.status().as_u16(), 200, "still serving");

    // Space returns: appends succeed again.
    std::fs::remove_file(&filler).unwrap();
    post_all(&gw, "acme-token", &batch("after", 50));
    let out = out_path(dir.path());
    wait_until("everything accepted is delivered", || {
        ids(&out).contains("after-49")
    });
    let delivered = ids(&out);
    for i in 0..50 {
        assert!(delivered.contains(&format!("before-{i}")));
        assert!(delivered.contains(&format!("after-{i}")));
    }
    for i in 0..first_refused {
        assert!(
            delivered.contains(&format!("full-{i}-99")),
            "accepted batch {i} delivered"
        );
    }
    assert!(
        !delivered
            .iter()
            .any(|id| id.starts_with(&format!("full-{first_refused}-"))),
        "nothing of the refused batch"
    );

    // No corruption: a copy of the log recovers with nothing truncated or skipped.
    let copy = dir.path().join("copy");
    copy_dir(&volume, &copy.join("data"));
    drop(gw);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            &data.display().to_string(),
            &copy.join("data").display().to_string(),
        )
        .replace(
            &out.display().to_string(),
            &copy.join("out.ndjson").display().to_string(),
        );
    let copy_cfg = copy.join("gateway.toml");
    std::fs::write(&copy_cfg, text).unwrap();
    let gw = Gateway::start(&copy_cfg);
    assert!(gw.logs().contains("truncated_bytes=0"), "{}", gw.logs());
    assert!(gw.logs().contains("corrupt_regions=0"), "{}", gw.logs());
    assert_eq!(metric(&gw, "thoth_wal_corrupt_regions"), 0.0);
}

#[test]
fn a_disk_the_wal_filled_is_freed_by_the_sinks_catching_up_without_needing_free_space() {
    let dir = tempfile::tempdir().unwrap();
    // The file sink cannot write yet: a regular file where its directory must go.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, "not a directory").unwrap();
    let (gw, volume) = start_on_a_small_volume(dir.path());

    // The WAL fills the volume while the sink is stuck; then not a byte is left.
    let mut accepted = 0;
    loop {
        let (status, code) = try_post(&gw, &batch(&format!("fill-{accepted}"), 100));
        if status == 503 {
            assert_eq!(code, "wal_unavailable");
            break;
        }
        assert_eq!(status, 200, "{code}");
        accepted += 1;
        assert!(accepted < 1000, "the volume must fill up");
    }
    {
        use std::io::Write;
        let mut f = std::fs::File::create(volume.join("filler")).unwrap();
        while f.write_all(&[0u8; 4096]).and_then(|()| f.flush()).is_ok() {}
        while f.write_all(&[0u8]).and_then(|()| f.flush()).is_ok() {}
    }

    // The sink catches up. Its cursor is saved in place, so the segments it passed are
    // freed and appends succeed again, though the volume had no free byte.
    std::fs::remove_file(&blocker).unwrap();
    let out = out_path(dir.path());
    wait_until("the backlog is delivered", || {
        ids(&out).contains(&format!("fill-{}-99", accepted - 1))
    });
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let (status, code) = try_post(&gw, &batch("after", 10));
        if status == 200 {
            break;
        }
        assert_eq!((status, code.as_str()), (503, "wal_unavailable"));
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL stayed full after the sink caught up: {}",
            gw.health()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_until("the new batch is delivered", || {
        ids(&out).contains("after-9")
    });
    let delivered = ids(&out);
    for b in 0..accepted {
        assert!(delivered.contains(&format!("fill-{b}-99")), "batch {b}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn a_cursor_that_cannot_be_written_is_reported_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "", "");
    let gw = Gateway::start(&cfg);
    // A directory where the cursor file is makes every save fail (as root, permissions would
    // not); the file's content is kept to put back.
    let cursor = dir.path().join("data/wal/cursors/out");
    let saved = std::fs::read(&cursor).unwrap();
    std::fs::remove_file(&cursor).unwrap();
    std::fs::create_dir(&cursor).unwrap();
    post_all(&gw, "acme-token", &batch("c", 20));
    wait_until("the sink reports the cursor", || {
        gw.health()["sinks"]["out"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot persist the cursor"))
    });
    assert_ne!(gw.health()["status"], "ok");
    // Delivery went on; the cursor is behind, so a crash now means re-delivery, not loss.
    wait_until("delivered", || ids(&out_path(dir.path())).contains("c-19"));
    gw.kill9();
    std::fs::remove_dir(&cursor).unwrap();
    std::fs::write(&cursor, saved).unwrap();
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &batch("d", 5));
    wait_until("delivered after the fix", || {
        ids(&out_path(dir.path())).contains("d-4")
    });
    wait_until("healthy again", || {
        gw.health()["sinks"]["out"]["status"] == "healthy"
    });
    let delivered = ids(&out_path(dir.path()));
    assert!((0..20).all(|i| delivered.contains(&format!("c-{i}"))));
}

#[test]
fn a_sink_that_never_answers_times_out_and_the_other_sinks_keep_flowing() {
    let hec = Hec::start(HEC_TOKEN);
    // The first requests hang for an hour (connection accepted, no answer).
    hec.push_faults((0..6).map(|_| Fault::Delay(Duration::from_secs(3600))));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "",
        &hec_sink(&hec.url(), "timeout = \"1s\"\nconcurrency = 2"),
    );
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &batch("hang", 30));
    // The file sink is not held up by the hanging one.
    wait_until("the file sink delivers", || {
        ids(&out_path(dir.path())).contains("hang-29")
    });
    wait_until("the sink reports the timeout", || {
        splunk_error(&gw).to_lowercase().contains("timed out")
    });
    // Once the destination answers again, everything arrives; no worker stayed stuck.
    wait_until("all events reach Splunk", || {
        let got: HashSet<String> = hec.indexed_ids().into_iter().collect();
        (0..30).all(|i| got.contains(&format!("hang-{i}")))
    });
    wait_until("healthy again", || {
        gw.health()["sinks"]["splunk"]["status"] == "healthy"
    });
}

#[test]
fn a_name_that_does_not_resolve_is_reported_and_events_wait() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "",
        &hec_sink("https://splunk-hec.thoth-test.invalid:8088", ""),
    );
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &batch("dns", 10));
    wait_until("the sink reports the lookup failure", || {
        let e = splunk_error(&gw).to_lowercase();
        e.contains("dns") || e.contains("lookup") || e.contains("resolve")
    });
    wait_until("the file sink delivers", || {
        ids(&out_path(dir.path())).contains("dns-9")
    });
    let h = gw.health();
    assert_eq!(h["sinks"]["splunk"]["queued_events"], 10, "{h}");
    assert_eq!(metric(&gw, "thoth_sink_dead_letters_total"), 0.0);
}

#[test]
fn a_certificate_for_another_name_is_a_clear_error_with_no_plaintext_fallback() {
    let pki = support::server::TestPki::for_names(&["splunk.acme.internal"], false);
    let hec = Hec::start_with(HEC_TOKEN, Some(pki.server.clone()));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), &pki.ca_pem).unwrap();
    let https = hec.url().replace("http://", "https://");
    let tls = format!(
        "[sinks.splunk.tls]\nca_file = \"{}\"",
        dir.path().join("ca.pem").display()
    );
    let cfg = write(dir.path(), "", &hec_sink(&https, &tls));
    let gw = Gateway::start(&cfg);
    post_all(&gw, "acme-token", &batch("tls", 5));
    wait_until("the sink names the certificate problem", || {
        let e = splunk_error(&gw).to_lowercase();
        e.contains("certificate") && (e.contains("name") || e.contains("127.0.0.1"))
    });
    assert!(
        hec.requests().is_empty(),
        "nothing reached the server in any form"
    );
    assert!(hec.indexed_ids().is_empty());
    assert_eq!(gw.health()["sinks"]["splunk"]["queued_events"], 5);
}

/// A decision without `time`: the gateway assigns its receive time.
fn undated(id: &str) -> String {
    serde_json::json!({"type": "decision", "event_id": id, "tenant_id": "acme",
        "endpoint_id": "ep-1001", "risk": "low", "decision": "allow"})
    .to_string()
}

/// Seconds since the epoch of an RFC 3339 UTC time such as `2026-11-28T10:00:00.120Z`.
fn thoth_time(t: &str) -> i64 {
    let date: Vec<i64> = t[..10].split('-').map(|p| p.parse().unwrap()).collect();
    let (y, m, d) = (date[0], date[1], date[2]);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let hms: Vec<i64> = t[11..19].split(':').map(|p| p.parse().unwrap()).collect();
    days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2]
}

/// An `LD_PRELOAD` library that adds the number of seconds in `$THOTH_CLOCK_OFFSET_FILE` to
/// the wall clock (`CLOCK_REALTIME`) and leaves the monotonic clock alone, as an NTP step
/// would. Built with the machine's C compiler.
fn clock_shim(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("clock_shim.c");
    std::fs::write(
        &src,
        r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static long long offset_s;
static time_t read_at = -1;
int clock_gettime(clockid_t id, struct timespec *ts) {
    if (!real_clock_gettime) real_clock_gettime = dlsym(RTLD_NEXT, "clock_gettime");
    int r = real_clock_gettime(id, ts);
    if (r == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        struct timespec mono;
        real_clock_gettime(CLOCK_MONOTONIC_COARSE, &mono);
        if (mono.tv_sec != read_at) {
            const char *path = getenv("THOTH_CLOCK_OFFSET_FILE");
            FILE *f = path ? fopen(path, "r") : NULL;
            if (f) { long long v; if (fscanf(f, "%lld", &v) == 1) offset_s = v; fclose(f); }
            read_at = mono.tv_sec;
        }
        ts->tv_sec += offset_s;
    }
    return r;
}
"#,
    )
    .unwrap();
    let lib = dir.join("clock_shim.so");
    let out = Command::new("cc")
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .expect("a C compiler (cc) to build the clock shim");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    lib
}

#[test]
fn wall_clock_jumps_neither_dead_letter_early_nor_stop_delivery() {
    let mut hec = Hec::start(HEC_TOKEN);
    hec.stop(); // Splunk is down from the start.
    let dir = tempfile::tempdir().unwrap();
    let shim = clock_shim(dir.path());
    let offset = dir.path().join("clock_offset");
    std::fs::write(&offset, "0").unwrap();
    // Events failing longer than an hour would be dead-lettered: measured on which clock?
    let cfg = write(
        dir.path(),
        "",
        &hec_sink(&hec.url(), "").replace(
            "max_backoff = \"400ms\"",
            "max_backoff = \"400ms\"\nmax_duration = \"1h\"",
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--config"])
        .arg(&cfg)
        .env("LD_PRELOAD", &shim)
        .env("THOTH_CLOCK_OFFSET_FILE", &offset);
    let gw = Gateway::start_command(cmd);
    post_all(&gw, "acme-token", &batch("t0", 20));

    // The wall clock jumps two days ahead while Splunk is down.
    std::fs::write(&offset, (2 * 86_400).to_string()).unwrap();
    // The gateway stamps an event without `time` with its clock: probe until it shows the jump.
    let out = out_path(dir.path());
    let real_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    };
    let mut n = 0;
    // Posts an undated probe and returns how far its stamped time is ahead of real time.
    let mut probe_skew = |label: &str| {
        n += 1;
        let id = format!("probe-{label}-{n}");
        post_all(&gw, "acme-token", &[undated(&id)]);
        wait_until("the probe is written", || ids(&out).contains(&id));
        let written = read_ndjson(&out);
        let probe = written
            .iter()
            .find(|e| e["event_id"] == id.as_str())
            .unwrap();
        thoth_time(probe["time"].as_str().unwrap()) - real_now()
    };
    wait_until("events are stamped with the jumped clock", || {
        probe_skew("fwd") > 86_400
    });
    let retries_before = metric(&gw, "thoth_sink_retries_total");
    wait_until("the sink retries a few more times after the jump", || {
        metric(&gw, "thoth_sink_retries_total") >= retries_before + 3.0
    });
    assert_eq!(
        metric(&gw, "thoth_sink_dead_letters_total"),
        0.0,
        "retry.max_duration runs on the monotonic clock: a jump does not expire events"
    );

    // And back, a day behind real time: ages never go negative, ingest goes on.
    std::fs::write(&offset, (-86_400).to_string()).unwrap();
    wait_until("events are stamped a day behind", || {
        probe_skew("back") < -3600
    });
    post_all(&gw, "acme-token", &batch("t1", 20));
    let h = gw.health();
    assert!(
        h["sinks"]["splunk"]["oldest_age_s"].as_f64().unwrap() >= 0.0,
        "{h}"
    );

    hec.restart();
    wait_until("every event reaches Splunk once it is back", || {
        let got: HashSet<String> = hec.indexed_ids().into_iter().collect();
        (0..20).all(|i| got.contains(&format!("t0-{i}")) && got.contains(&format!("t1-{i}")))
    });
    assert_eq!(metric(&gw, "thoth_sink_dead_letters_total"), 0.0);
}

fn splunk_queue(gw: &Gateway) -> f64 {
    metric(gw, "thoth_sink_queue_events{sink=\"splunk\"}")
}

/// Posts `n` events in batches of 100 (the test config's 64 KiB bodies).
fn post_many(gw: &Gateway, prefix: &str, n: usize) {
    for b in 0..n / 100 {
        post_all(gw, "acme-token", &batch(&format!("{prefix}-{b}"), 100));
    }
}

#[test]
fn a_delivering_sink_that_falls_behind_slows_ingest_and_a_failing_one_does_not() {
    let hec = Hec::start(HEC_TOKEN);
    // Healthy but slow: every request waits 300 ms, one at a time (about 330 events/s).
    hec.push_faults((0..2_000).map(|_| Fault::Delay(Duration::from_millis(300))));
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "max_bytes = \"1GiB\"",
        &hec_sink(&hec.url(), "concurrency = 1"),
    );
    let gw = Gateway::start(&cfg);
    assert_eq!(metric(&gw, "thoth_ingest_yielding"), 0.0);
    post_many(&gw, "slow", 60_000);
    wait_until("ingest yields to the sink that is behind", || {
        metric(&gw, "thoth_ingest_yielding") == 1.0
    });
    assert!(splunk_queue(&gw) > 25_000.0);
    assert_eq!(gw.health()["sinks"]["splunk"]["status"], "healthy");
    // The destination speeds up: the sink catches up and ingest takes its full speed back.
    hec.with(|s| s.faults.clear());
    wait_until("ingest takes its full speed back", || {
        metric(&gw, "thoth_ingest_yielding") == 0.0
    });
    wait_until("the sink has caught up", || splunk_queue(&gw) == 0.0);

    // A failing destination: its backlog grows past the mark, and ingest does not yield.
    hec.push_faults((0..100_000).map(|_| Fault::busy(None)));
    post_many(&gw, "failing", 60_000);
    wait_until("the backlog is past the mark", || {
        splunk_queue(&gw) > 50_000.0
    });
    assert_ne!(gw.health()["sinks"]["splunk"]["status"], "healthy");
    for _ in 0..5 {
        assert_eq!(
            metric(&gw, "thoth_ingest_yielding"),
            0.0,
            "a failing sink never slows ingest"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    hec.with(|s| s.faults.clear());
    wait_until(
        "everything is delivered once the destination is back",
        || splunk_queue(&gw) == 0.0,
    );
}
