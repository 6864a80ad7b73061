//! A sink's reader: reads committed events after its cursor, and persists the cursor.

use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::frame::{self, FrameMeta, HEADER_LEN};
use crate::{cursor, Shared, WalError};

/// One event read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    /// When the event was appended (Unix milliseconds).
    pub appended_ms: u64,
    /// The record, sharing its frame's buffer (one allocation per frame, not per record).
    pub data: Bytes,
}

struct Position {
    first_seq: u64,
    file: File,
    offset: u64,
}

/// Reads one sink's view of the log. Reading does not move the persisted cursor: call
/// [`Reader::commit`] once events are delivered (or dead-lettered).
pub struct Reader {
    shared: Arc<Shared>,
    name: String,
    /// Exclusive end of the frames loaded so far.
    loaded_upto: u64,
    pending: VecDeque<Entry>,
    position: Option<Position>,
    committed: tokio::sync::watch::Receiver<u64>,
    frame_buf: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(shared: Arc<Shared>, name: String, cursor: u64) -> Reader {
        let committed = shared.committed.subscribe();
        Reader {
            shared,
            name,
            loaded_upto: cursor,
            pending: VecDeque::new(),
            position: None,
            committed,
            frame_buf: Vec::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until events past what this reader has read are committed.
    pub async fn wait(&mut self) {
        if !self.pending.is_empty() {
            return;
        }
        let upto = self.loaded_upto;
        let _ = self.committed.wait_for(|&c| c > upto).await;
    }

    /// Events not yet read (committed minus read).
    pub fn backlog(&self) -> u64 {
        let committed = *self.committed.borrow();
        committed.saturating_sub(self.loaded_upto) + self.pending.len() as u64
    }

    /// Reads up to `max_events` events / about `max_bytes` bytes of what is committed, without
    /// waiting. Returns an empty batch when the reader is caught up.
    pub fn read(&mut self, max_events: usize, max_bytes: usize) -> Result<Vec<Entry>, WalError> {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        while out.len() < max_events && (bytes < max_bytes || out.is_empty()) {
            if let Some(entry) = self.pending.pop_front() {
                bytes += entry.data.len();
                out.push(entry);
                continue;
            }
            if !self.load_next_frame()? {
                break;
            }
        }
        Ok(out)
    }

    /// Loads the next committed frame's events into `pending`. `false` when there is none.
    fn load_next_frame(&mut self) -> Result<bool, WalError> {
        loop {
            let committed = *self.committed.borrow();
            if self.loaded_upto >= committed {
                return Ok(false);
            }
            if self.position.is_none() && !self.open_segment_for(self.loaded_upto)? {
                return Ok(false);
            }
            let pos = self.position.as_mut().expect("opened above");
            match read_frame(&pos.file, pos.offset, &mut self.frame_buf)? {
                Some((at, meta)) => {
                    pos.offset = at + meta.len as u64;
                    if meta.end_seq() <= self.loaded_upto {
                        continue; // before the cursor
                    }
                    let buf = Bytes::from(std::mem::take(&mut self.frame_buf));
                    let records = frame::records(&buf, &meta);
                    for (seq, record) in (meta.first_seq..).zip(records) {
                        if seq >= self.loaded_upto {
                            self.pending.push_back(Entry {
                                seq,
                                appended_ms: meta.appended_ms,
                                data: buf.slice_ref(record),
                            });
                        }
                    }
                    self.loaded_upto = meta.end_seq();
                    return Ok(true);
                }
                None => {
                    // End of this segment (or a corrupt region recovery reported): go on in
                    // the next segment if there is one.
                    let current = pos.first_seq;
                    let next = {
                        let segments = self.shared.segments.lock().unwrap();
                        segments
                            .iter()
                            .find(|s| s.first_seq > current)
                            .map(|s| s.first_seq)
                    };
                    match next {
                        Some(first_seq) => {
                            self.position = None;
                            self.loaded_upto = self.loaded_upto.max(first_seq.min(committed));
                            if !self.open_segment_for(first_seq)? {
                                return Ok(false);
                            }
                        }
                        None => return Ok(false),
                    }
                }
            }
        }
    }

    /// Opens the segment that holds `seq` (the last one starting at or before it, else the
    /// oldest one left).
    fn open_segment_for(&mut self, seq: u64) -> Result<bool, WalError> {
        let seg = {
            let segments = self.shared.segments.lock().unwrap();
            segments
                .iter()
                .rev()
                .find(|s| s.first_seq <= seq)
                .or_else(|| segments.first())
                .cloned()
        };
        let Some(seg) = seg else { return Ok(false) };
        let file = File::open(&seg.path).map_err(WalError::io(&seg.path))?;
        self.position = Some(Position {
            first_seq: seg.first_seq,
            file,
            offset: 0,
        });
        Ok(true)
    }

    /// Persists the cursor: every event before `next_seq` is done with for this sink. Segments
    /// every cursor has passed are deleted.
    pub fn commit(&self, next_seq: u64) -> Result<(), WalError> {
        self.committer().commit(next_seq)
    }

    /// A handle that persists this reader's cursor from another task.
    pub fn committer(&self) -> Committer {
        Committer {
            shared: self.shared.clone(),
            name: self.name.clone(),
        }
    }

    /// The persisted cursor.
    pub fn cursor(&self) -> u64 {
        self.shared
            .cursors
            .lock()
            .unwrap()
            .get(&self.name)
            .copied()
            .unwrap_or(self.loaded_upto)
    }
}

/// Persists one reader's cursor; see [`Reader::commit`].
#[derive(Clone)]
pub struct Committer {
    shared: Arc<Shared>,
    name: String,
}

impl Committer {
    /// Persists the cursor: every event before `next_seq` is done with for this sink. Segments
    /// every cursor has passed are deleted.
    pub fn commit(&self, next_seq: u64) -> Result<(), WalError> {
        cursor::store(&self.shared.dir, &self.name, next_seq)?;
        self.shared
            .cursors
            .lock()
            .unwrap()
            .insert(self.name.clone(), next_seq);
        self.shared.collect_garbage();
        Ok(())
    }
}

/// Reads the frame at `offset` into `buf`. Where the bytes at `offset` are not a valid frame
/// (a corrupt region that recovery reported), skips to the next valid frame of the segment;
/// `None` at the end of the segment.
fn read_frame(
    file: &File,
    offset: u64,
    buf: &mut Vec<u8>,
) -> Result<Option<(u64, FrameMeta)>, WalError> {
    let io = |source| WalError::Io {
        path: "wal segment".into(),
        source,
    };
    let file_len = file.metadata().map_err(io)?.len();
    if offset + HEADER_LEN as u64 > file_len {
        return Ok(None);
    }
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, offset).map_err(io)?;
    let payload_len = u64::from(u32::from_le_bytes(header[4..8].try_into().unwrap()));
    if offset + HEADER_LEN as u64 + payload_len <= file_len {
        buf.clear();
        buf.resize(HEADER_LEN + payload_len as usize, 0);
        file.read_exact_at(buf, offset).map_err(io)?;
        if let Some(meta) = frame::frame_at(buf, 0) {
            return Ok(Some((offset, meta)));
        }
    }
    // Corrupt here: look for the next valid frame in the rest of the segment.
    buf.clear();
    buf.resize((file_len - offset) as usize, 0);
    file.read_exact_at(buf, offset).map_err(io)?;
    let Some(found) = frame::next_valid_frame(buf, 1) else {
        return Ok(None);
    };
    tracing::warn!(
        offset,
        skipped = found.offset,
        "skipping a corrupt WAL region"
    );
    let start = found.offset;
    buf.drain(..start);
    buf.truncate(found.len);
    Ok(Some((
        offset + start as u64,
        FrameMeta { offset: 0, ..found },
    )))
}
