//! Replay protection for inbound webhooks: the `webhook-id`s accepted recently, each kept until
//! its signed `webhook-timestamp` plus the tolerance has passed (after that the timestamp
//! check refuses the request anyway).
//!
//! An id is *claimed* atomically before the events are appended to the WAL, so concurrent
//! copies of one request cannot both pass; the claim is written and fsync'd before the
//! append, so it survives a crash; a claim whose append failed is *released* (in memory and
//! with a release line), so the sender's retry is accepted.
//!
//! The file (`data_dir/hooks/{source}.seen`), version 2:
//!
//! ```text
//! thoth-seen-ids v2
//! 1795860300 msg_2x8…        a claim: expires at Unix second 1795860300
//! - msg_2x8…                 a release of that id
//! ```
//!
//! Version 1 (no header line) held `{accepted_at} {id}` lines; such an id expires at
//! `accepted_at + tolerance`. Both are read forever; the file is rewritten as version 2, with
//! the live claims only, when opened and whenever it holds mostly dead lines.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The first line of a version 2 file.
const HEADER_V2: &str = "thoth-seen-ids v2";

/// Lines written since the last rewrite past which the file is compacted, when most of them
/// are dead.
const COMPACT_AFTER_LINES: usize = 4096;

/// The ids claimed within their window, in memory and in a file.
#[derive(Debug)]
pub struct SeenIds {
    path: PathBuf,
    state: Mutex<State>,
    /// [`COMPACT_AFTER_LINES`], smaller in tests.
    compact_after: usize,
}

#[derive(Debug, Default)]
struct State {
    /// id → Unix second at which it expires.
    expires: HashMap<String, i64>,
    /// Lines in the file since it was last rewritten.
    lines: usize,
}

/// Why a claim failed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("already accepted (replay)")]
    Replay,
    #[error("cannot record the webhook id in {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The live entries of a seen-ids file (either version) at `now`.
pub fn read_entries(text: &str, window_s: i64, now: i64) -> HashMap<String, i64> {
    let mut lines = text.lines().peekable();
    let v2 = lines.peek() == Some(&HEADER_V2);
    if v2 {
        lines.next();
    }
    let mut expires = HashMap::new();
    for line in lines {
        if let Some(id) = line.strip_prefix("- ") {
            expires.remove(id);
            continue;
        }
        let Some((ts, id)) = line.split_once(' ') else {
            continue; // a torn last line: its claim was never acknowledged
        };
        let Ok(ts) = ts.parse::<i64>() else { continue };
        let expiry = if v2 { ts } else { ts.saturating_add(window_s) };
        if expiry >= now {
            expires.insert(id.to_string(), expiry);
        }
    }
    expires
}

impl SeenIds {
    /// Opens the file of one source, keeping the ids still live at `now`; `window_s` (the
    /// tolerance) dates version 1 entries.
    pub fn open(path: &Path, window_s: i64, now: i64) -> std::io::Result<SeenIds> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let expires = match std::fs::read_to_string(path) {
            Ok(text) => read_entries(&text, window_s, now),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        let seen = SeenIds {
            path: path.to_path_buf(),
            state: Mutex::new(State { expires, lines: 0 }),
            compact_after: COMPACT_AFTER_LINES,
        };
        seen.rewrite(&mut seen.state.lock().unwrap())?;
        Ok(seen)
    }

    /// Whether `id` is claimed and unexpired at `now` (a cheap check before reading a body;
    /// [`SeenIds::claim`] is the atomic one).
    pub fn contains(&self, id: &str, now: i64) -> bool {
        let state = self.state.lock().unwrap();
        state.expires.get(id).is_some_and(|&e| e >= now)
    }

    /// Claims `id` until `expires_at` (Unix seconds), durably: the claim is in the file and
    /// fsync'd when this returns. Blocking (call it off the async workers).
    pub fn claim(&self, id: &str, expires_at: i64, now: i64) -> Result<(), ClaimError> {
        let mut state = self.state.lock().unwrap();
        if state.expires.get(id).is_some_and(|&e| e >= now) {
            return Err(ClaimError::Replay);
        }
        state.expires.insert(id.to_string(), expires_at);
        // Ids never hold a newline: header values cannot.
        if let Err(source) = self.append(&format!("{expires_at} {id}\n")) {
            state.expires.remove(id);
            return Err(ClaimError::Io {
                path: self.path.clone(),
                source,
            });
        }
        state.lines += 1;
        self.compact_if_due(&mut state, now);
        Ok(())
    }

