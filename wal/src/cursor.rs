//! Persisted reader cursors: `cursors/{name}` holds the next sequence number that reader needs,
//! replaced atomically (write, fsync, rename, fsync directory).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::segment::sync_dir;
use crate::WalError;

fn cursor_dir(wal_dir: &Path) -> PathBuf {
    wal_dir.join("cursors")
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
        let path = dir.join(name);
        let seq = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| WalError::BadCursor {
                    path: path.clone(),
                    content: text.chars().take(40).collect(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                store(wal_dir, name, start)?;
                start
            }
            Err(e) => return Err(WalError::io(&path)(e)),
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

/// Persists one cursor durably.
pub(crate) fn store(wal_dir: &Path, name: &str, seq: u64) -> Result<(), WalError> {
    let dir = cursor_dir(wal_dir);
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(WalError::io(&path))?;
    sync_dir(&dir)
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
