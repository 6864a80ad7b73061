//! The log's guarantees: every acknowledged append is read back exactly once per cursor, across
//! segment rolls, retention, reopen, torn tails and corrupt frames.

use std::path::Path;

use proptest::prelude::*;
use thoth_wal::{FrameBuilder, FsyncPolicy, Wal, WalError, WalOptions};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn opts(max_bytes: u64, segment_bytes: u64) -> WalOptions {
    WalOptions {
        max_bytes,
        segment_bytes,
        fsync: FsyncPolicy::Always,
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

fn frame(records: &[Vec<u8>]) -> FrameBuilder {
    let mut f = FrameBuilder::new();
    for r in records {
        f.push(r);
    }
    f
}

fn read_all(wal: &Wal, reader: &str) -> Vec<(u64, Vec<u8>)> {
    let mut r = wal.reader(reader).unwrap();
    let mut out = Vec::new();
    loop {
        let batch = r.read(7, 1 << 20).unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch.into_iter().map(|e| (e.seq, e.data.to_vec())));
    }
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

#[test]
fn appends_are_read_in_order_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (wal, rec) = Wal::open(dir.path(), opts(1 << 20, 256), &names(&["a", "b"])).unwrap();
    assert_eq!(rec.next_seq, 0);
    let mut want = Vec::new();
    for i in 0..50u32 {
        let recs: Vec<Vec<u8>> = (0..(i % 3 + 1))
            .map(|j| format!("{i}-{j}").into_bytes())
            .collect();
        let ack = rt.block_on(wal.append(frame(&recs))).unwrap();
        assert_eq!(ack.first_seq, want.len() as u64);
        want.extend(recs);
    }
    assert!(segment_files(dir.path()).len() > 3, "segments roll");
    let got: Vec<Vec<u8>> = read_all(&wal, "a").into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, want);

    // Reader b commits half; after reopen it resumes there, a from the start.
    let half = want.len() as u64 / 2;
    wal.reader("b").unwrap().commit(half).unwrap();
    wal.close();
    let (wal, rec) = Wal::open(dir.path(), opts(1 << 20, 256), &names(&["a", "b"])).unwrap();
    assert_eq!(rec.next_seq, want.len() as u64);
    assert!(rec.corrupt_regions.is_empty());
    let b = read_all(&wal, "b");
    assert_eq!(b.first().unwrap().0, half);
    assert_eq!(b.len() as u64, want.len() as u64 - half);
    assert_eq!(read_all(&wal, "a").len(), want.len());
}

#[test]
fn retention_deletes_passed_segments_and_full_log_refuses_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (wal, _) = Wal::open(dir.path(), opts(2048, 256), &names(&["s"])).unwrap();
    let rec = vec![vec![b'x'; 100]];
    let mut accepted = 0u64;
    let err = loop {
        match rt.block_on(wal.append(frame(&rec))) {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 100, "the log must fill up");
    };
    assert!(matches!(err, WalError::Full { max_bytes: 2048 }), "{err}");
    assert!(wal.total_bytes() <= 2048);
    let before = segment_files(dir.path()).len();

    // The sink catches up: segments go and appends succeed again.
    let mut r = wal.reader("s").unwrap();
    let all = r.read(1000, usize::MAX).unwrap();
    assert_eq!(all.len() as u64, accepted);
    r.commit(all.last().unwrap().seq + 1).unwrap();
    assert!(segment_files(dir.path()).len() < before);
    rt.block_on(wal.append(frame(&rec))).unwrap();
}

#[test]
fn a_log_never_refuses_an_append_when_every_cursor_is_at_its_end() {
    // Segments as large as the log (or larger): the one segment is the one being written,
    // and used to be kept for good, full, with nothing queued.
    for segment in [2048, 4096, 1 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let (wal, _) = Wal::open(dir.path(), opts(2048, segment), &names(&["s"])).unwrap();
        let rec = vec![vec![b'x'; 100]];
        while rt.block_on(wal.append(frame(&rec))).is_ok() {}
        let mut r = wal.reader("s").unwrap();
        let all = r.read(1000, usize::MAX).unwrap();
        r.commit(all.last().unwrap().seq + 1).unwrap();
        for _ in 0..50 {
            let ack = rt.block_on(wal.append(frame(&rec))).unwrap_or_else(|e| {
                panic!("segment {segment}: refused with every cursor at the end: {e}")
            });
            r.commit(ack.first_seq + 1).unwrap();
        }
        assert!(wal.total_bytes() <= 2048, "segment {segment}");
        // And after a restart with the full log on disk.
        while rt.block_on(wal.append(frame(&rec))).is_ok() {}
        let mut r = wal.reader("s").unwrap();
        let all = r.read(1000, usize::MAX).unwrap();
        r.commit(all.last().unwrap().seq + 1).unwrap();
        drop(r);
        wal.close();
        let (wal, _) = Wal::open(dir.path(), opts(2048, segment), &names(&["s"])).unwrap();
        rt.block_on(wal.append(frame(&rec)))
            .unwrap_or_else(|e| panic!("segment {segment}, after reopen: {e}"));
    }
}

