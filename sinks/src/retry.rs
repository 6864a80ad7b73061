//! The retry loop every sink delivers through: send a group, settle what the destination
//! answered ([`settle`], a pure rule), count and dead-letter, and retry the rest after the
//! pause it asked for (`Retry-After`) or an exponential backoff with full jitter — until each
//! event is delivered or dead-lettered, or the sink stops.
//!
//! * delivered events are counted; rejected ones are dead-lettered with the reason;
//! * a group too large is split in halves (a single event too large is rejected);
//! * a passing failure is retried until `retry.max_duration` has gone by since the group's
//!   first failure, then dead-lettered (`max_duration`); a sink without a limit (the file
//!   sink: a dead letter would go to the same disk) retries until it works;
//! * a failure of the sink's settings (a refused token, no such topic) marks the sink failing
//!   and is retried without a limit: the events wait in the WAL for the fix.

use std::collections::VecDeque;
use std::time::Duration;

use thoth_event::now_rfc3339;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::context::SinkContext;
use crate::destination::{BoxFuture, ItemOutcome, Outcome};
use crate::driver::Event;

/// An item a sink sends: an event and what the sink made of it (its encoding, its key).
pub(crate) trait Carries {
    fn event(&self) -> &Event;
    fn event_mut(&mut self) -> &mut Event;
}

impl Carries for Event {
    fn event(&self) -> &Event {
        self
    }
    fn event_mut(&mut self) -> &mut Event {
        self
    }
}

/// One attempt to deliver a group, answered with an [`Outcome`].
pub(crate) trait Attempt<T>: Send + Sync {
    fn send<'a>(&'a self, items: &'a [T]) -> BoxFuture<'a, Outcome>;
}

/// Why the items left to retry failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: String,
    /// What the destination asked to wait (`Retry-After`).
    pub after: Option<Duration>,
    /// The sink's settings are wrong: no `max_duration`, health failing at once.
    pub failing: bool,
}

/// What an answer means for each item of the group.
#[derive(Debug)]
pub(crate) struct Settled<T> {
    pub delivered: Vec<T>,
    pub rejected: Vec<(T, String)>,
    /// The whole group, to be sent again in halves.
    pub split: Option<Vec<T>>,
    pub retry: Vec<T>,
    pub failure: Option<Failure>,
}

impl<T> Settled<T> {
    fn new() -> Self {
        Settled {
            delivered: Vec::new(),
            rejected: Vec::new(),
            split: None,
            retry: Vec::new(),
            failure: None,
        }
    }
}

/// The rule: what `outcome` means for `items` (in the order they were sent).
pub(crate) fn settle<T>(outcome: Outcome, items: Vec<T>) -> Settled<T> {
    let mut s = Settled::new();
    let fail = |reason: String, after, failing| {
        Some(Failure {
            reason,
            after,
            failing,
        })
    };
    match outcome {
        Outcome::Delivered | Outcome::AwaitAck(_) => s.delivered = items,
        Outcome::Reject { reason } => {
            s.rejected = items.into_iter().map(|i| (i, reason.clone())).collect();
        }
        Outcome::TooLarge { .. } if items.len() > 1 => s.split = Some(items),
        Outcome::TooLarge { reason } => {
            let reason = format!("{reason} (a single event larger than the destination takes)");
            s.rejected = items.into_iter().map(|i| (i, reason.clone())).collect();
        }
        Outcome::Retry { after, reason } => {
            s.retry = items;
            s.failure = fail(reason, after, false);
        }
        Outcome::Failing { reason } => {
            s.retry = items;
            s.failure = fail(reason, None, true);
        }
        Outcome::Partial(results) => {
            let mut results = results.into_iter();
            let mut failing = false;
            let mut last = None;
            for item in items {
                match results
                    .next()
                    .unwrap_or(ItemOutcome::Retry("no result for this event".into()))
                {
                    ItemOutcome::Delivered => s.delivered.push(item),
                    ItemOutcome::Reject(r) => s.rejected.push((item, r)),
                    ItemOutcome::Retry(r) => {
                        last = Some(r);
                        s.retry.push(item);
                    }
                    ItemOutcome::Failing(r) => {
                        failing = true;
                        last = Some(r);
                        s.retry.push(item);
                    }
                }
            }
            if let Some(reason) = last {
                s.failure = fail(reason, None, failing);
            }
        }
    }
    s
}

