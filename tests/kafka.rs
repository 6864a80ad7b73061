//! End-to-end: the real binary consuming from librdkafka's in-process mock cluster.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{json, Value};
use support::*;

const TOPIC: &str = "thoth.events";

fn cluster() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
    let mock = MockCluster::new(3).expect("mock cluster");
    mock.create_topic(TOPIC, 6, 1).expect("topic");
    mock
}

/// A message to send again: key, payload, partition.
type Resend = (Option<Vec<u8>>, Vec<u8>, i32);

/// Counts messages whose delivery failed, so the producer can send them again.
#[derive(Default)]
struct Tracking {
    failed: std::sync::Mutex<Vec<Resend>>,
}

impl rdkafka::ClientContext for Tracking {}

impl rdkafka::producer::ProducerContext for Tracking {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::producer::DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        if let Err((_, m)) = result {
            self.failed.lock().unwrap().push((
                m.key().map(<[u8]>::to_vec),
                m.payload().unwrap_or_default().to_vec(),
                m.partition(),
            ));
        }
    }
}

type TestProducer = BaseProducer<Tracking>;

fn producer(servers: &str) -> TestProducer {
    ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .create_with_context(Tracking::default())
        .expect("producer")
}

/// Flushes, then sends again whatever the cluster did not take, until every message is in.
fn settle(p: &TestProducer) {
    loop {
        p.flush(Duration::from_secs(30)).expect("flush");
        let failed = std::mem::take(&mut *p.context().failed.lock().unwrap());
        if failed.is_empty() {
            return;
        }
        for (key, payload, partition) in failed {
            let record = || {
                let mut r = BaseRecord::<[u8], [u8]>::to(TOPIC).payload(&payload);
                if let Some(k) = &key {
                    r = r.key(k);
                }
                if partition >= 0 {
                    r = r.partition(partition);
                }
                r
            };
            while p.send(record()).is_err() {
                p.poll(Duration::from_millis(10));
            }
        }
    }
}

