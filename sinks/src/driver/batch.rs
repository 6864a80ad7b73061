//! Reading one batch from the WAL: up to `timeout` from when the sink is ready to send it (it
//! has a free request slot) until the batch is full (`max_events`, `max_bytes`); when nothing
//! is there, the first entry is waited for. A sink that was idle sends its first event at
//! once; one that is busy fills its batches while its requests are in flight.

use std::time::Duration;

use thoth_wal::{Entry, Reader, WalError};
use tokio::time::Instant;

/// How a sink fills its batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    pub max_events: usize,
    pub max_bytes: usize,
    /// How long to wait for a batch to fill; zero takes what is there.
    pub timeout: Duration,
}

/// Reads a batch; `Err` when the WAL cannot be read (what was read so far is dropped: it is
/// read again, the cursor has not moved).
pub async fn collect(reader: &mut Reader, policy: BatchPolicy) -> Result<Vec<Entry>, WalError> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut bytes = 0usize;
    let deadline = Instant::now() + policy.timeout;
    loop {
        let more = reader.read(
            policy.max_events - entries.len(),
            policy.max_bytes.saturating_sub(bytes).max(1),
        )?;
        bytes += more.iter().map(|e| e.data.len()).sum::<usize>();
        entries.extend(more);
        if entries.len() >= policy.max_events || bytes >= policy.max_bytes {
            return Ok(entries);
        }
        if entries.is_empty() {
            reader.wait().await;
            continue;
        }
        if Instant::now() >= deadline {
            return Ok(entries);
        }
        tokio::select! {
            _ = reader.wait() => {}
            _ = tokio::time::sleep_until(deadline) => return Ok(entries),
        }
    }
}
