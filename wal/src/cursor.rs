//! Persisted reader cursors: `cursors/{name}` holds the next sequence number that reader needs.
//!
//! Saving a cursor must never need free space: segments are freed only after a cursor moves,
//! so on a full disk a save that needs a new file would keep the log full for good. A cursor
//! file is therefore created once (write, fsync, rename, fsync the directory) at its full
//! size, and every later save overwrites half of it in place and syncs it:
//!
//! ```text
//! version 2: 64 bytes, two 32-byte slots, written alternately
//!   slot = "TCUR" | version (1 byte, 2) | 3 zero bytes | counter (u64 LE) | seq (u64 LE)
//!          | CRC-32 of the 24 bytes before it (u32 LE) | 4 zero bytes
//! ```
//!
//! The valid slot with the higher counter is the cursor; a save torn by a crash leaves the
//! other slot, the previous cursor (at least once: a few events are sent again). Version 1,
//! written by earlier builds, is the decimal sequence number and a newline; it is read as is
//! and replaced by version 2 at its next save.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::segment::sync_dir;
use crate::WalError;

const MAGIC: &[u8; 4] = b"TCUR";
const VERSION: u8 = 2;
const SLOT_LEN: usize = 32;
const FILE_LEN: usize = 2 * SLOT_LEN;

fn cursor_dir(wal_dir: &Path) -> PathBuf {
    wal_dir.join("cursors")
}

/// One slot's bytes.
fn encode_slot(counter: u64, seq: u64) -> [u8; SLOT_LEN] {
    let mut slot = [0u8; SLOT_LEN];
    slot[..4].copy_from_slice(MAGIC);
    slot[4] = VERSION;
    slot[8..16].copy_from_slice(&counter.to_le_bytes());
    slot[16..24].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&slot[..24]);
    slot[24..28].copy_from_slice(&crc.to_le_bytes());
    slot
}

/// (counter, seq) of a valid slot.
fn decode_slot(slot: &[u8]) -> Option<(u64, u64)> {
    if slot.len() != SLOT_LEN || &slot[..4] != MAGIC || slot[4] != VERSION {
        return None;
    }
    let crc = u32::from_le_bytes(slot[24..28].try_into().ok()?);
    if crc != crc32fast::hash(&slot[..24]) {
        return None;
    }
    let counter = u64::from_le_bytes(slot[8..16].try_into().ok()?);
    let seq = u64::from_le_bytes(slot[16..24].try_into().ok()?);
    Some((counter, seq))
}

/// What a cursor file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Version 2: the newest valid slot's counter and sequence.
    Slots { counter: u64, seq: u64 },
    /// Version 1: a decimal sequence number.
    Text(u64),
}

impl Stored {
    fn seq(self) -> u64 {
        match self {
            Stored::Slots { seq, .. } | Stored::Text(seq) => seq,
        }
    }
}

/// Reads a cursor file's content (either version); `None` when it is neither.
pub(crate) fn decode(bytes: &[u8]) -> Option<Stored> {
    if bytes.len() == FILE_LEN && bytes.starts_with(MAGIC) {
        return bytes
            .chunks(SLOT_LEN)
            .filter_map(decode_slot)
            .max_by_key(|&(counter, _)| counter)
            .map(|(counter, seq)| Stored::Slots { counter, seq });
    }
    std::str::from_utf8(bytes)
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Stored::Text)
}

