//! Dead letters: per sink, an append-only NDJSON file of the events a destination refused for
//! good (or that ran out of `retry.max_duration`), with the reason.
//!
//! Files under `data_dir/dlq/`: `SINK.ndjson` (the queue), `SINK.replay.ndjson` (entries
//! `dlq replay` handed back to the sink), `SINK.replaying.ndjson` (entries the sink is sending
//! again), and `SINK.lock`. Every change holds an exclusive lock on the lock file, so the CLI
//! can list, replay and purge while the gateway runs.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    pub event_id: String,
    pub sink: String,
    pub tenant_id: String,
    pub reason: String,
    pub attempts: u32,
    pub first_failed_at: String,
    /// Where it came from, for what a source could not accept (e.g. `kafka:topic/3/1042`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The enriched event (or, for the `ingest` queue, the message as received).
    pub event: Box<RawValue>,
}

impl DeadLetter {
    /// A dead letter for an event (its JSON; kept as a string if it is not valid JSON).
    pub fn new(
        sink: &str,
        tenant_id: &str,
        json: &[u8],
        reason: &str,
        attempts: u32,
        first_failed_at: String,
    ) -> DeadLetter {
        let event_id = thoth_event::EnrichedView::parse(json)
            .ok()
            .and_then(|v| v.event_id.map(|s| s.into_owned()))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(json).into_owned();
        let event = RawValue::from_string(text.clone()).unwrap_or_else(|_| {
            RawValue::from_string(serde_json::to_string(&text).expect("a string"))
                .expect("a JSON string is valid JSON")
        });
        DeadLetter {
            event_id,
            sink: sink.to_string(),
            tenant_id: tenant_id.to_string(),
            reason: reason.to_string(),
            attempts,
            first_failed_at,
            origin: None,
            event,
        }
    }
}

/// The dead-letter queue of one sink.
#[derive(Debug, Clone)]
pub struct DeadLetterQueue {
    dir: PathBuf,
    sink: String,
}

fn io_context(path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl DeadLetterQueue {
    pub fn new(dir: &Path, sink: &str) -> Self {
        DeadLetterQueue {
            dir: dir.to_path_buf(),
            sink: sink.to_string(),
        }
    }

    pub fn sink(&self) -> &str {
        &self.sink
    }

    fn file(&self, suffix: &str) -> PathBuf {
        self.dir.join(format!("{}.{suffix}", self.sink))
    }

    /// Runs `f` holding the queue's lock.
    fn locked<T>(&self, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        std::fs::create_dir_all(&self.dir).map_err(|e| io_context(&self.dir, e))?;
        let lock_path = self.file("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_context(&lock_path, e))?;
        lock.lock().map_err(|e| io_context(&lock_path, e))?;
        let result = f();
        let _ = lock.unlock();
        result
    }

    /// Appends dead letters durably.
    pub fn append(&self, letters: &[DeadLetter]) -> std::io::Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for l in letters {
            serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.locked(|| append_synced(&self.file("ndjson"), &buf))
    }

    /// Appends durably, retrying with backoff until it works (a full disk, say); `false` when
    /// `stop` turned true first — the caller then leaves the events in the WAL.
    pub async fn append_until_stored(
        &self,
        letters: std::sync::Arc<Vec<DeadLetter>>,
        retry: &thoth_config::RetryConfig,
        health: &crate::health::SinkHealth,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let mut attempt = 0;
        loop {
            let (dlq, batch) = (self.clone(), letters.clone());
            match tokio::task::spawn_blocking(move || dlq.append(&batch)).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => {
                    tracing::error!(sink = %self.sink, error = %e, "cannot write dead letters; retrying");
                    health.failed(format!("cannot write dead letters: {e}"));
                }
                Err(e) => tracing::error!(sink = %self.sink, error = %e, "dead-letter task failed"),
            }
            attempt += 1;
            if !crate::backoff::wait_backoff(retry, attempt, 0.5, stop).await {
                return false;
            }
        }
    }

    /// Every dead letter in the queue.
    pub fn list(&self) -> std::io::Result<Vec<DeadLetter>> {
        self.locked(|| read_letters(&self.file("ndjson")))
    }

    /// Deletes every dead letter; returns how many.
    pub fn purge(&self) -> std::io::Result<usize> {
        self.locked(|| {
            let path = self.file("ndjson");
            let n = count_lines(&path)?;
            remove_if_exists(&path)?;
            Ok(n)
        })
    }

    /// Hands every dead letter back to the sink (it sends them again, alone); returns how
    /// many. A running sink picks them up within a second; a stopped one at its next start.
    pub fn replay(&self) -> std::io::Result<usize> {
        self.locked(|| {
            let path = self.file("ndjson");
            let content = match std::fs::read(&path) {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(io_context(&path, e)),
            };
            let n = content.iter().filter(|&&b| b == b'\n').count();
            append_synced(&self.file("replay.ndjson"), &content)?;
            remove_if_exists(&path)?;
            Ok(n)
        })
    }

    /// For the sink: the entries to send again, if any. They stay on disk (as "replaying")
    /// until [`DeadLetterQueue::finish_replay`], so a crash meanwhile loses none.
    pub fn take_replay(&self) -> std::io::Result<Vec<DeadLetter>> {
        self.locked(|| {
            let replaying = self.file("replaying.ndjson");
            if !replaying.exists() {
                let replay = self.file("replay.ndjson");
                if !replay.exists() {
                    return Ok(Vec::new());
                }
                std::fs::rename(&replay, &replaying).map_err(|e| io_context(&replay, e))?;
            }
            read_letters(&replaying)
        })
    }

    /// The replayed entries were sent (or dead-lettered again).
    pub fn finish_replay(&self) -> std::io::Result<()> {
        self.locked(|| remove_if_exists(&self.file("replaying.ndjson")))
    }
}

fn append_synced(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io_context(path, e))?;
    let before = f.metadata()?.len();
    let r = f.write_all(buf).and_then(|()| f.sync_data());
    if r.is_err() {
        let _ = f.set_len(before);
    }
    r.map_err(|e| io_context(path, e))
}

