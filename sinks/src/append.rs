//! Durable appends to line-oriented files (the file sink's NDJSON, dead-letter queues): a write
//! is synced before it counts, the name of a new file is synced too, a failed write is cut
//! back so no half line stays, and a line torn by a crash is left as it is with what follows
//! starting on a line of its own.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Appends `buf` (whole lines) to `path`, creating it and its directories, and syncs it.
pub fn append_lines(path: &Path, buf: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let existed = path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    let before = f.metadata()?.len();
    let mut last = [0u8; 1];
    let torn = before > 0 && f.read_at(&mut last, before - 1)? == 1 && last[0] != b'\n';
    let result = (if torn { f.write_all(b"\n") } else { Ok(()) })
        .and_then(|()| f.write_all(buf))
        .and_then(|()| f.sync_data())
        // Synced data under a name a crash forgets is lost: a new name is synced too.
        .and_then(|()| if existed { Ok(()) } else { sync_parent(path) });
    if result.is_err() {
        let _ = f.set_len(before);
    }
    result
}

/// Syncs the directory holding `path`, so a new name in it survives a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_after_a_torn_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out").join("events.ndjson");
        append_lines(&path, b"{\"a\":1}\n").unwrap();
        // A crash cut the next write short.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"b\":").unwrap();
        append_lines(&path, b"{\"c\":3}\n").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"a\":1}\n{\"b\":\n{\"c\":3}\n");
    }
}
