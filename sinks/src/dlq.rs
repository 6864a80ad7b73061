//! Dead letters: per sink, an append-only NDJSON file of the events a destination refused for
//! good (or that ran out of `retry.max_duration`), with the reason.
//!
//! Files under `data_dir/dlq/`: `SINK.ndjson` (the queue), `SINK.replay.ndjson` (entries
//! `dlq replay` handed back to the sink), `SINK.replaying.ndjson` (entries the sink is sending
//! again), and `SINK.lock`. Every change holds an exclusive lock on the lock file, so the CLI
//! can list, replay and purge while the gateway runs.
//!
//! Each line is one [`DeadLetter`] as a JSON object with `"version": 1` (lines written before
//! versions were recorded have none and are version 1 too). A line that cannot be read — a
//! write torn by a crash, a damaged disk — is skipped and reported with its line number, never
//! fatal for the rest; an append after a torn last line starts on a line of its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::append::{append_lines, sync_parent};
use serde_json::value::RawValue;

/// The dead-letter line format this build writes (and the newest it reads).
pub const DEAD_LETTER_VERSION: u32 = 1;

fn version_one() -> u32 {
    1
}

/// One dead letter.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The line format ([`DEAD_LETTER_VERSION`]); absent in lines of earlier builds.
    #[serde(default = "version_one")]
    pub version: u32,
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
            version: DEAD_LETTER_VERSION,
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

/// Dead letters of `sink` for events that failed for good with `reason`: each given as
/// (tenant, enriched JSON, attempts made, when it first failed — now when never before).
pub fn letters_for<'a>(
    sink: &str,
    reason: &str,
    events: impl Iterator<Item = (&'a str, &'a [u8], u32, Option<&'a str>)>,
) -> Vec<DeadLetter> {
    let now = thoth_event::now_rfc3339();
    events
        .map(|(tenant, json, attempts, first_failed_at)| {
            DeadLetter::new(
                sink,
                tenant,
                json,
                reason,
                attempts,
                first_failed_at.map_or_else(|| now.clone(), str::to_string),
            )
        })
        .collect()
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
        let buf = encode_lines(letters)?;
        self.locked(|| append_synced(&self.file("ndjson"), &buf))
    }

    /// Appends durably, retrying with backoff until it works (a full disk, say), then logs and
    /// counts the dead letters (`class`: why, for `thoth_sink_dead_letters_total`); `false`
    /// when `stop` turned true first — the caller then leaves the events in the WAL.
    pub async fn append_until_stored(
        &self,
        letters: Vec<DeadLetter>,
        class: &str,
        retry: &thoth_config::RetryConfig,
        health: &crate::health::SinkHealth,
        counters: &crate::metrics::SinkCounters,
        stop: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        if letters.is_empty() {
            return true;
        }
        let letters = std::sync::Arc::new(letters);
        let n = letters.len() as u64;
        let mut attempt = 0;
        loop {
            let (dlq, batch) = (self.clone(), letters.clone());
            match tokio::task::spawn_blocking(move || dlq.append(&batch)).await {
                Ok(Ok(())) => {
                    tracing::warn!(sink = %self.sink, events = n, reason = %letters[0].reason, "events dead-lettered");
                    counters.dead_letters(class, n);
                    return true;
                }
                Ok(Err(e)) => {
                    tracing::error!(sink = %self.sink, error = %e, "cannot write dead letters; retrying");
                    health.failed(format!("cannot write dead letters: {e}"));
                }
                Err(e) => tracing::error!(sink = %self.sink, error = %e, "dead-letter task failed"),
            }
            attempt += 1;
            if !crate::retry::wait_backoff(retry, attempt, 0.5, stop).await {
                return false;
            }
        }
    }

    /// Every dead letter in the queue, and the lines that could not be read.
    pub fn list(&self) -> std::io::Result<Listing> {
        self.locked(|| read_letters(&self.file("ndjson")))
    }

    /// Deletes every dead letter (and unreadable line); returns how many letters.
    pub fn purge(&self) -> std::io::Result<usize> {
        self.locked(|| {
            let path = self.file("ndjson");
            let n = read_letters(&path)?.letters.len();
            remove_if_exists(&path)?;
            Ok(n)
        })
    }

    /// Hands every readable dead letter back to the sink (it sends them again, alone);
    /// returns how many. Unreadable lines stay in the queue. A running sink picks them up
    /// within a second; a stopped one at its next start.
    pub fn replay(&self) -> std::io::Result<usize> {
        self.locked(|| {
            let path = self.file("ndjson");
            let listing = read_letters(&path)?;
            if listing.letters.is_empty() {
                return Ok(0);
            }
            append_synced(
                &self.file("replay.ndjson"),
                &encode_lines(&listing.letters)?,
            )?;
            // What could not be read stays where `dlq list` shows it.
            let kept: Vec<u8> = listing
                .unreadable
                .iter()
                .flat_map(|u| u.text.bytes().chain(std::iter::once(b'\n')))
                .collect();
            if kept.is_empty() {
                remove_if_exists(&path)?;
            } else {
                replace_synced(&path, &kept)?;
            }
            Ok(listing.letters.len())
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
            let listing = read_letters(&replaying)?;
            for u in &listing.unreadable {
                tracing::error!(sink = %self.sink, line = u.line, reason = %u.reason, "skipping an unreadable replayed dead letter");
            }
            Ok(listing.letters)
        })
    }

    /// The replayed entries were sent (or dead-lettered again).
    pub fn finish_replay(&self) -> std::io::Result<()> {
        self.locked(|| remove_if_exists(&self.file("replaying.ndjson")))
    }

    /// [`DeadLetterQueue::take_replay`] off the async workers; errors are logged. `None`
    /// when there is nothing to replay.
    pub async fn next_replay(&self) -> Option<Vec<DeadLetter>> {
        let dlq = self.clone();
        match tokio::task::spawn_blocking(move || dlq.take_replay()).await {
            Ok(Ok(letters)) if !letters.is_empty() => {
                tracing::info!(sink = %self.sink, events = letters.len(), "replaying dead letters");
                Some(letters)
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                tracing::error!(sink = %self.sink, error = %e, "cannot read replayed dead letters");
                None
            }
            Err(e) => {
                tracing::error!(sink = %self.sink, error = %e, "the replay task failed");
                None
            }
        }
    }

    /// [`DeadLetterQueue::finish_replay`] off the async workers; errors are logged (the
    /// entries are then sent once more, at least once).
    pub async fn end_replay(&self) {
        let dlq = self.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || dlq.finish_replay()).await {
            tracing::error!(sink = %self.sink, error = %e, "cannot finish a dead-letter replay");
        }
    }
}