/// Whether a group failing since `first_failure` has used up `max_duration` (`None`: no
/// limit).
pub(crate) fn exhausted(
    first_failure: Instant,
    now: Instant,
    max_duration: Option<Duration>,
) -> bool {
    max_duration.is_some_and(|max| now.saturating_duration_since(first_failure) >= max)
}

/// How long the sink waits before retry number `attempt`: what the destination asked for,
/// else the backoff.
pub(crate) fn retry_delay(
    failure: &Failure,
    attempt: u32,
    retry: &thoth_config::RetryConfig,
    unit: f64,
) -> Duration {
    failure.after.unwrap_or_else(|| {
        thoth_http::backoff(attempt, retry.initial_backoff, retry.max_backoff, unit)
    })
}

/// How a group ended.
pub(crate) enum GroupResult<T> {
    Done,
    Stopped,
    /// Too large: send in halves.
    Split(Vec<T>),
}

/// Delivers every group, splitting those too large; `false` when the sink stopped first (the
/// rest stays in the WAL).
pub(crate) async fn deliver_groups<T: Carries>(
    ctx: &SinkContext,
    groups: Vec<Vec<T>>,
    max_duration: Option<Duration>,
    sender: &impl Attempt<T>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut groups: VecDeque<Vec<T>> = groups.into();
    while let Some(group) = groups.pop_front() {
        match deliver_group(ctx, group, max_duration, sender, stop).await {
            GroupResult::Done => {}
            GroupResult::Stopped => return false,
            GroupResult::Split(mut group) => {
                tracing::info!(sink = %ctx.name, events = group.len(), "request too large; splitting the batch");
                let second = group.split_off(group.len() / 2);
                groups.push_front(second);
                groups.push_front(group);
            }
        }
    }
    true
}

/// Sends one group until each item is delivered or dead-lettered.
pub(crate) async fn deliver_group<T: Carries>(
    ctx: &SinkContext,
    mut items: Vec<T>,
    max_duration: Option<Duration>,
    sender: &impl Attempt<T>,
    stop: &mut watch::Receiver<bool>,
) -> GroupResult<T> {
    let mut attempt = 0u32;
    let mut first_failure: Option<Instant> = None;
    let mut jitter = thoth_http::Jitter::new();
    while !items.is_empty() {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return GroupResult::Stopped,
            _ = ctx.pause.wait() => {}
        }
        for item in &mut items {
            item.event_mut().attempts += 1;
        }
        let outcome = sender.send(&items).await;
        let settled = settle(outcome, std::mem::take(&mut items));
        ctx.delivered(settled.delivered.iter().map(Carries::event));
        // One write for each run of events rejected for the same reason.
        for run in settled.rejected.chunk_by(|a, b| a.1 == b.1) {
            let events = run.iter().map(|(item, _)| item.event());
            if !ctx.dead_letter(events, &run[0].1, "rejected", stop).await {
                return GroupResult::Stopped;
            }
        }
        if let Some(group) = settled.split {
            return GroupResult::Split(group);
        }
        let Some(failure) = settled.failure else {
            break;
        };
        items = settled.retry;
        if items.is_empty() {
            break;
        }
        attempt += 1;
        for item in &mut items {
            item.event_mut()
                .first_failed_at
                .get_or_insert_with(now_rfc3339);
        }
        ctx.counters.retries.inc();
        ctx.counters.retried.inc_by(items.len() as u64);
        tracing::warn!(sink = %ctx.name, attempt, events = items.len(), reason = %failure.reason, "delivery failed; retrying");
        if failure.failing {
            // The config must change: waiting longer is right, dead-lettering is not.
            ctx.health.failing(failure.reason.clone());
        } else {
            ctx.health.failed(failure.reason.clone());
            let first = *first_failure.get_or_insert_with(Instant::now);
            if exhausted(first, Instant::now(), max_duration) {
                let reason = format!(
                    "{} (still failing after retry.max_duration {:?})",
                    failure.reason,
                    max_duration.unwrap_or_default()
                );
                let events = items.iter().map(Carries::event);
                if !ctx.dead_letter(events, &reason, "max_duration", stop).await {
                    return GroupResult::Stopped;
                }
                break;
            }
        }
        // The destination is struggling: the whole sink (every batch in flight) waits.
        ctx.pause.extend(retry_delay(
            &failure,
            attempt,
            &ctx.retry,
            jitter.next_unit(),
        ));
    }
    GroupResult::Done
}