fn read(path: &Path) -> Result<Option<Stored>, WalError> {
    match std::fs::read(path) {
        Ok(bytes) => decode(&bytes).map(Some).ok_or_else(|| WalError::BadCursor {
            path: path.to_path_buf(),
            content: String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WalError::io(path)(e)),
    }
}

/// Loads the cursor of every reader; a reader without one starts at `start` (and gets it
/// written now); cursor files of readers no longer configured are removed.
pub(crate) fn load_all(
    wal_dir: &Path,
    readers: &[String],
    start: u64,
) -> Result<BTreeMap<String, u64>, WalError> {
    let dir = cursor_dir(wal_dir);
    std::fs::create_dir_all(&dir).map_err(WalError::io(&dir))?;
    let mut cursors = BTreeMap::new();
    for name in readers {
        let seq = match read(&dir.join(name))? {
            Some(stored) => stored.seq(),
            None => {
                store(wal_dir, name, start)?;
                start
            }
        };
        cursors.insert(name.clone(), seq);
    }
    for entry in std::fs::read_dir(&dir).map_err(WalError::io(&dir))? {
        let entry = entry.map_err(WalError::io(&dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !cursors.contains_key(&name) {
            tracing::info!(reader = %name, "removing the cursor of a sink that is no longer configured");
            let _ = std::fs::remove_file(entry.path());
        }
    }
    Ok(cursors)
}

/// Persists one cursor durably. An existing file is written in place (no space needed): one
/// slot of a version 2 file, or the whole of a version 1 file (its 64 bytes stay within the
/// block it already has). Only a new cursor creates a file.
pub(crate) fn store(wal_dir: &Path, name: &str, seq: u64) -> Result<(), WalError> {
    let dir = cursor_dir(wal_dir);
    let path = dir.join(name);
    let file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return create(&dir, name, seq),
        Err(e) => return Err(WalError::io(&path)(e)),
    };
    let mut bytes = [0u8; FILE_LEN];
    let n = file.read_at(&mut bytes, 0).map_err(WalError::io(&path))?;
    let write = match decode(&bytes[..n]) {
        Some(Stored::Slots { counter, .. }) => {
            let counter = counter + 1;
            let offset = (counter % 2) * SLOT_LEN as u64;
            file.write_all_at(&encode_slot(counter, seq), offset)
        }
        // Version 1 (or unreadable): replaced whole by version 2.
        _ => file.write_all_at(&initial(seq), 0),
    };
    write
        .and_then(|()| file.sync_data())
        .map_err(WalError::io(&path))
}

/// A new version 2 file: both slots hold `seq`.
fn initial(seq: u64) -> [u8; FILE_LEN] {
    let mut bytes = [0u8; FILE_LEN];
    bytes[..SLOT_LEN].copy_from_slice(&encode_slot(0, seq));
    bytes[SLOT_LEN..].copy_from_slice(&encode_slot(0, seq));
    bytes
}

/// Creates a version 2 cursor file (write, fsync, rename, fsync the directory).
fn create(dir: &Path, name: &str, seq: u64) -> Result<(), WalError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&initial(seq))?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(WalError::io(&path))?;
    sync_dir(dir)
}

/// Deletes a reader's cursor file (a missing one is fine).
pub(crate) fn remove(wal_dir: &Path, name: &str) -> Result<(), WalError> {
    let dir = cursor_dir(wal_dir);
    let path = dir.join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => sync_dir(&dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(WalError::io(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    #[test]
    fn reads_the_released_formats() {
        let v1 = std::fs::read(format!("{FIXTURES}/cursor-v1")).unwrap();
        assert_eq!(decode(&v1), Some(Stored::Text(1042)));
        let v2 = std::fs::read(format!("{FIXTURES}/cursor-v2")).unwrap();
        assert_eq!(
            decode(&v2),
            Some(Stored::Slots {
                counter: 7,
                seq: 1042
            })
        );
        assert_eq!(decode(b"garbage"), None);
    }

    #[test]
    fn saves_alternate_slots_in_place_and_a_torn_slot_leaves_the_previous_cursor() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(cursor_dir(dir.path())).unwrap();
        let path = cursor_dir(dir.path()).join("s");
        // A version 1 file is replaced by version 2 at its next save, in place.
        std::fs::write(&path, "17\n").unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        for seq in 20..30 {
            store(dir.path(), "s", seq).unwrap();
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), ino, "in place");
        assert_eq!(meta.len(), FILE_LEN as u64);
        let bytes = std::fs::read(&path).unwrap();
        let Some(Stored::Slots { counter, seq: 29 }) = decode(&bytes) else {
            panic!("{bytes:?}")
        };
        // Tear the newest slot: the previous save is the cursor.
        let mut torn = bytes.clone();
        let newest = (counter % 2) as usize * SLOT_LEN;
        torn[newest + 20] ^= 0xff;
        assert_eq!(
            decode(&torn),
            Some(Stored::Slots {
                counter: counter - 1,
                seq: 28
            })
        );
    }

    #[test]
    fn a_save_needs_no_free_space() {
        // On a full disk, a rename or a new file fails; an overwrite in place does not. The
        // file's size and inode stay as they are, so no block is allocated.
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(cursor_dir(dir.path())).unwrap();
        store(dir.path(), "s", 1).unwrap();
        // A directory where the temporary file would go: a save that needed one fails.
        std::fs::create_dir(cursor_dir(dir.path()).join(".s.tmp")).unwrap();
        for seq in 2..10 {
            store(dir.path(), "s", seq).unwrap();
        }
        let bytes = std::fs::read(cursor_dir(dir.path()).join("s")).unwrap();
        assert_eq!(decode(&bytes).map(Stored::seq), Some(9));
    }
}