/// Produces `messages` messages of `per_message` decisions each; returns the event ids.
fn produce(p: &TestProducer, start: usize, messages: usize, per_message: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for m in start..start + messages {
        let mut body = String::new();
        for i in 0..per_message {
            let id = format!("k-{m}-{i}");
            body.push_str(&decision(&id, "acme", &format!("ep-{}", m % 17)));
            body.push('\n');
            ids.push(id);
        }
        let key = format!("ep-{}", m % 17);
        loop {
            match p.send(
                BaseRecord::to(TOPIC)
                    .key(&key)
                    .partition((m % 6) as i32)
                    .payload(&body),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    settle(p);
    ids
}

fn config(dir: &std::path::Path, servers: &str, wal: &str, sink_extra: &str) -> std::path::PathBuf {
    let extra = format!(
        r#"
[[sources.kafka]]
name = "fleet"
bootstrap_servers = "{servers}"
topics = ["{TOPIC}"]
group_id = "thoth-gateway"
[sources.kafka.librdkafka]
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 500
"topic.metadata.refresh.interval.ms" = 1000
"#
    );
    let cfg = dir.join("gateway.toml");
    std::fs::write(&cfg, config_text(dir, wal, sink_extra, &extra)).unwrap();
    cfg
}

fn delivered_ids(dir: &std::path::Path) -> HashSet<String> {
    read_out(dir)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

/// [`delivered_ids`] after one `kill -9`, which may have cut a write's last line short.
fn delivered_ids_after_a_crash(dir: &std::path::Path) -> HashSet<String> {
    read_out_after_crashes(dir, 1)
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_hundred_thousand_events_from_six_partitions_are_each_delivered() {
    let mock = cluster();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let gw = Gateway::start(&config(dir.path(), &servers, "max_bytes = \"1GiB\"", ""));
    let prod = producer(&servers);
    let lines =
        || std::fs::read_to_string(out_path(dir.path())).map_or(0, |t| t.matches('\n').count());
    // Ten rounds, each waited for: the mock cluster keeps only a few MB per partition.
    let mut ids: HashSet<String> = HashSet::new();
    for round in 0..10 {
        ids.extend(produce(&prod, round * 100, 100, 100));
        wait_until("the round is delivered", || lines() >= ids.len());
    }
    assert_eq!(ids.len(), 100_000);
    let mut partitions_used = 0;
    for p in 0..6 {
        let (_, hi) = prod
            .client()
            .fetch_watermarks(TOPIC, p, Duration::from_secs(5))
            .unwrap();
        partitions_used += usize::from(hi > 0);
    }
    assert_eq!(partitions_used, 6, "all six partitions carried events");
    let out = read_out(dir.path());
    assert_eq!(out.len(), 100_000, "once each without a crash");
    assert_eq!(delivered_ids(dir.path()), ids);
    assert_eq!(out[0]["context"]["tenant"]["id"], "acme");
    let metrics = gw.metrics();
    assert!(
        metrics.contains(&format!(
            "thoth_kafka_messages_total{{outcome=\"accepted\",topic=\"{TOPIC}\"}} 1000"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("thoth_events_received_total{source=\"kafka\",type=\"decision\"} 100000")
            || metrics.contains("thoth_wal_appended_events 100000"),
        "{metrics}"
    );
}

#[test]
fn kill_9_mid_stream_loses_nothing() {
    let mock = cluster();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &servers, "max_bytes = \"1GiB\"", "");
    let gw = Gateway::start(&cfg);
    let ids: HashSet<String> = produce(&producer(&servers), 0, 400, 50)
        .into_iter()
        .collect();
    wait_until("delivery is under way", || {
        delivered_ids(dir.path()).len() >= 2_000
    });
    gw.kill9();
    let _gw = Gateway::start(&cfg);
    wait_until("every event is delivered after the restart", || {
        ids.is_subset(&delivered_ids_after_a_crash(dir.path()))
    });
}

#[test]
fn two_gateways_in_one_group_share_the_partitions_and_take_over() {
    let mock = cluster();
    let servers = mock.bootstrap_servers();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Gateway::start(&config(a_dir.path(), &servers, "max_bytes = \"1GiB\"", ""));
    let b = Gateway::start(&config(b_dir.path(), &servers, "max_bytes = \"1GiB\"", ""));
    let p = producer(&servers);
    let mut ids: HashSet<String> = HashSet::new();
    let both = |ids: &HashSet<String>| {
        let mut all = delivered_ids(a_dir.path());
        all.extend(delivered_ids(b_dir.path()));
        ids.is_subset(&all)
    };
    // Produce until both members have events: the group split the partitions.
    let mut round = 0;
    wait_until("both gateways receive events", || {
        ids.extend(produce(&p, round * 60, 60, 10));
        round += 1;
        !delivered_ids(a_dir.path()).is_empty() && !delivered_ids(b_dir.path()).is_empty()
    });
    wait_until("together they deliver everything", || both(&ids));

    // Stop one mid-stream: its partitions move to the other.
    ids.extend(produce(&p, 100_000, 100, 10));
    assert!(a.terminate().success());
    ids.extend(produce(&p, 200_000, 100, 10));
    wait_until("the survivor delivers everything", || both(&ids));
    drop(b);
}

#[test]
fn a_poison_message_is_dead_lettered_with_its_offset_and_the_rest_flows() {
    let mock = cluster();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &servers, "max_bytes = \"1GiB\"", "");
    let gw = Gateway::start(&cfg);
    let p = producer(&servers);
    let send = |payload: &str| {
        p.send(
            BaseRecord::<(), str>::to(TOPIC)
                .partition(2)
                .payload(payload),
        )
        .unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
    };
    send(&decision("before", "acme", "ep-1"));
    send("this is not json");
    send(&json!({"type":"decision","tenant_id":"initech","endpoint_id":"e","risk":"low","decision":"allow"}).to_string());
    send(&decision("after", "acme", "ep-1"));
    wait_until("the messages after the poison are delivered", || {
        delivered_ids(dir.path()).contains("after")
    });
    let list = dlq(&cfg, "list", "ingest");
    assert_eq!(list["count"], 2, "{list}");
    assert_eq!(list["entries"][0]["origin"], format!("kafka:{TOPIC}/2/1"));
    assert!(list["entries"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert_eq!(list["entries"][0]["event"], "this is not json");
    assert_eq!(list["entries"][1]["origin"], format!("kafka:{TOPIC}/2/2"));
    assert!(list["entries"][1]["reason"]
        .as_str()
        .unwrap()
        .contains("initech"));
    let metrics = gw.metrics();
    assert!(
        metrics.contains(&format!(
            "thoth_kafka_messages_total{{outcome=\"dead_lettered\",topic=\"{TOPIC}\"}} 2"
        )),
        "{metrics}"
    );
}

#[test]
fn a_full_wal_pauses_the_consumer_with_flat_memory_then_everything_is_delivered() {
    let mock = cluster();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let out = out_path(dir.path());
    std::fs::create_dir_all(&out).unwrap(); // the file sink cannot write: the WAL fills
    let cfg = config(
        dir.path(),
        &servers,
        "max_bytes = \"512KiB\"\nsegment_bytes = \"32KiB\"",
        "[sinks.out.retry]\ninitial_backoff = \"20ms\"\nmax_backoff = \"100ms\"",
    );
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"32KiB\"");
    std::fs::write(&cfg, text).unwrap();
    let gw = Gateway::start(&cfg);
    let ids: HashSet<String> = produce(&producer(&servers), 0, 300, 20)
        .into_iter()
        .collect();
    let paused = || {
        gw.metrics()
            .contains("thoth_kafka_paused{source=\"fleet\"} 1")
    };
    wait_until("the consumer pauses", paused);
    let rss = gw.rss_kib();
    std::thread::sleep(Duration::from_secs(2));
    assert!(paused(), "still paused while the sink is down");
    assert!(
        gw.rss_kib() < rss + 16 * 1024,
        "memory stays flat while paused"
    );

    std::fs::remove_dir(&out).unwrap();
    wait_until("everything is delivered once the sink recovers", || {
        ids.is_subset(&delivered_ids(dir.path()))
    });
    wait_until("the consumer resumes", || !paused());
}

#[test]
fn the_kafka_sink_produces_enriched_events_keyed_by_endpoint() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("thoth.enriched", 3, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "[sinks.bus]\ntype = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"thoth.enriched\"\ncondition = '.risk == \"high\"'\n"
    );
    let cfg = dir.path().join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(dir.path(), "max_bytes = \"64MiB\"", "", &extra),
    )
    .unwrap();
    let gw = Gateway::start(&cfg);
    let body: String = (0..20)
        .map(|i| {
            decision(
                &format!("b-{i}"),
                "acme",
                if i % 2 == 0 { "ep-7f3a" } else { "ep-other" },
            ) + "\n"
        })
        .collect();
    assert_eq!(post_ndjson(&client(), &gw, "acme-token", body).0, 200);
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["thoth.enriched"]).unwrap();
    let mut got = Vec::new();
    wait_until("the sink produced every event", || {
        while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            got.push((m.key().map(|k| String::from_utf8_lossy(k).into_owned()), v));
        }
        got.len() >= 20
    });
    for (key, event) in &got {
        assert_eq!(
            key.as_deref(),
            event["endpoint_id"].as_str(),
            "keyed by endpoint id"
        );
        assert_eq!(event["context"]["tenant"]["id"], "acme");
    }
    let ids: HashSet<&str> = got
        .iter()
        .map(|(_, e)| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 20);
}

/// A consumer of `topic` from the start, and what it has received so far.
fn read_topic(servers: &str, topic: &str) -> (rdkafka::consumer::BaseConsumer, Vec<Value>) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", servers)
        .set("group.id", "test-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    (consumer, Vec::new())
}

fn poll_into(consumer: &rdkafka::consumer::BaseConsumer, got: &mut Vec<Value>) {
    use rdkafka::message::Message;
    while let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
        got.push(serde_json::from_slice(m.payload().unwrap()).unwrap());
    }
}

fn kafka_sink_config(dir: &std::path::Path, servers: &str, librdkafka: &str) -> std::path::PathBuf {
    let extra = format!(
        "[sinks.bus]\ntype = \"kafka\"\nbootstrap_servers = \"{servers}\"\ntopic = \"thoth.enriched\"\n\
         [sinks.bus.retry]\ninitial_backoff = \"50ms\"\nmax_backoff = \"200ms\"\nmax_duration = \"1s\"\n\
         [sinks.bus.librdkafka]\n{librdkafka}\n"
    );
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        config_text(dir, "max_bytes = \"64MiB\"", "", &extra)
            .replace("max_body_bytes = \"64KiB\"", "max_body_bytes = \"1MiB\""),
    )
    .unwrap();
    cfg
}

