//! How many requests an HTTP sink keeps in flight: a fixed number, or adaptive (AIMD).
//!
//! Adaptive: the limit starts at 1 and grows by one after every window of answers in which
//! the limit bound (at least half of the requests were sent with every slot taken, in the
//! window and on the mean over windows) and the round trip did not rise; it shrinks by a fifth after a
//! window with a back-pressure answer (429, 503, HEC code 9, a timeout, any retryable failure)
//! or with a round trip that rose — the sign that the destination queues requests instead of
//! serving them. A rise is read two ways, both on round trips smoothed over windows (an
//! exponentially weighted mean and deviation, as Vector's adaptive concurrency does), so that
//! jitter — a destination whose answers take 1 ms or 41 ms by turns — is not read as queueing:
//! * suddenly: a window's mean above the smoothed round trip by more than its usual deviation;
//! * slowly: the smoothed round trip well above the lowest it has been recently (a queue that
//!   grows a little with every added request). When the smoothed round trip has not come near
//!   that baseline for long, the limit is halved and held for a few windows to measure again at
//!   low concurrency; if it still does not come down, the destination is slower now and the
//!   baseline is taken afresh.
//!
//! So a sink settles near the concurrency its destination serves best instead of flooding it
//! or crawling. A limit that binds only in bursts does not grow: a sink that keeps up with
//! five requests in flight and now and then reaches sixteen gains nothing from the other
//! slots but the memory of the batches they hold.
//!
//! [`AimdLimit`] is the pure rule; [`Slots`] applies a limit to requests in flight.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// Multiplicative decrease on back-pressure or queueing.
const DECREASE: f64 = 0.8;
/// A smoothed round trip above `baseline × RTT_TOLERANCE + RTT_SLACK` means the destination
/// queues. The slack keeps our own scheduling delays (a gateway busy on both cores) from
/// reading as queueing, which would throttle delivery exactly when it must keep up;
/// back-pressure answers still act at once.
const RTT_TOLERANCE: f64 = 1.5;
const RTT_SLACK: f64 = 0.025;
/// The weight of the newest window in the smoothed round trip and its variance, and in the
/// smoothed share of requests sent at the limit.
const RTT_SMOOTHING: f64 = 0.3;
/// The limit grows only while at least this share of requests (smoothed) is sent with every
/// slot taken: one window of a few answers is too few to tell a burst from demand.
const BINDING_SHARE: f64 = 0.5;
/// A window's mean more than this many standard deviations (and `RTT_SLACK`) above the
/// smoothed round trip is a sudden queue.
const RTT_DEVIATIONS: f64 = 2.5;
/// The baseline is the lowest smoothed round trip: after this many windows none of which came
/// within `BASELINE_CONFIRM` of it, the limit is halved and held for `PROBE_WINDOWS` windows;
/// if the round trip does not come down, the baseline is taken afresh, so a destination that
/// became slower for good is not throttled forever. (A baseline that drifts up every window
/// would follow a slowly growing queue and let the limit creep to its maximum.)
const BASELINE_WINDOWS: u32 = 200;
const BASELINE_CONFIRM: f64 = 1.1;
const PROBE_WINDOWS: u32 = 10;
/// Windows of one request measured before the limit moves: the first answers on a new
/// connection can be far faster than the rest (TCP quick ACKs), and a baseline taken from one
/// of them would read every later answer as queueing.
const WARMUP_WINDOWS: u32 = 8;

/// How an answer bears on the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Served (delivered, rejected, partial): the round trip counts.
    Served,
    /// The destination is overloaded or unreachable: slow down.
    BackPressure,
    /// Says nothing about load (e.g. a refused token): ignored.
    Ignore,
}

