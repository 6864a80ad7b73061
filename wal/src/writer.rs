//! The single writer thread and its group commit.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use crate::frame::FrameBuilder;
use crate::segment::{self, Active};
use crate::{AppendAck, FsyncPolicy, Shared, WalError};

/// Most bytes written in one group before it is synced and acknowledged.
const MAX_GROUP_BYTES: usize = 16 * 1024 * 1024;

struct Append {
    frame: FrameBuilder,
    reply: oneshot::Sender<Result<AppendAck, WalError>>,
}

#[derive(Clone)]
pub(crate) struct Handle {
    tx: Arc<Mutex<Option<mpsc::Sender<Append>>>>,
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl Handle {
    pub(crate) async fn append(&self, frame: FrameBuilder) -> Result<AppendAck, WalError> {
        let (reply, rx) = oneshot::channel();
        {
            let tx = self.tx.lock().unwrap();
            let tx = tx.as_ref().ok_or(WalError::Closed)?;
            tx.send(Append { frame, reply })
                .map_err(|_| WalError::Closed)?;
        }
        rx.await.map_err(|_| WalError::Closed)?
    }

    /// Lets the writer drain what is queued, sync and exit, and waits for it.
    pub(crate) fn close(&self) {
        self.tx.lock().unwrap().take();
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    active: Active,
    next_seq: u64,
) -> Result<Handle, WalError> {
    let (tx, rx) = mpsc::channel();
    let mut writer = Writer {
        shared,
        active,
        next_seq,
        buf: Vec::new(),
        last_sync: Instant::now(),
        dirty: false,
    };
    let thread = std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| WalError::Io {
            path: "wal-writer thread".into(),
            source: e,
        })?;
    Ok(Handle {
        tx: Arc::new(Mutex::new(Some(tx))),
        thread: Arc::new(Mutex::new(Some(thread))),
    })
}

struct Writer {
    shared: Arc<Shared>,
    active: Active,
    next_seq: u64,
    buf: Vec<u8>,
    last_sync: Instant,
    /// Written but not yet synced (interval mode).
    dirty: bool,
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Append>) {
        loop {
            let first = match self.shared.opts.fsync {
                FsyncPolicy::Always => match rx.recv() {
                    Ok(a) => a,
                    Err(_) => break,
                },
                FsyncPolicy::Interval(every) => match rx.recv_timeout(every) {
                    Ok(a) => a,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync_if_due();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
            };
            let mut group = vec![first];
            let mut bytes = group[0].frame.encoded_len();
            while bytes < MAX_GROUP_BYTES {
                match rx.try_recv() {
                    Ok(a) => {
                        bytes += a.frame.encoded_len();
                        group.push(a);
                    }
                    Err(_) => break,
                }
            }
            // A panic here must not end the thread: every later append would fail. The
            // group's waiters see their reply dropped (WalError::Closed); the next group
            // starts afresh.
            let committed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.commit_group(group)));
            if committed.is_err() {
                self.shared
                    .stats
                    .writer_panics
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!("the WAL writer panicked on a group of appends; they were refused and the writer goes on");
            }
        }
        if self.dirty {
            let _ = self.active.file.sync_data();
        }
    }

    fn sync_if_due(&mut self) {
        if let FsyncPolicy::Interval(every) = self.shared.opts.fsync {
            if self.dirty && self.last_sync.elapsed() >= every {
                if let Err(e) = self.active.file.sync_data() {
                    tracing::error!(error = %e, "WAL fsync failed");
                } else {
                    self.dirty = false;
                    self.last_sync = Instant::now();
                }
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Append>) {
        if let Err(e) = self.roll_if_needed() {
            let msg = e.to_string();
            for a in group {
                let _ = a.reply.send(Err(io_error(&self.active.path, &msg)));
            }
            return;
        }
        let opts = self.shared.opts;
        let shared = self.shared.clone();
        let stats = &shared.stats;
        self.buf.clear();
        let mut accepted = Vec::with_capacity(group.len());
        let now_ms = thoth_event::now_unix_ms();
        for a in group {
            let len = a.frame.encoded_len() as u64;
            if len > opts.max_bytes {
                let _ = a.reply.send(Err(WalError::TooLarge {
                    bytes: len,
                    max_bytes: opts.max_bytes,
                }));
                continue;
            }
            let used = stats.total_bytes.load(Ordering::Relaxed) + self.buf.len() as u64;
            if used + len > opts.max_bytes
                && used + len - shared.collect_garbage() > opts.max_bytes
                && used + len - self.free_consumed_active() > opts.max_bytes
            {
                stats.full_rejections.fetch_add(1, Ordering::Relaxed);
                let _ = a.reply.send(Err(WalError::Full {
                    max_bytes: opts.max_bytes,
                }));
                continue;
            }
            let ack = AppendAck {
                first_seq: self.next_seq,
                count: a.frame.count(),
            };
            a.frame.encode_into(self.next_seq, now_ms, &mut self.buf);
            self.next_seq += u64::from(a.frame.count());
            accepted.push((a.reply, ack));
        }
        if accepted.is_empty() {
            return;
        }
        match self.write_buf() {
            Ok(()) => {
                let events: u64 = accepted.iter().map(|(_, ack)| u64::from(ack.count)).sum();
                stats.appended_events.fetch_add(events, Ordering::Relaxed);
                shared.committed.send_replace(self.next_seq);
                for (reply, ack) in accepted {
                    let _ = reply.send(Ok(ack));
                }
            }
            Err(msg) => {
                // The sequence numbers of a failed write are never reused: a frame that reached
                // the disk despite the error must not shadow a later acknowledged one.
                for (reply, _) in accepted {
                    let _ = reply.send(Err(io_error(&self.active.path, &msg)));
                }
            }
        }
    }

    /// Writes the group and syncs it (per policy). On failure the segment is cut back to its
    /// previous length so no partial frame stays ahead of later ones.
    fn write_buf(&mut self) -> Result<(), String> {
        let offset = self.active.len;
        let sync = match self.shared.opts.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
        };
        let result = self
            .active
            .file
            .write_all_at(&self.buf, offset)
            .and_then(|()| {
                if sync {
                    self.active.file.sync_data()
                } else {
                    Ok(())
                }
            });
        match result {
            Ok(()) => {
                let n = self.buf.len() as u64;
                self.active.len += n;
                self.shared
                    .stats
                    .total_bytes
                    .fetch_add(n, Ordering::Relaxed);
                if let Some(seg) = self.shared.segments.lock().unwrap().last_mut() {
                    seg.bytes = self.active.len;
                }
                if sync {
                    self.last_sync = Instant::now();
                    self.dirty = false;
                } else {
                    self.dirty = true;
                }
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %self.active.path.display(), error = %e, "WAL write failed");
                if let Err(e2) = self.active.file.set_len(offset) {
                    tracing::error!(error = %e2, "cannot cut the WAL segment back after a failed write");
                }
                Err(e.to_string())
            }
        }
    }

    /// When every reader has consumed the whole log, the segment being written is all that
    /// holds space, and it is never deleted while it is written: start a new one and free it.
    /// Without this a log whose segment size is near its limit refuses appends for good with
    /// nothing queued. Returns the bytes freed.
    fn free_consumed_active(&mut self) -> u64 {
        if !self.buf.is_empty() || self.active.len == 0 || self.shared.min_cursor() < self.next_seq
        {
            return 0;
        }
        match self.roll() {
            Ok(()) => self.shared.collect_garbage(),
            Err(e) => {
                tracing::error!(error = %e, "cannot start a new WAL segment to free the consumed one");
                0
            }
        }
    }

    fn roll_if_needed(&mut self) -> Result<(), WalError> {
        if self.active.len < self.shared.opts.segment_bytes {
            return Ok(());
        }
        self.roll()
    }

    fn roll(&mut self) -> Result<(), WalError> {
        self.active
            .file
            .sync_data()
            .map_err(WalError::io(&self.active.path))?;
        let (seg, active) = segment::create(&self.shared.dir, self.next_seq)?;
        self.shared.segments.lock().unwrap().push(seg);
        self.active = active;
        self.dirty = false;
        Ok(())
    }
}

fn io_error(path: &std::path::Path, msg: &str) -> WalError {
    WalError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(msg.to_string()),
    }
}
