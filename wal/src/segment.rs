//! Segment files: naming, listing, and crash recovery on open.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::frame;
use crate::{Recovery, WalError};

const SUFFIX: &str = ".wal";

/// A segment file and what it holds.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// The sequence number of its first frame (or of the next frame, while empty).
    pub first_seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

/// The segment the writer appends to.
pub(crate) struct Active {
    pub file: File,
    pub path: PathBuf,
    pub len: u64,
}

pub(crate) fn path_for(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SUFFIX}"))
}

/// Creates an empty segment and makes its name durable.
pub(crate) fn create(dir: &Path, first_seq: u64) -> Result<(Segment, Active), WalError> {
    let path = path_for(dir, first_seq);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(WalError::io(&path))?;
    sync_dir(dir)?;
    Ok((
        Segment {
            first_seq,
            path: path.clone(),
            bytes: 0,
        },
        Active { file, path, len: 0 },
    ))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(WalError::io(dir))
}

fn list(dir: &Path) -> Result<Vec<Segment>, WalError> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(WalError::io(dir))? {
        let entry = entry.map_err(WalError::io(dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        let Ok(first_seq) = stem.parse::<u64>() else {
            continue;
        };
        let bytes = entry.metadata().map_err(WalError::io(&entry.path()))?.len();
        segments.push(Segment {
            first_seq,
            path: entry.path(),
            bytes,
        });
    }
    segments.sort_by_key(|s| s.first_seq);
    Ok(segments)
}

/// Lists and checks every segment, truncates a torn tail of the last one, and opens the last
/// one for appending. Corrupt regions are reported, not fatal.
pub(crate) fn recover(dir: &Path) -> Result<(Vec<Segment>, Active, Recovery), WalError> {
    let mut segments = list(dir)?;
    let mut recovery = Recovery {
        segments: segments.len(),
        ..Recovery::default()
    };
    let mut next_seq = 0u64;
    let last_index = segments.len().checked_sub(1);
    for (i, seg) in segments.iter_mut().enumerate() {
        next_seq = next_seq.max(seg.first_seq);
        let buf = std::fs::read(&seg.path).map_err(WalError::io(&seg.path))?;
        let scan = frame::scan(&buf);
        recovery.frames += scan.frames.len();
        if let Some(last) = scan.frames.last() {
            next_seq = next_seq.max(last.end_seq());
        }
        for range in &scan.corrupt {
            let msg = format!(
                "{}: bytes {}..{} are corrupt and were skipped",
                seg.path.display(),
                range.start,
                range.end
            );
            tracing::error!("{msg}");
            recovery.corrupt_regions.push(msg);
        }
        let tail = buf.len() - scan.valid_end;
        if tail > 0 {
            if Some(i) == last_index {
                // A crash mid-write leaves a partial frame that was never acknowledged.
                tracing::warn!(path = %seg.path.display(), bytes = tail, "truncating a torn WAL tail");
                recovery.truncated_bytes += tail as u64;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&seg.path)
                    .map_err(WalError::io(&seg.path))?;
                f.set_len(scan.valid_end as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(WalError::io(&seg.path))?;
                seg.bytes = scan.valid_end as u64;
            } else {
                let msg = format!(
                    "{}: the last {tail} bytes are corrupt and were skipped",
                    seg.path.display()
                );
                tracing::error!("{msg}");
                recovery.corrupt_regions.push(msg);
            }
        }
    }
    recovery.next_seq = next_seq;
    let active = match segments.last() {
        Some(seg) => {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&seg.path)
                .map_err(WalError::io(&seg.path))?;
            Active {
                file,
                path: seg.path.clone(),
                len: seg.bytes,
            }
        }
        None => {
            let (seg, active) = create(dir, next_seq)?;
            segments.push(seg);
            active
        }
    };
    Ok((segments, active, recovery))
}