/// The adaptive limit (AIMD on round-trip time and back-pressure answers).
#[derive(Debug, Clone)]
pub struct AimdLimit {
    max: f64,
    limit: f64,
    /// The round trip smoothed over windows, and its variance.
    smoothed_rtt: Option<f64>,
    rtt_variance: f64,
    baseline_rtt: Option<f64>,
    baseline_age: u32,
    /// The lowest smoothed round trip since the baseline was last confirmed.
    lowest_since: f64,
    /// Windows the halved limit has been held for to check the baseline (0: not probing).
    probe_windows: u32,
    /// The share of requests sent with every slot taken, smoothed over windows.
    at_limit_share: f64,
    /// Windows measured so far, up to `WARMUP_WINDOWS`.
    warmup_windows: u32,
    window_rtt_sum: f64,
    window_answers: u32,
    window_back_pressure: bool,
    /// Answers in the window that were sent with every slot taken.
    window_at_limit: u32,
}

impl AimdLimit {
    pub fn new(max: usize) -> Self {
        AimdLimit {
            max: max.max(1) as f64,
            limit: 1.0,
            smoothed_rtt: None,
            rtt_variance: 0.0,
            baseline_rtt: None,
            baseline_age: 0,
            lowest_since: f64::INFINITY,
            probe_windows: 0,
            at_limit_share: 1.0,
            warmup_windows: 0,
            window_rtt_sum: 0.0,
            window_answers: 0,
            window_back_pressure: false,
            window_at_limit: 0,
        }
    }

    /// Requests allowed in flight now.
    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// Records one answer; `in_flight` is how many requests were in flight when it was sent
    /// (itself included). A window closes after as many answers as the limit allows.
    pub fn record(&mut self, rtt: Duration, answer: Answer, in_flight: usize) {
        match answer {
            Answer::Ignore => return,
            Answer::BackPressure => self.window_back_pressure = true,
            Answer::Served => self.window_rtt_sum += rtt.as_secs_f64(),
        }
        self.window_answers += 1;
        if in_flight >= self.limit() {
            self.window_at_limit += 1;
        }
        if self.window_answers as usize >= self.limit() {
            self.close_window();
        }
    }

    fn close_window(&mut self) {
        let served = self.window_answers;
        let share = f64::from(self.window_at_limit) / f64::from(served.max(1));
        self.at_limit_share += RTT_SMOOTHING * (share - self.at_limit_share);
        // Both this window and the smoothed share: the window alone is noisy, the smoothed
        // share alone lags behind the limit it grows.
        let bound = share >= BINDING_SHARE && self.at_limit_share >= BINDING_SHARE;
        let mean = (served > 0).then(|| self.window_rtt_sum / f64::from(served));
        if self.window_back_pressure {
            self.limit = (self.limit * DECREASE).max(1.0);
        } else if let Some(mean) = mean {
            let sudden = self.is_sudden_rise(mean);
            let smoothed = self.smooth(mean);
            if self.warmup_windows < WARMUP_WINDOWS {
                self.warmup_windows += 1;
                self.end_window();
                return;
            }
            let baseline = self.update_baseline(smoothed);
            if sudden || smoothed > baseline * RTT_TOLERANCE + RTT_SLACK {
                self.limit = (self.limit * DECREASE).max(1.0);
            } else if bound && self.probe_windows == 0 {
                self.limit = (self.limit + 1.0).min(self.max);
            }
        }
        self.end_window();
    }

    fn end_window(&mut self) {
        self.window_rtt_sum = 0.0;
        self.window_answers = 0;
        self.window_back_pressure = false;
        self.window_at_limit = 0;
    }

    /// Whether a window's mean is above the smoothed round trip by more than its jitter.
    fn is_sudden_rise(&self, mean: f64) -> bool {
        self.smoothed_rtt.is_some_and(|smoothed| {
            mean > smoothed + (RTT_DEVIATIONS * self.rtt_variance.sqrt()).max(RTT_SLACK)
        })
    }

