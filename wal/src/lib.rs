//! The write-ahead log: the one place an accepted event lives until every sink has it.
//!
//! * One append-only log for all sinks, in segment files `{first_seq:020}.wal` under a
//!   directory. Each append is one [`frame`](FrameBuilder) holding the events of one ingest
//!   batch, numbered with consecutive sequence numbers.
//! * Group commit: a single writer thread takes every append that queued while the previous
//!   `fdatasync` ran, writes them, syncs once and then completes every waiter; a caller's
//!   [`Wal::append`] returns only when its frame is durable.
//! * Each sink reads with its own [`Reader`] and persists its cursor (the next sequence number
//!   it needs) with [`Reader::commit`]. A segment is deleted once every cursor has passed it.
//! * When the log holds `max_bytes`, appends fail with [`WalError::Full`] (the source answers
//!   503 / pauses) until sinks catch up.
//! * Opening recovers from a crash: a torn last frame is truncated; a corrupt frame elsewhere
//!   is skipped and reported in [`Recovery`].

mod cursor;
mod frame;
mod reader;
pub mod record;
mod segment;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use frame::FrameBuilder;
pub use reader::{Committer, Entry, Reader};

use segment::Segment;

/// When the writer calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Before every acknowledgement (group commit). Nothing acknowledged is lost on a crash.
    Always,
    /// At most this long after a write; acknowledgements do not wait for it.
    Interval(Duration),
}

/// Sizing and durability of a log.
#[derive(Debug, Clone, Copy)]
pub struct WalOptions {
    /// The most bytes all segments may hold; appends past it fail with [`WalError::Full`].
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    pub fsync: FsyncPolicy,
}

impl WalOptions {
    /// Options for a log of `max_bytes`: segments of 64 MiB, or a sixteenth of the log when
    /// that is smaller, so that retention can always free space in small logs.
    pub fn with_max_bytes(max_bytes: u64, fsync: FsyncPolicy) -> Self {
        WalOptions {
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(4096, 64 * 1024 * 1024),
            fsync,
        }
    }
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("the write-ahead log is full ({max_bytes} bytes); sinks must catch up first")]
    Full { max_bytes: u64 },
    #[error("a batch of {bytes} bytes can never fit in a write-ahead log of {max_bytes} bytes")]
    TooLarge { bytes: u64, max_bytes: u64 },
    #[error("the write-ahead log is closed")]
    Closed,
    #[error("write-ahead log I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cursor file {path} is corrupt: {content:?}")]
    BadCursor { path: PathBuf, content: String },
}

impl WalError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WalError + '_ {
        move |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where an acknowledged append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendAck {
    pub first_seq: u64,
    pub count: u32,
}

/// What opening the log found and repaired.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovery {
    pub segments: usize,
    pub frames: usize,
    /// Bytes of a torn last frame that were truncated (a crash mid-write; never acknowledged).
    pub truncated_bytes: u64,
    /// Corrupt regions skipped (bit rot or a damaged disk: data that may have been acknowledged).
    pub corrupt_regions: Vec<String>,
    pub next_seq: u64,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct WalStats {
    pub total_bytes: AtomicU64,
    pub appended_events: AtomicU64,
    pub full_rejections: AtomicU64,
    pub corrupt_regions: AtomicU64,
    pub deleted_segments: AtomicU64,
    /// Groups of appends refused because the writer panicked on them.
    pub writer_panics: AtomicU64,
}

pub(crate) struct Shared {
    dir: PathBuf,
    opts: WalOptions,
    segments: Mutex<Vec<Segment>>,
    /// Cursors of the registered readers: the next sequence each still needs.
    cursors: Mutex<BTreeMap<String, u64>>,
    /// Exclusive end of what readers may read (durable under `FsyncPolicy::Always`).
    committed: tokio::sync::watch::Sender<u64>,
    stats: WalStats,
}

impl Shared {
    /// The lowest persisted cursor (the end of the log when there are no readers).
    pub(crate) fn min_cursor(&self) -> u64 {
        let cursors = self.cursors.lock().unwrap();
        cursors
            .values()
            .copied()
            .min()
            .unwrap_or(*self.committed.borrow())
    }

    /// Deletes every closed segment whose events all cursors have passed. Returns bytes freed.
    pub(crate) fn collect_garbage(&self) -> u64 {
        let min_cursor = self.min_cursor();
        let mut freed = 0;
        let mut segments = self.segments.lock().unwrap();
        // A segment's events end where the next one begins; the last segment is never deleted.
        while segments.len() > 1 && segments[1].first_seq <= min_cursor {
            let seg = segments.remove(0);
            match std::fs::remove_file(&seg.path) {
                Ok(()) => {
                    freed += seg.bytes;
                    self.stats
                        .total_bytes
                        .fetch_sub(seg.bytes, Ordering::Relaxed);
                    self.stats.deleted_segments.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(path = %seg.path.display(), error = %e, "cannot delete a WAL segment");
                    segments.insert(0, seg);
                    break;
                }
            }
        }
        freed
    }
}