/// What a dead-letter file holds.
#[derive(Debug, Default)]
pub struct Listing {
    pub letters: Vec<DeadLetter>,
    /// Lines that are not dead letters, in file order.
    pub unreadable: Vec<Unreadable>,
}

/// A line of a dead-letter file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// 1-based.
    pub line: usize,
    pub reason: String,
    /// The line as it is (lossy UTF-8).
    pub text: String,
}

/// Reads one line of a dead-letter file.
pub fn parse_line(line: &[u8]) -> Result<DeadLetter, String> {
    // The version first: a newer line is reported as such, not as a malformed one.
    #[derive(Deserialize)]
    struct Version {
        #[serde(default = "version_one")]
        version: u32,
    }
    if let Ok(Version { version }) = serde_json::from_slice(line) {
        if version > DEAD_LETTER_VERSION {
            return Err(format!(
                "dead-letter version {version} is newer than this build reads ({DEAD_LETTER_VERSION})"
            ));
        }
    }
    serde_json::from_slice(line).map_err(|e| format!("not a dead letter: {e}"))
}

/// Splits a dead-letter file into letters and unreadable lines. A last line without its
/// newline is a torn write.
pub fn parse_letters(content: &[u8]) -> Listing {
    let mut listing = Listing::default();
    let complete = content.ends_with(b"\n");
    let lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
    let last = lines.len().saturating_sub(if complete { 2 } else { 1 });
    for (i, line) in lines.iter().enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let torn = !complete && i == last;
        match parse_line(line) {
            Ok(letter) if !torn => listing.letters.push(letter),
            result => listing.unreadable.push(Unreadable {
                line: i + 1,
                reason: match result {
                    Err(e) if !torn => e,
                    _ => "a torn last line (a write cut short by a crash)".to_string(),
                },
                text: String::from_utf8_lossy(line).into_owned(),
            }),
        }
    }
    listing
}

fn encode_lines(letters: &[DeadLetter]) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    for l in letters {
        serde_json::to_writer(&mut buf, l).map_err(std::io::Error::other)?;
        buf.push(b'\n');
    }
    Ok(buf)
}

/// Appends `buf` durably (see [`crate::append`]); errors name the file.
fn append_synced(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    append_lines(path, buf).map_err(|e| io_context(path, e))
}

/// Replaces a file's content (write a temporary file, sync, rename, sync the directory).
fn replace_synced(path: &Path, content: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("ndjson.tmp");
    let mut f = File::create(&tmp).map_err(|e| io_context(&tmp, e))?;
    f.write_all(content)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| sync_parent(path))
        .map_err(|e| io_context(path, e))
}