    /// Gives up a claim whose events were not accepted, so the sender's retry is. The release
    /// line is best effort: without it a restart within the window refuses that retry.
    pub fn release(&self, id: &str) {
        let mut state = self.state.lock().unwrap();
        state.expires.remove(id);
        if let Err(e) = self.append(&format!("- {id}\n")) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot record the release of a webhook id");
        }
        state.lines += 1;
    }

    fn append(&self, line: &str) -> std::io::Result<()> {
        let mut f = OpenOptions::new().append(true).open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    fn compact_if_due(&self, state: &mut State, now: i64) {
        if state.lines < self.compact_after {
            return;
        }
        state.expires.retain(|_, e| *e >= now);
        if state.lines > 2 * state.expires.len() {
            if let Err(e) = self.rewrite(state) {
                tracing::error!(path = %self.path.display(), error = %e, "cannot compact the webhook id file");
            }
        }
    }

    /// Replaces the file with the live entries, as version 2 (write, fsync, rename, fsync
    /// the directory).
    fn rewrite(&self, state: &mut State) -> std::io::Result<()> {
        let mut text = format!("{HEADER_V2}\n");
        for (id, expiry) in &state.expires {
            text.push_str(&format!("{expiry} {id}\n"));
        }
        let tmp = self.path.with_extension("seen.tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        state.lines = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    #[test]
    fn reads_the_released_formats() {
        // Version 1 (accepted_at id), written by earlier builds; tolerance 300 s.
        let v1 = std::fs::read_to_string(format!("{FIXTURES}/seen-ids-v1.seen")).unwrap();
        let live = read_entries(&v1, 300, 1_795_860_100);
        assert_eq!(live.len(), 2, "{live:?}");
        assert_eq!(live["msg_recent"], 1_795_860_000 + 300);
        assert!(!live.contains_key("msg_old"), "expired");
        // Version 2 (expires_at id, releases).
        let v2 = std::fs::read_to_string(format!("{FIXTURES}/seen-ids-v2.seen")).unwrap();
        let live = read_entries(&v2, 300, 1_795_860_100);
        assert_eq!(live.len(), 1, "{live:?}");
        assert_eq!(live["msg_kept"], 1_795_860_400);
    }

    #[test]
    fn a_claim_is_atomic_durable_and_releasable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("govapi.seen");
        let now = 1_800_000_000;
        let seen = SeenIds::open(&path, 300, now).unwrap();
        seen.claim("a", now + 304, now).unwrap();
        assert!(matches!(
            seen.claim("a", now + 304, now),
            Err(ClaimError::Replay)
        ));
        // Kept until the signed timestamp plus the tolerance, not the acceptance plus it.
        assert!(seen.contains("a", now + 304));
        assert!(!seen.contains("a", now + 305));
        seen.claim("b", now + 10, now).unwrap();
        seen.release("b");
        seen.claim("b", now + 10, now).unwrap();
        seen.claim("c", now + 10, now).unwrap();
        seen.release("c");

        // A restart (no rewrite happened: the claims were appended and fsync'd).
        let reopened = SeenIds::open(&path, 300, now + 1).unwrap();
        assert!(reopened.contains("a", now + 1));
        assert!(reopened.contains("b", now + 1));
        assert!(!reopened.contains("c", now + 1), "released");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("thoth-seen-ids v2\n"), "{text}");

        // A torn last line (a crash mid-append) is ignored.
        std::fs::write(&path, format!("{text}{}", "18000")).unwrap();
        assert!(SeenIds::open(&path, 300, now).unwrap().contains("a", now));
    }

    #[test]
    fn the_file_is_compacted_as_claims_expire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.seen");
        let mut seen = SeenIds::open(&path, 1, 0).unwrap();
        seen.compact_after = 16;
        for i in 0..100 {
            seen.claim(&format!("id-{i}"), i + 1, i).unwrap();
        }
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 16 + 2, "{lines} lines");
    }
}