fn read_letters(path: &Path) -> std::io::Result<Vec<DeadLetter>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_context(path, e)),
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line = line.map_err(|e| io_context(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let letter = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} line {}: not a dead letter: {e}", path.display(), i + 1),
            )
        })?;
        out.push(letter);
    }
    Ok(out)
}

fn count_lines(path: &Path) -> std::io::Result<usize> {
    match std::fs::read(path) {
        Ok(c) => Ok(c.iter().filter(|&&b| b == b'\n').count()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_context(path, e)),
    }
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_context(path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: &str) -> DeadLetter {
        DeadLetter {
            event_id: id.into(),
            sink: "s".into(),
            tenant_id: "acme".into(),
            reason: "HEC code 6: Invalid data format".into(),
            attempts: 1,
            first_failed_at: "2026-11-28T10:00:00.000Z".into(),
            origin: None,
            event: RawValue::from_string(format!(r#"{{"event_id":"{id}"}}"#)).unwrap(),
        }
    }

    #[test]
    fn append_list_replay_purge() {
        let dir = tempfile::tempdir().unwrap();
        let q = DeadLetterQueue::new(dir.path(), "s");
        assert!(q.list().unwrap().is_empty());
        q.append(&[letter("a"), letter("b")]).unwrap();
        q.append(&[letter("c")]).unwrap();
        let ids: Vec<String> = q.list().unwrap().into_iter().map(|l| l.event_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);

        assert_eq!(q.replay().unwrap(), 3);
        assert!(q.list().unwrap().is_empty());
        let taken = q.take_replay().unwrap();
        assert_eq!(taken.len(), 3);
        // Until finished, the same entries come back (a crash mid-replay loses nothing).
        assert_eq!(q.take_replay().unwrap().len(), 3);
        q.finish_replay().unwrap();
        assert!(q.take_replay().unwrap().is_empty());

        q.append(&[letter("d")]).unwrap();
        assert_eq!(q.purge().unwrap(), 1);
        assert!(q.list().unwrap().is_empty());
        assert_eq!(q.purge().unwrap(), 0);
    }
}