#[test]
fn a_frame_larger_than_the_log_is_refused_outright() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(1024, 256), &names(&["s"])).unwrap();
    let err = rt()
        .block_on(wal.append(frame(&[vec![0; 2000]])))
        .unwrap_err();
    assert!(matches!(err, WalError::TooLarge { .. }), "{err}");
}

#[test]
fn readers_wait_for_new_appends() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (wal, _) = Wal::open(dir.path(), opts(1 << 20, 4096), &names(&["s"])).unwrap();
    let mut r = wal.reader("s").unwrap();
    let w = wal.clone();
    rt.block_on(async move {
        let waiter = tokio::spawn(async move {
            r.wait().await;
            r.read(10, 1 << 20).unwrap()
        });
        w.append(frame(&[b"late".to_vec()])).await.unwrap();
        let got = waiter.await.unwrap();
        assert_eq!(got[0].data, &b"late"[..]);
    });
}

#[test]
fn corrupt_frame_in_an_old_segment_is_skipped_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (wal, _) = Wal::open(dir.path(), opts(1 << 20, 200), &names(&["s"])).unwrap();
    for i in 0..20u8 {
        rt.block_on(wal.append(frame(&[vec![i; 40]]))).unwrap();
    }
    wal.close();
    let first = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[30] ^= 0xff; // inside the first frame's payload
    std::fs::write(first, bytes).unwrap();
    let (wal, rec) = Wal::open(dir.path(), opts(1 << 20, 200), &names(&["s"])).unwrap();
    assert_eq!(rec.corrupt_regions.len(), 1, "{rec:?}");
    let got = read_all(&wal, "s");
    assert_eq!(got.len(), 19);
    assert_eq!(got[0].0, 1, "only the corrupt frame is lost");
}

#[derive(Debug, Clone)]
enum Crash {
    /// A prefix of an unacknowledged frame reached the disk.
    TornFrame(usize),
    /// Random bytes past the last acknowledged frame.
    Garbage(Vec<u8>),
    Clean,
}

fn crash_strategy() -> impl Strategy<Value = Crash> {
    prop_oneof![
        (1usize..200).prop_map(Crash::TornFrame),
        proptest::collection::vec(any::<u8>(), 1..64).prop_map(Crash::Garbage),
        Just(Crash::Clean),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random batches, a crash at a random point of an unacknowledged write, reopen, more
    /// appends: each cursor reads every acknowledged record exactly once, in order.
    #[test]
    fn acknowledged_appends_survive_crashes(
        batches in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..60), 1..5), 1..30),
        crash in crash_strategy(),
        committed_fraction in 0.0f64..1.0,
        segment_bytes in 128u64..2048,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let readers = names(&["from-start", "mid"]);
        let (wal, _) = Wal::open(dir.path(), opts(1 << 24, segment_bytes), &readers).unwrap();
        let mut want: Vec<Vec<u8>> = Vec::new();
        for b in &batches {
            let ack = rt.block_on(wal.append(frame(b))).unwrap();
            prop_assert_eq!(ack.first_seq, want.len() as u64);
            want.extend(b.iter().cloned());
        }
        let mid = (want.len() as f64 * committed_fraction) as u64;
        wal.reader("mid").unwrap().commit(mid).unwrap();
        wal.close();

        let last = segment_files(dir.path()).pop().unwrap();
        let mut tail = match &crash {
            Crash::TornFrame(n) => {
                // Write a real frame elsewhere and keep a prefix of it.
                let scratch = tempfile::tempdir().unwrap();
                let (w2, _) = Wal::open(scratch.path(), opts(1 << 20, 1 << 20), &names(&["x"])).unwrap();
                rt.block_on(w2.append(frame(&[vec![7u8; 150]]))).unwrap();
                w2.close();
                let bytes = std::fs::read(segment_files(scratch.path()).pop().unwrap()).unwrap();
                bytes[..(*n).min(bytes.len() - 1)].to_vec()
            }
            Crash::Garbage(g) => g.clone(),
            Crash::Clean => Vec::new(),
        };
        let mut content = std::fs::read(&last).unwrap();
        content.append(&mut tail);
        std::fs::write(&last, content).unwrap();

        let (wal, rec) = Wal::open(dir.path(), opts(1 << 24, segment_bytes), &readers).unwrap();
        prop_assert_eq!(rec.next_seq, want.len() as u64);
        let got: Vec<Vec<u8>> = read_all(&wal, "from-start").into_iter().map(|(_, d)| d).collect();
        prop_assert_eq!(&got, &want);
        let got_mid = read_all(&wal, "mid");
        prop_assert_eq!(got_mid.len() as u64, want.len() as u64 - mid);
        prop_assert!(got_mid.iter().zip(mid..).all(|((s, d), i)| *s == i && *d == want[i as usize]));

        // The log goes on where it left off.
        let ack = rt.block_on(wal.append(frame(&[b"after".to_vec()]))).unwrap();
        prop_assert_eq!(ack.first_seq, want.len() as u64);
        let again = read_all(&wal, "from-start");
        prop_assert_eq!(again.len(), want.len() + 1);
        prop_assert_eq!(&again.last().unwrap().1, &b"after".to_vec());
        wal.close();
    }
}