    /// Folds a window's mean into the smoothed round trip and its variance; returns the
    /// smoothed round trip.
    fn smooth(&mut self, mean: f64) -> f64 {
        let smoothed = self.smoothed_rtt.unwrap_or(mean);
        let delta = mean - smoothed;
        let smoothed = smoothed + RTT_SMOOTHING * delta;
        self.rtt_variance =
            (1.0 - RTT_SMOOTHING) * (self.rtt_variance + RTT_SMOOTHING * delta * delta);
        self.smoothed_rtt = Some(smoothed);
        smoothed
    }

    /// Confirms, keeps, probes or renews the baseline given the newest smoothed round trip;
    /// returns the baseline.
    fn update_baseline(&mut self, smoothed: f64) -> f64 {
        self.lowest_since = self.lowest_since.min(smoothed);
        let baseline = match self.baseline_rtt {
            // Near the baseline: confirmed.
            Some(b) if smoothed <= b * BASELINE_CONFIRM => {
                self.baseline_age = 0;
                self.lowest_since = f64::INFINITY;
                self.probe_windows = 0;
                smoothed.min(b)
            }
            Some(b) if self.probe_windows == 0 && self.baseline_age < BASELINE_WINDOWS => {
                self.baseline_age += 1;
                b
            }
            // Unconfirmed for long: halve the limit and hold it a few windows, to measure at
            // low concurrency (adopting the higher round trips seen meanwhile would let the
            // limit creep up a queue that grows slowly).
            Some(b) if self.probe_windows == 0 => {
                self.probe_windows = 1;
                self.limit = (self.limit / 2.0).max(1.0);
                b
            }
            Some(b) if self.probe_windows < PROBE_WINDOWS => {
                self.probe_windows += 1;
                b
            }
            // Still unconfirmed after the probe, or none yet: the destination is slower now;
            // take the lowest recent smoothed round trip as the baseline.
            _ => {
                self.baseline_age = 0;
                self.probe_windows = 0;
                std::mem::replace(&mut self.lowest_since, f64::INFINITY)
            }
        };
        self.baseline_rtt = Some(baseline);
        baseline
    }
}

/// The request slots of one sink: a fixed count or an [`AimdLimit`].
pub struct Slots {
    state: Mutex<SlotState>,
    freed: Notify,
}

struct SlotState {
    in_flight: usize,
    fixed: Option<usize>,
    adaptive: AimdLimit,
}

impl SlotState {
    fn limit(&self) -> usize {
        self.fixed.unwrap_or_else(|| self.adaptive.limit())
    }
}

/// One request's slot; `in_flight` is the count when it was taken (itself included).
pub struct Slot {
    slots: Arc<Slots>,
    pub in_flight: usize,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.state.lock().unwrap().in_flight -= 1;
        self.slots.freed.notify_waiters();
    }
}

impl Slots {
    /// `fixed`: that many slots; `None`: adaptive up to `max`.
    pub fn new(fixed: Option<usize>, max: usize) -> Self {
        Slots {
            state: Mutex::new(SlotState {
                in_flight: 0,
                fixed: fixed.map(|n| n.max(1)),
                adaptive: AimdLimit::new(max),
            }),
            freed: Notify::new(),
        }
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state.lock().unwrap().limit()
    }

    pub fn in_flight(&self) -> usize {
        self.state.lock().unwrap().in_flight
    }