#[test]
fn a_message_kafka_can_never_take_is_dead_lettered_with_the_reason_and_replays_once_it_fits() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("thoth.enriched", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let cfg = kafka_sink_config(dir.path(), &servers, "\"message.max.bytes\" = \"4000\"");
    let gw = Gateway::start(&cfg);
    let mut big: Value = serde_json::from_str(&decision("big", "acme", "ep-7f3a")).unwrap();
    big["pad"] = "x".repeat(8000).into();
    let body = format!(
        "{}\n{big}\n{}\n",
        decision("small-1", "acme", "ep-7f3a"),
        decision("small-2", "acme", "ep-7f3a")
    );
    assert_eq!(post_ndjson(&client(), &gw, "acme-token", body).0, 200);

    // The small ones are delivered; the big one is dead-lettered at once, not retried forever.
    let (consumer, mut got) = read_topic(&servers, "thoth.enriched");
    wait_until("both small events arrive", || {
        poll_into(&consumer, &mut got);
        got.len() >= 2
    });
    wait_until("the big one is dead-lettered", || {
        dlq(&cfg, "list", "bus")["count"] == 1
    });
    let listed = dlq(&cfg, "list", "bus");
    let reason = listed["entries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(listed["entries"][0]["event_id"], "big");
    let health = gw.health();
    assert_ne!(health["sinks"]["bus"]["status"], "failing", "{health}");

    // The sink takes larger messages now: the replay delivers it.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "\"message.max.bytes\" = \"4000\"",
            "\"message.max.bytes\" = \"100000\"",
        ),
    )
    .unwrap();
    let resp = client()
        .post(gw.url("/v1/reload"))
        .bearer_auth("admin-token")
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(dlq(&cfg, "replay", "bus")["replayed"], 1);
    wait_until("the replayed event arrives", || {
        poll_into(&consumer, &mut got);
        got.iter().any(|e| e["event_id"] == "big")
    });
    wait_until("the queue is empty", || {
        dlq(&cfg, "list", "bus")["count"] == 0
            && !dir.path().join("data/dlq/bus.replaying.ndjson").exists()
    });
}

#[test]
fn a_kafka_sink_that_cannot_deliver_dead_letters_after_retry_max_duration() {
    let mock = MockCluster::new(1).expect("mock cluster");
    mock.create_topic("thoth.enriched", 1, 1).unwrap();
    let servers = mock.bootstrap_servers();
    mock.broker_down(1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = kafka_sink_config(dir.path(), &servers, "\"message.timeout.ms\" = \"300\"");
    let gw = Gateway::start(&cfg);
    post_all(
        &gw,
        "acme-token",
        &[
            decision("down-1", "acme", "ep-7f3a"),
            decision("down-2", "acme", "ep-7f3a"),
        ],
    );
    wait_until("both are dead-lettered after retry.max_duration", || {
        dlq(&cfg, "list", "bus")["count"] == 2
    });
    let listed = dlq(&cfg, "list", "bus");
    let reason = listed["entries"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("retry.max_duration"), "{reason}");
    assert!(listed["entries"][0]["attempts"].as_u64().unwrap() > 1);
    // The sink moved on: the file sink and the WAL are not held up.
    wait_for_event(dir.path(), "down-2");
}