#[test]
fn readers_added_at_run_time_start_at_the_end_and_removed_ones_free_their_segments() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (wal, _) = Wal::open(dir.path(), opts(1 << 20, 256), &names(&["s"])).unwrap();
    let rec = vec![vec![b'x'; 100]];
    for _ in 0..5 {
        rt.block_on(wal.append(frame(&rec))).unwrap();
    }
    // A sink added by a reload sees only what is appended after it.
    let mut added = wal.add_reader("new").unwrap();
    assert!(added.read(100, usize::MAX).unwrap().is_empty());
    rt.block_on(wal.append(frame(&[b"after".to_vec()])))
        .unwrap();
    let got = added.read(100, usize::MAX).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data, &b"after"[..]);
    added.commit(got[0].seq + 1).unwrap();
    drop(added);
    // Registering it again keeps its cursor.
    assert!(wal
        .add_reader("new")
        .unwrap()
        .read(100, usize::MAX)
        .unwrap()
        .is_empty());

    // `s` never read anything: it holds every segment until it is removed.
    let before = segment_files(dir.path()).len();
    assert!(before > 1);
    wal.remove_reader("s").unwrap();
    assert!(!dir.path().join("cursors/s").exists());
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(wal.cursor("s"), None);
    drop(wal);
    let (_, _) = Wal::open(dir.path(), opts(1 << 20, 256), &names(&["new"])).unwrap();
}

/// A WAL directory written by 0.1.0 (segment frames holding v2 and v1 records, a v2 cursor),
/// committed as it was written and read the same forever. `THOTH_WRITE_WAL_FIXTURE=1` writes
/// it anew — only for a new format version, into a new directory.
#[test]
fn reads_a_wal_directory_of_the_released_format() {
    use thoth_wal::record::{decode, RecordWriter};
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/wal-0.1.0");
    let events: [(&str, &str); 3] = [
        (
            "acme",
            r#"{"type":"checkin","tenant_id":"acme","endpoint_id":"ep-1"}"#,
        ),
        (
            "acme",
            r#"{"type":"decision","tenant_id":"acme","endpoint_id":"ep-1","risk":"high","decision":"block"}"#,
        ),
        (
            "globex",
            r#"{"type":"alert","tenant_id":"globex","title":"t"}"#,
        ),
    ];
    let v1_record =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/record-v1/plain.bin"))
            .unwrap();
    if std::env::var_os("THOTH_WRITE_WAL_FIXTURE").is_some() {
        let _ = std::fs::remove_dir_all(&fixture);
        let rt = rt();
        let (wal, _) = Wal::open(&fixture, opts(1 << 20, 1 << 16), &names(&["out"])).unwrap();
        let mut writer = RecordWriter::default();
        let mut first = FrameBuilder::new();
        for (tenant, json) in &events[..2] {
            first.push_with(|buf| {
                writer.write_copy(buf, tenant, json.as_bytes(), &Default::default())
            });
        }
        rt.block_on(wal.append(first)).unwrap();
        let mut second = FrameBuilder::new();
        second.push_with(|buf| {
            writer.write_copy(
                buf,
                events[2].0,
                events[2].1.as_bytes(),
                &Default::default(),
            )
        });
        second.push(&v1_record);
        rt.block_on(wal.append(second)).unwrap();
        wal.reader("out").unwrap().commit(1).unwrap();
        wal.close();
    }

    let dir = tempfile::tempdir().unwrap();
    for sub in ["", "cursors"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(fixture.join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, dir.path().join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let segments = segment_files(dir.path());
    assert_eq!(segments.len(), 1, "{segments:?}");
    assert!(
        std::fs::read(&segments[0]).unwrap().starts_with(b"TOTH"),
        "frame magic"
    );
    let (wal, recovery) = Wal::open(dir.path(), opts(1 << 20, 1 << 16), &names(&["out"])).unwrap();
    assert_eq!((recovery.next_seq, recovery.truncated_bytes), (4, 0));
    assert!(recovery.corrupt_regions.is_empty());
    let mut reader = wal.reader("out").unwrap();
    let entries = reader.read(100, 1 << 20).unwrap();
    // The cursor was committed at 1: the first event was delivered before the upgrade.
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(
        entries.iter().all(|e| e.appended_ms > 1_700_000_000_000),
        "append times are kept"
    );
    for (entry, (tenant, json)) in entries.iter().zip(&events[1..]) {
        let record = decode(&entry.data).expect("a v2 record");
        assert_eq!((record.tenant_id, record.json), (*tenant, json.as_bytes()));
    }
    let v1 = decode(&entries[2].data).expect("a v1 record inside a frame");
    assert_eq!(v1.tenant_id, "globex");
}