    /// Waits for a free slot under the current limit.
    pub async fn acquire(self: &Arc<Self>) -> Slot {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check, so a slot freed in between still wakes us.
            freed.as_mut().enable();
            {
                let mut s = self.state.lock().unwrap();
                if s.in_flight < s.limit() {
                    s.in_flight += 1;
                    return Slot {
                        slots: self.clone(),
                        in_flight: s.in_flight,
                    };
                }
            }
            freed.await;
        }
    }

    /// Waits until nothing is in flight.
    pub async fn idle(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.in_flight() == 0 {
                return;
            }
            freed.await;
        }
    }

    /// Feeds an answer to the adaptive limit (no effect on a fixed one); returns the limit.
    pub fn record(&self, rtt: Duration, answer: Answer, in_flight: usize) -> usize {
        let mut s = self.state.lock().unwrap();
        if s.fixed.is_none() {
            s.adaptive.record(rtt, answer, in_flight);
        }
        let limit = s.limit();
        drop(s);
        // A raised limit may admit a waiting request.
        self.freed.notify_waiters();
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A destination that serves `best` requests at once in `base`; each request beyond
    /// queues and adds another `base` to everyone's round trip.
    fn knee(in_flight: usize, best: usize) -> Duration {
        let base = Duration::from_millis(50);
        base * (1 + in_flight.saturating_sub(best)) as u32
    }

    /// Runs `windows` rounds in which the sink fills its limit; returns the limits seen.
    fn settle(
        limit: &mut AimdLimit,
        rounds: usize,
        mut rtt: impl FnMut(usize) -> (Duration, Answer),
    ) -> Vec<usize> {
        let mut seen = Vec::new();
        for _ in 0..rounds {
            let n = limit.limit();
            for _ in 0..n {
                let (d, a) = rtt(n);
                limit.record(d, a, n);
            }
            seen.push(limit.limit());
        }
        seen
    }

    #[test]
    fn settles_near_the_destinations_best_concurrency() {
        for best in [3, 8, 20] {
            let mut limit = AimdLimit::new(64);
            let seen = settle(&mut limit, 400, |n| (knee(n, best), Answer::Served));
            let mut late = seen[200..].to_vec();
            late.sort_unstable();
            let (median, highest) = (late[late.len() / 2], late[late.len() - 1]);
            // Mostly within one decrease below the best and two above it; never far above
            // (dips below are the periodic baseline probes).
            let near = (best as f64 * DECREASE).floor() as usize..=best + 2;
            assert!(near.contains(&median), "best {best}: median limit {median}");
            assert!(highest <= best + 2, "best {best}: flooded up to {highest}");
        }
    }

    /// A small deterministic generator (xorshift), so the tests need no seed crate.
    fn coin(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state % 1000) as f64 / 1000.0
    }

    fn late_median(seen: &[usize]) -> usize {
        let mut late = seen[seen.len() / 2..].to_vec();
        late.sort_unstable();
        late[late.len() / 2]
    }

    #[test]
    fn jitter_is_not_read_as_queueing() {
        // A destination that serves many requests at once in 41 ms, but answers 1 ms and
        // 41 ms by turns to a single connection (a response written in two sends meeting the
        // client's delayed ACK), with an odd 1 ms answer under load too: the limit must grow
        // as it does for a steady 41 ms, not stay pinned near 1 by the fast answers.
        for max in [16, 64] {
            let mut state = 0x2545_f491_4f6c_dd1d_u64;
            let mut turn = false;
            let mut limit = AimdLimit::new(max);
            let seen = settle(&mut limit, 600, |n| {
                turn = !turn;
                let fast = if n == 1 { turn } else { coin(&mut state) < 0.1 };
                let ms = if fast { 1 } else { 41 };
                (Duration::from_millis(ms), Answer::Served)
            });
            let median = late_median(&seen);
            assert!(median * 10 >= max * 8, "max {max}: median limit {median}");
        }
        // Round trips of 1 or 41 ms at random, whatever the concurrency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut limit = AimdLimit::new(16);
        let seen = settle(&mut limit, 600, |_| {
            let ms = if coin(&mut state) < 0.5 { 1 } else { 41 };
            (Duration::from_millis(ms), Answer::Served)
        });
        assert!(late_median(&seen) >= 13, "{seen:?}");
    }

    #[test]
    fn a_fast_first_answer_does_not_become_the_baseline() {
        // The first answer on a new connection in 1 ms, then 41 ms with an odd fast one.
        let mut state = 0x1234_5678_9abc_def1_u64;
        let mut first = true;
        let mut limit = AimdLimit::new(16);
        let seen = settle(&mut limit, 600, |_| {
            let fast = std::mem::take(&mut first) || coin(&mut state) < 0.05;
            (
                Duration::from_millis(if fast { 1 } else { 41 }),
                Answer::Served,
            )
        });
        assert!(late_median(&seen) >= 13, "{seen:?}");
    }

    #[test]
    fn a_slowly_growing_queue_does_not_let_the_limit_creep() {
        // Each request beyond 6 adds a quarter of the 20 ms round trip: no single step is a
        // jump, but the smoothed round trip leaves its baseline.
        let mut limit = AimdLimit::new(64);
        let seen = settle(&mut limit, 2000, |n| {
            let extra = n.saturating_sub(6) as f64 * 0.25;
            (
                Duration::from_secs_f64(0.020 * (1.0 + extra)),
                Answer::Served,
            )
        });
        let median = late_median(&seen);
        assert!((6..=16).contains(&median), "median limit {median}");
    }

    #[test]
    fn grows_to_the_maximum_when_round_trips_stay_flat() {
        let mut limit = AimdLimit::new(16);
        let seen = settle(&mut limit, 100, |_| {
            (Duration::from_millis(5), Answer::Served)
        });
        assert_eq!(*seen.last().unwrap(), 16);
        assert!(seen.iter().all(|l| *l <= 16));
    }

    #[test]
    fn a_limit_that_binds_only_in_bursts_does_not_grow() {
        // Five requests in flight keep up; one answer in five was sent in a burst that took
        // every slot there was. Flat round trips: only the share at the limit says stop.
        let mut state = 0x0bad_cafe_f00d_1234_u64;
        let mut limit = AimdLimit::new(16);
        let mut seen = Vec::new();
        for _ in 0..2000 {
            let burst = coin(&mut state) < 0.2;
            let in_flight = if burst {
                limit.limit()
            } else {
                5.min(limit.limit())
            };
            limit.record(Duration::from_millis(5), Answer::Served, in_flight);
            seen.push(limit.limit());
        }
        // The sink needs five: the limit reaches six (at five every request is sent at the
        // limit), and a burst may now and then look like demand for one more, never for the
        // sixteen there are. (Growing whenever a window had one request at the limit, as the
        // rule once did, went to sixteen.)
        assert!(seen.iter().all(|l| *l <= 7), "{seen:?}");
        assert!(*seen.last().unwrap() >= 6, "{seen:?}");
    }

    #[test]
    fn back_pressure_shrinks_the_limit_to_one_at_the_least() {
        let mut limit = AimdLimit::new(64);
        settle(&mut limit, 30, |_| {
            (Duration::from_millis(5), Answer::Served)
        });
        let grown = limit.limit();
        assert!(grown >= 20, "{grown}");
        let seen = settle(&mut limit, 10, |_| {
            (Duration::from_millis(5), Answer::BackPressure)
        });
        assert!(seen[0] < grown);
        let seen = settle(&mut limit, 200, |_| {
            (Duration::from_millis(5), Answer::BackPressure)
        });
        assert_eq!(*seen.last().unwrap(), 1);
    }

    #[test]
    fn an_unused_limit_does_not_grow_and_ignored_answers_do_not_count() {
        let mut limit = AimdLimit::new(64);
        for _ in 0..100 {
            limit.record(Duration::from_millis(5), Answer::Served, 0);
        }
        assert_eq!(
            limit.limit(),
            1,
            "a sink with one request in flight does not need more"
        );
        for _ in 0..100 {
            limit.record(Duration::from_secs(9), Answer::Ignore, 1);
        }
        assert_eq!(limit.limit(), 1);
    }

    #[tokio::test]
    async fn slots_admit_up_to_the_limit_and_wake_waiters() {
        let slots = Arc::new(Slots::new(Some(2), 64));
        let a = slots.acquire().await;
        let b = slots.acquire().await;
        assert_eq!((a.in_flight, b.in_flight), (1, 2));
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.in_flight })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(a);
        assert_eq!(waiter.await.unwrap(), 2);
        drop(b);
        slots.idle().await;
        assert_eq!(slots.in_flight(), 0);
    }
}
