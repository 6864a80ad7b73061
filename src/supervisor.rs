//! Background tasks that never die silently: each runs under a [`Supervisor`], which catches
//! a panic, logs it, counts it (`thoth_task_restarts_total{task}`), shows it on `/v1/health`
//! and starts the task again (after a pause that grows while it keeps failing). A task that
//! returns is done and not restarted.
//!
//! A task is given as a factory that builds a fresh run of it, so state a panic may have left
//! half-changed is rebuilt, not reused (a sink, for one, restarts from its persisted cursor).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};
use serde::Serialize;
use tokio::task::JoinHandle;

/// The pause before the first restart; doubled for each restart in a row, up to
/// [`MAX_RESTART_DELAY`].
const FIRST_RESTART_DELAY: Duration = Duration::from_millis(500);
const MAX_RESTART_DELAY: Duration = Duration::from_secs(60);
/// A run this long resets the pause to [`FIRST_RESTART_DELAY`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// For this long after a restart, `/v1/health` reports the gateway `degraded`.
pub const RECENT_RESTART: Duration = Duration::from_secs(300);

/// What `/v1/health` shows of one task that has restarted.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReport {
    pub restarts: u64,
    /// The last panic's message.
    pub last_error: String,
    /// When the task last restarted (RFC 3339).
    pub last_restart: String,
    #[serde(skip)]
    restarted_at: Instant,
}

impl TaskReport {
    /// Whether the last restart was within [`RECENT_RESTART`].
    pub fn recent(&self) -> bool {
        self.restarted_at.elapsed() < RECENT_RESTART
    }
}

/// Runs tasks, restarting those that panic.
#[derive(Clone)]
pub struct Supervisor {
    restarts: IntCounterVec,
    reports: Arc<Mutex<BTreeMap<String, TaskReport>>>,
}

impl Supervisor {
    pub fn new(registry: &Registry) -> prometheus::Result<Supervisor> {
        let restarts = IntCounterVec::new(
            Opts::new(
                "thoth_task_restarts_total",
                "Background tasks restarted after a panic, by task.",
            ),
            &["task"],
        )?;
        registry.register(Box::new(restarts.clone()))?;
        Ok(Supervisor {
            restarts,
            reports: Arc::default(),
        })
    }

    /// The tasks that have restarted, by name.
    pub fn reports(&self) -> BTreeMap<String, TaskReport> {
        self.reports.lock().unwrap().clone()
    }

    /// Runs `make()`'s future as task `name`, and runs a new one whenever it panics.
    pub fn spawn<F, Fut>(&self, name: impl Into<String>, mut make: F) -> JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let name = name.into();
        // The series exists from the start (0), so dashboards and `increase()` see the task.
        self.restarts.with_label_values(&[&name]);
        let this = self.clone();
        tokio::spawn(async move {
            let mut delay = FIRST_RESTART_DELAY;
            loop {
                let started = Instant::now();
                let error = match tokio::spawn(make()).await {
                    Ok(()) => return,
                    Err(e) if e.is_cancelled() => return, // the runtime is shutting down
                    Err(e) => panic_message(e.into_panic()),
                };
                if started.elapsed() >= HEALTHY_RUN {
                    delay = FIRST_RESTART_DELAY;
                }
                this.restarted(&name, &error, delay);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RESTART_DELAY);
            }
        })
    }

    /// Like [`Supervisor::spawn`] for a task built from parts: `build` makes a run of it and
    /// `run` runs one. The first run is built now, so that a task that cannot start is an
    /// error here; each restart builds a new one.
    pub fn spawn_built<T, E, B, R, Fut>(
        &self,
        name: impl Into<String>,
        mut build: B,
        run: R,
    ) -> Result<JoinHandle<()>, E>
    where
        T: Send + 'static,
        E: std::fmt::Display + Send + 'static,
        B: FnMut() -> Result<T, E> + Send + 'static,
        R: Fn(T) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut first = Some(build()?);
        Ok(self.spawn(name, move || {
            let built = first.take().map_or_else(&mut build, Ok).map(&run);
            async move {
                match built {
                    Ok(task) => task.await,
                    // It was built once: only a changed file or environment fails now.
                    Err(e) => tracing::error!(error = %e, "a background task cannot restart"),
                }
            }
        }))
    }

    fn restarted(&self, name: &str, error: &str, delay: Duration) {
        tracing::error!(task = %name, error = %error, restart_in_ms = delay.as_millis() as u64, "a background task panicked; restarting it");
        self.restarts.with_label_values(&[name]).inc();
        let mut reports = self.reports.lock().unwrap();
        let report = reports.entry(name.to_string()).or_insert(TaskReport {
            restarts: 0,
            last_error: String::new(),
            last_restart: String::new(),
            restarted_at: Instant::now(),
        });
        report.restarts += 1;
        report.last_error = error.to_string();
        report.last_restart = thoth_event::now_rfc3339();
        report.restarted_at = Instant::now();
    }
}

/// A panic payload as text (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => s.to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    };
    format!("panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_task_is_restarted_counted_and_reported() {
        let registry = Registry::new();
        let supervisor = Supervisor::new(&registry).unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        let task = supervisor.spawn("sweeper", move || {
            let runs = counted.clone();
            async move {
                // Panics on its first two runs, then finishes.
                if runs.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("out of range: {}", 10_000);
                }
            }
        });
        task.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        let reports = supervisor.reports();
        let report = &reports["sweeper"];
        assert_eq!(report.restarts, 2);
        assert_eq!(report.last_error, "panicked: out of range: 10000");
        assert!(report.recent());
        let metrics = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(
            metrics.contains("thoth_task_restarts_total{task=\"sweeper\"} 2"),
            "{metrics}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_is_not_restarted() {
        let supervisor = Supervisor::new(&Registry::new()).unwrap();
        let runs = Arc::new(AtomicU32::new(0));
        let counted = runs.clone();
        supervisor
            .spawn("once", move || {
                let runs = counted.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                }
            })
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(supervisor.reports().is_empty());
    }
}