/// A handle on the log; clone it freely.
#[derive(Clone)]
pub struct Wal {
    shared: Arc<Shared>,
    writer: writer::Handle,
}

impl Wal {
    /// Opens (creating or recovering) the log in `dir`, with one cursor per name in `readers`.
    /// A reader without a cursor yet starts at the end of the log; cursors of names not listed
    /// are deleted (that sink was removed from the config).
    pub fn open(
        dir: &Path,
        opts: WalOptions,
        readers: &[String],
    ) -> Result<(Wal, Recovery), WalError> {
        std::fs::create_dir_all(dir).map_err(WalError::io(dir))?;
        let (segments, active, recovery) = segment::recover(dir)?;
        let cursors = cursor::load_all(dir, readers, recovery.next_seq)?;
        let next_seq = cursors
            .values()
            .copied()
            .max()
            .unwrap_or(0)
            .max(recovery.next_seq);
        let total: u64 = segments.iter().map(|s| s.bytes).sum();
        let (committed, _) = tokio::sync::watch::channel(next_seq);
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            opts,
            segments: Mutex::new(segments),
            cursors: Mutex::new(cursors),
            committed,
            stats: WalStats::default(),
        });
        shared.stats.total_bytes.store(total, Ordering::Relaxed);
        shared
            .stats
            .corrupt_regions
            .store(recovery.corrupt_regions.len() as u64, Ordering::Relaxed);
        shared.collect_garbage();
        let writer = writer::spawn(shared.clone(), active, next_seq)?;
        Ok((
            Wal { shared, writer },
            Recovery {
                next_seq,
                ..recovery
            },
        ))
    }

    /// Appends a frame and waits until it is durable (or written, under `Interval`).
    pub async fn append(&self, frame: FrameBuilder) -> Result<AppendAck, WalError> {
        self.writer.append(frame).await
    }

    /// A reader for a sink registered at [`Wal::open`].
    pub fn reader(&self, name: &str) -> Option<Reader> {
        let cursor = *self.shared.cursors.lock().unwrap().get(name)?;
        Some(Reader::new(self.shared.clone(), name.to_string(), cursor))
    }

    /// Registers a reader while the log is open (a sink added by a config reload). A reader
    /// that already has a cursor keeps it; a new one starts at the end of the log.
    pub fn add_reader(&self, name: &str) -> Result<Reader, WalError> {
        let mut cursors = self.shared.cursors.lock().unwrap();
        let cursor = match cursors.get(name) {
            Some(&c) => c,
            None => {
                let start = *self.shared.committed.borrow();
                cursor::store(&self.shared.dir, name, start)?;
                cursors.insert(name.to_string(), start);
                start
            }
        };
        Ok(Reader::new(self.shared.clone(), name.to_string(), cursor))
    }

    /// Forgets a reader (a sink removed by a config reload): its cursor file is deleted and
    /// segments only it still needed are freed. Its [`Reader`] must be gone.
    pub fn remove_reader(&self, name: &str) -> Result<(), WalError> {
        self.shared.cursors.lock().unwrap().remove(name);
        cursor::remove(&self.shared.dir, name)?;
        self.shared.collect_garbage();
        Ok(())
    }

    /// Counters for metrics.
    pub fn stats(&self) -> &WalStats {
        &self.shared.stats
    }

    /// Bytes held by all segments.
    pub fn total_bytes(&self) -> u64 {
        self.shared.stats.total_bytes.load(Ordering::Relaxed)
    }

    /// Bytes of the segments that hold events at or after `seq`: what a reader at that cursor
    /// still has queued, at segment granularity (an upper bound).
    pub fn bytes_from(&self, seq: u64) -> u64 {
        let segments = self.shared.segments.lock().unwrap();
        let mut total = 0;
        for (i, s) in segments.iter().enumerate() {
            let ends_after = segments.get(i + 1).is_none_or(|next| next.first_seq > seq);
            if ends_after {
                total += s.bytes;
            }
        }
        total
    }

    /// The configured size limit.
    pub fn max_bytes(&self) -> u64 {
        self.shared.opts.max_bytes
    }

    /// Exclusive end of the readable log.
    pub fn committed_seq(&self) -> u64 {
        *self.shared.committed.borrow()
    }

    /// The persisted cursor of a reader.
    pub fn cursor(&self, name: &str) -> Option<u64> {
        self.shared.cursors.lock().unwrap().get(name).copied()
    }

    /// Stops the writer after the appends already queued, and syncs. Later appends fail with
    /// [`WalError::Closed`].
    pub fn close(&self) {
        self.writer.close();
    }
}