/// Waits the backoff delay of retry number `attempt`; `false` when `stop` turned true
/// meanwhile.
pub async fn wait_backoff(
    retry: &thoth_config::RetryConfig,
    attempt: u32,
    unit: f64,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let delay = thoth_http::backoff(attempt, retry.initial_backoff, retry.max_backoff, unit);
    tokio::select! {
        _ = stop.wait_for(|s| *s) => false,
        _ = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use bytes::Bytes;
    use thoth_wal::record::EnrichedRecord;

    use super::*;
    use crate::{DeadLetterQueue, SinkHealth, SinkMetrics, SinkStatus};

    fn event(n: u32) -> Event {
        let json = format!(r#"{{"type":"decision","event_id":"e{n}"}}"#);
        Event::new(EnrichedRecord::new("acme", Bytes::from(json)), Some(1))
    }

    fn ids(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| e.sent().view().unwrap().event_id.unwrap().into_owned())
            .collect()
    }

    #[test]
    fn delivered_rejected_retried_and_split() {
        let s = settle(Outcome::Delivered, vec![event(1), event(2)]);
        assert_eq!(ids(&s.delivered), ["e1", "e2"]);
        assert!(s.failure.is_none() && s.retry.is_empty());

        let s = settle(
            Outcome::Reject {
                reason: "400".into(),
            },
            vec![event(1)],
        );
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(s.rejected[0].1, "400");

        // 413: a group in halves, a single event rejected as too large.
        let s = settle(
            Outcome::TooLarge {
                reason: "413".into(),
            },
            vec![event(1), event(2)],
        );
        assert_eq!(ids(&s.split.unwrap()), ["e1", "e2"]);
        let s = settle(
            Outcome::TooLarge {
                reason: "413".into(),
            },
            vec![event(1)],
        );
        assert!(s.split.is_none());
        assert!(s.rejected[0].1.starts_with("413 (a single event larger"));

        let after = Some(Duration::from_secs(7));
        let s = settle(
            Outcome::Retry {
                after,
                reason: "503".into(),
            },
            vec![event(1)],
        );
        assert_eq!(ids(&s.retry), ["e1"]);
        assert_eq!(
            s.failure,
            Some(Failure {
                reason: "503".into(),
                after,
                failing: false
            })
        );

        let s = settle(
            Outcome::Failing {
                reason: "401".into(),
            },
            vec![event(1)],
        );
        assert!(s.failure.unwrap().failing);
    }

    #[test]
    fn partial_results_settle_each_event() {
        let results = vec![
            ItemOutcome::Delivered,
            ItemOutcome::Reject("mapping".into()),
            ItemOutcome::Retry("429".into()),
            // The fourth has no result: retried.
        ];
        let items = vec![event(1), event(2), event(3), event(4)];
        let s = settle(Outcome::Partial(results), items);
        assert_eq!(ids(&s.delivered), ["e1"]);
        assert_eq!(s.rejected.len(), 1);
        assert_eq!(ids(&s.retry), ["e3", "e4"]);
        let f = s.failure.unwrap();
        assert_eq!(f.reason, "no result for this event");
        assert!(!f.failing);

        let s = settle(
            Outcome::Partial(vec![
                ItemOutcome::Failing("no such topic".into()),
                ItemOutcome::Delivered,
            ]),
            vec![event(1), event(2)],
        );
        assert!(
            s.failure.unwrap().failing,
            "one failing event makes the sink failing"
        );
        let s = settle(
            Outcome::Partial(vec![ItemOutcome::Delivered]),
            vec![event(1)],
        );
        assert!(s.failure.is_none(), "all delivered is no failure");
    }

    #[test]
    fn max_duration_and_retry_after() {
        let t0 = Instant::now();
        let max = Some(Duration::from_secs(60));
        assert!(!exhausted(t0, t0 + Duration::from_secs(59), max));
        assert!(exhausted(t0, t0 + Duration::from_secs(60), max));
        assert!(
            !exhausted(t0, t0 + Duration::from_secs(86_400), None),
            "no limit"
        );

        let retry = thoth_config::RetryConfig {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            max_duration: Duration::from_secs(3600),
        };
        let mut f = Failure {
            reason: "x".into(),
            after: Some(Duration::from_secs(30)),
            failing: false,
        };
        assert_eq!(
            retry_delay(&f, 1, &retry, 0.9),
            Duration::from_secs(30),
            "Retry-After wins"
        );
        f.after = None;
        assert_eq!(retry_delay(&f, 1, &retry, 0.0), Duration::from_millis(500));
        assert_eq!(retry_delay(&f, 3, &retry, 1.0), Duration::from_secs(4));
    }

    /// Answers each attempt with the next scripted outcome, recording what it was sent.
    struct Script {
        answers: Mutex<Vec<Outcome>>,
        sent: Mutex<Vec<Vec<String>>>,
    }

    impl Attempt<Event> for Script {
        fn send<'a>(&'a self, items: &'a [Event]) -> BoxFuture<'a, Outcome> {
            self.sent.lock().unwrap().push(ids(items));
            let next = self.answers.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    fn context(dir: &std::path::Path, max_duration: Duration) -> std::sync::Arc<SinkContext> {
        let metrics = SinkMetrics::new(&prometheus::Registry::new()).unwrap();
        let retry = thoth_config::RetryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(8),
            max_duration,
        };
        SinkContext::new(
            "s",
            std::sync::Arc::new(SinkHealth::default()),
            &metrics,
            DeadLetterQueue::new(dir, "s"),
            retry,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_loop_splits_retries_after_the_asked_pause_and_dead_letters_at_max_duration() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), Duration::from_secs(100));
        let script = Script {
            answers: Mutex::new(vec![
                Outcome::TooLarge {
                    reason: "413".into(),
                },
                Outcome::Partial(vec![
                    ItemOutcome::Delivered,
                    ItemOutcome::Retry("429".into()),
                ]),
                Outcome::Retry {
                    after: Some(Duration::from_secs(40)),
                    reason: "503".into(),
                },
                Outcome::Delivered,
                Outcome::Retry {
                    after: Some(Duration::from_secs(60)),
                    reason: "503".into(),
                },
                Outcome::Retry {
                    after: Some(Duration::from_secs(60)),
                    reason: "503".into(),
                },
                Outcome::Retry {
                    after: Some(Duration::from_secs(60)),
                    reason: "503".into(),
                },
            ]),
            sent: Mutex::new(Vec::new()),
        };
        let (_stop_tx, mut stop) = watch::channel(false);
        let started = Instant::now();
        let groups = vec![vec![event(1), event(2), event(3), event(4)]];
        assert!(
            deliver_groups(
                &ctx,
                groups,
                Some(Duration::from_secs(100)),
                &script,
                &mut stop
            )
            .await
        );
        let sent = script.sent.lock().unwrap().clone();
        assert_eq!(
            sent,
            [
                vec!["e1", "e2", "e3", "e4"], // 413: split
                vec!["e1", "e2"],             // e1 delivered, e2 retried
                vec!["e2"],                   // 503, Retry-After 40 s
                vec!["e2"],                   // delivered
                vec!["e3", "e4"],             // 503 (the first failure) …
                vec!["e3", "e4"],             // … 60 s later …
                vec!["e3", "e4"],             // … 120 s: past max_duration, dead-lettered
            ]
        );
        assert!(
            started.elapsed() >= Duration::from_secs(100),
            "waited as asked: {:?}",
            started.elapsed()
        );
        let letters = ctx.dlq.list().unwrap().letters;
        let mut dead: Vec<_> = letters
            .iter()
            .map(|l| (l.attempts, l.reason.clone()))
            .collect();
        dead.sort();
        assert_eq!(dead.len(), 2);
        assert!(
            dead[0].1.contains("still failing after retry.max_duration"),
            "{dead:?}"
        );
        assert_eq!(dead[0].0, 4, "attempts made, the split one included");
        assert_eq!(ctx.counters.delivered.get(), 2);
        assert_eq!(ctx.counters.dead_lettered.get(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_sink_waits_without_a_limit_and_stops_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path(), Duration::from_secs(1));
        let answers = (0..50)
            .map(|_| Outcome::Failing {
                reason: "401".into(),
            })
            .collect();
        let script = Script {
            answers: Mutex::new(answers),
            sent: Mutex::new(Vec::new()),
        };
        let (stop_tx, mut stop) = watch::channel(false);
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(120)).await;
            stop_tx.send(true).unwrap();
        });
        let done = deliver_groups(
            &ctx,
            vec![vec![event(1)]],
            Some(Duration::from_secs(1)),
            &script,
            &mut stop,
        )
        .await;
        stopper.await.unwrap();
        assert!(
            !done,
            "stopped, not dead-lettered: the event stays in the WAL"
        );
        assert!(script.sent.lock().unwrap().len() > 10);
        assert!(ctx.dlq.list().unwrap().letters.is_empty());
        assert_eq!(ctx.health.snapshot().status, SinkStatus::Failing);
    }
}