fn read_letters(path: &Path) -> std::io::Result<Listing> {
    match std::fs::read(path) {
        Ok(content) => Ok(parse_letters(&content)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Listing::default()),
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

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    fn letter(id: &str) -> DeadLetter {
        DeadLetter {
            version: DEAD_LETTER_VERSION,
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
        assert!(q.list().unwrap().letters.is_empty());
        q.append(&[letter("a"), letter("b")]).unwrap();
        q.append(&[letter("c")]).unwrap();
        let ids: Vec<String> = q
            .list()
            .unwrap()
            .letters
            .into_iter()
            .map(|l| l.event_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);

        assert_eq!(q.replay().unwrap(), 3);
        assert!(q.list().unwrap().letters.is_empty());
        let taken = q.take_replay().unwrap();
        assert_eq!(taken.len(), 3);
        // Until finished, the same entries come back (a crash mid-replay loses nothing).
        assert_eq!(q.take_replay().unwrap().len(), 3);
        q.finish_replay().unwrap();
        assert!(q.take_replay().unwrap().is_empty());

        q.append(&[letter("d")]).unwrap();
        assert_eq!(q.purge().unwrap(), 1);
        assert!(q.list().unwrap().letters.is_empty());
        assert_eq!(q.purge().unwrap(), 0);
    }

    #[test]
    fn reads_the_released_formats() {
        // Lines of earlier builds carry no version; they are version 1.
        for name in ["dlq-unversioned.ndjson", "dlq-v1.ndjson"] {
            let content = std::fs::read(format!("{FIXTURES}/{name}")).unwrap();
            let listing = parse_letters(&content);
            assert!(
                listing.unreadable.is_empty(),
                "{name}: {:?}",
                listing.unreadable
            );
            let ids: Vec<&str> = listing
                .letters
                .iter()
                .map(|l| l.event_id.as_str())
                .collect();
            assert_eq!(ids, ["e1", "e2"], "{name}");
            assert_eq!(listing.letters[0].version, 1);
            assert_eq!(
                listing.letters[1].origin.as_deref(),
                Some("kafka:thoth.decisions/3/1042")
            );
            assert_eq!(
                listing.letters[0].event.get(),
                r#"{"type":"decision","event_id":"e1"}"#
            );
        }
    }

    #[test]
    fn a_torn_line_is_skipped_and_reported_and_the_next_append_starts_a_new_line() {
        let dir = tempfile::tempdir().unwrap();
        let q = DeadLetterQueue::new(dir.path(), "s");
        q.append(&[letter("a")]).unwrap();
        // A crash cut the next append short.
        let path = dir.path().join("s.ndjson");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"version":1,"event_id":"b","sin"#).unwrap();
        let listing = q.list().unwrap();
        assert_eq!(listing.letters.len(), 1);
        assert_eq!(listing.unreadable.len(), 1);
        assert_eq!(listing.unreadable[0].line, 2);
        assert!(listing.unreadable[0].reason.contains("torn"));
        q.append(&[letter("c")]).unwrap();
        let listing = q.list().unwrap();
        let ids: Vec<&str> = listing
            .letters
            .iter()
            .map(|l| l.event_id.as_str())
            .collect();
        assert_eq!(
            ids,
            ["a", "c"],
            "the append was not glued onto the torn line"
        );
        assert_eq!(listing.unreadable.len(), 1);
        assert!(listing.unreadable[0].reason.contains("not a dead letter"));
        // A damaged line in the middle, and a line of a newer format, are reported too.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"\xff\xfe garbage\n{\"version\":9}\n").unwrap();
        q.append(&[letter("d")]).unwrap();
        let listing = q.list().unwrap();
        assert_eq!(listing.letters.len(), 3);
        let reasons: Vec<&str> = listing
            .unreadable
            .iter()
            .map(|u| u.reason.as_str())
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[2].contains("version 9 is newer"), "{reasons:?}");
        // Replay hands back the letters; what cannot be read stays in the queue.
        assert_eq!(q.replay().unwrap(), 3);
        let left = q.list().unwrap();
        assert!(left.letters.is_empty());
        assert_eq!(left.unreadable.len(), 3);
        assert_eq!(q.take_replay().unwrap().len(), 3);
    }

    proptest::proptest! {
        /// Whatever bytes a dead-letter file holds, reading never panics, every line is either
        /// a letter or reported, and well-formed letters among garbage are all found.
        #[test]
        fn any_file_content_reads_without_panicking(
            garbage in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0..6),
            ids in proptest::collection::vec("[a-z0-9]{1,8}", 0..6),
        ) {
            let mut content = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                serde_json::to_writer(&mut content, &letter(id)).unwrap();
                content.push(b'\n');
                if let Some(g) = garbage.get(i) {
                    content.extend(g.iter().filter(|&&b| b != b'\n'));
                    content.push(b'\n');
                }
            }
            let listing = parse_letters(&content);
            let found: Vec<&str> = listing.letters.iter().map(|l| l.event_id.as_str()).collect();
            let want: Vec<&str> = ids.iter().map(String::as_str).collect();
            proptest::prop_assert_eq!(found, want);
            let _ = parse_letters(&garbage.concat());
        }
    }
}
