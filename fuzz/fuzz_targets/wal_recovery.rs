//! WAL recovery from arbitrary segment bytes (torn, corrupt, hostile): opening never panics,
//! and a reader reads whatever survived without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thoth_wal::{FsyncPolicy, Wal, WalOptions};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(format!("{:020}.wal", 0)), data).unwrap();
    let opts = WalOptions {
        max_bytes: 1 << 30,
        segment_bytes: 1 << 20,
        fsync: FsyncPolicy::Always,
    };
    let readers = vec!["s".to_string()];
    std::fs::create_dir_all(dir.path().join("cursors")).unwrap();
    std::fs::write(dir.path().join("cursors/s"), "0\n").unwrap();
    if let Ok((wal, _recovery)) = Wal::open(dir.path(), opts, &readers) {
        let mut reader = wal.reader("s").unwrap();
        for _ in 0..1000 {
            match reader.read(1000, 1 << 20) {
                Ok(batch) if !batch.is_empty() => {}
                _ => break,
            }
        }
        wal.close();
    }
});
