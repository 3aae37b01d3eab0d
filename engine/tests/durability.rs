//! Regression tests for durability bugs a review found: history lost at an epoch boundary or
//! behind unusable snapshots went unnoticed, torn tails were mistaken for corruption, and the
//! torn-tail scan was quadratic.

// Test helpers outside `#[test]` functions panic on failure by design.
#![allow(clippy::unwrap_used)]

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod common;

use common::Kv;
use coord_engine::log::{
    segment_name, Log, LogError, BATCH_HEADER_LEN, BATCH_TRAILER_LEN, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use coord_engine::snapshot::{snapshot_name, SnapshotError};
use coord_engine::{Engine, EngineConfig, EngineError, Epoch, Zxid};

fn try_open(dir: &Path) -> Result<(Engine<Kv>, Kv), EngineError> {
    let kv = Kv::default();
    let config = EngineConfig {
        data_dir: dir.to_path_buf(),
        snapshot_every_txns: 0,
    };
    Engine::open(config, kv.clone()).map(|engine| (engine, kv))
}

fn open(dir: &Path) -> (Engine<Kv>, Kv) {
    try_open(dir).unwrap()
}

fn open_err(dir: &Path) -> EngineError {
    match try_open(dir) {
        Ok((engine, kv)) => {
            let keys = kv.len();
            engine.shutdown();
            panic!("open succeeded with {keys} keys: lost history went unnoticed");
        }
        Err(err) => err,
    }
}

fn put(engine: &Engine<Kv>, range: std::ops::Range<usize>) {
    for i in range {
        engine
            .propose(|_| Ok::<_, ()>(format!("k{i}=v{i}").into_bytes()))
            .unwrap()
            .wait()
            .unwrap();
    }
}

fn close(engine: Engine<Kv>) {
    engine.shutdown();
    drop(engine);
}

fn z(epoch: u32, counter: u32) -> Zxid {
    Zxid::new(Epoch(epoch), counter)
}

fn segment(dir: &Path, first: Zxid) -> PathBuf {
    dir.join(segment_name(first))
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with("log.") && !name.ends_with(".tmp")
        })
        .collect();
    paths.sort();
    paths
}

fn one_segment(dir: &Path) -> PathBuf {
    let mut paths = segments(dir);
    assert_eq!(paths.len(), 1, "{paths:?}");
    paths.pop().unwrap()
}

fn set_len(path: &Path, len: u64) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Epochs 1, 2 and 3 each write three keys; each restart starts a new segment at (E, 1).
fn three_epochs(dir: &Path) {
    for keys in [0..3, 3..6, 6..9] {
        let (engine, _) = open(dir);
        put(&engine, keys);
        close(engine);
    }
}

#[test]
fn lost_segment_at_an_epoch_boundary_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path());
    fs::remove_file(segment(dir.path(), z(2, 1))).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::LogGap { after, found, .. }
            if after == z(1, 3) && found == z(3, 1)),
        "{err}"
    );
}

#[test]
fn lost_first_segment_without_a_snapshot_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path());
    fs::remove_file(segment(dir.path(), z(1, 1))).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::LogGap { after, found, .. }
            if after == Zxid::ZERO && found == z(2, 1)),
        "{err}"
    );
}

#[test]
fn snapshot_without_log_segments_is_the_whole_history() {
    let dir = tempfile::tempdir().unwrap();
    three_epochs(dir.path());
    let (engine, _) = open(dir.path());
    assert_eq!(engine.snapshot_now().unwrap(), z(3, 3));
    close(engine);
    // The snapshot purged the segments before the one holding (3, 3); lose that one too (as
    // when an operator keeps only the snapshot). The snapshot alone is a complete history.
    assert_eq!(segments(dir.path()), vec![segment(dir.path(), z(3, 1))]);
    fs::remove_file(segment(dir.path(), z(3, 1))).unwrap();
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 9);
    put(&engine, 9..10);
    close(engine);
    // The new segment continues the snapshot's history.
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 10);
    close(engine);
}

#[test]
fn log_ending_before_the_snapshot_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    for keys in [0..3, 3..6] {
        let (engine, _) = open(dir.path());
        put(&engine, keys);
        close(engine);
    }
    let first = segment(dir.path(), z(1, 1));
    let first_bytes = fs::read(&first).unwrap();
    let (engine, _) = open(dir.path());
    assert_eq!(engine.snapshot_now().unwrap(), z(2, 3));
    close(engine);
    assert!(!first.exists(), "the snapshot purged it");
    // Bring the old segment back and lose the newer one: the log ends at (1, 3).
    fs::write(&first, first_bytes).unwrap();
    fs::remove_file(segment(dir.path(), z(2, 1))).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::LogEndsBeforeSnapshot { log_last, snapshot, .. }
            if log_last == z(1, 3) && snapshot == z(2, 3)),
        "{err}"
    );
}

/// A segment header as a crash right after creating the segment leaves it (no batches).
fn segment_stub(prev: Zxid) -> Vec<u8> {
    let mut header = b"COORDLOG".to_vec();
    header.extend_from_slice(&coord_engine::log::SEGMENT_VERSION.to_be_bytes());
    header.extend_from_slice(&0x1234u64.to_be_bytes());
    header.extend_from_slice(&prev.as_u64().to_be_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_be_bytes());
    assert_eq!(header.len(), SEGMENT_HEADER_LEN);
    header
}

#[test]
fn stub_segment_is_dropped_but_still_chains() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    put(&engine, 0..3);
    close(engine);
    // A crash after creating the next segment: dropped, history intact.
    let stub = segment(dir.path(), z(2, 1));
    fs::write(&stub, segment_stub(z(1, 3))).unwrap();
    let (engine, kv) = open(dir.path());
    assert!(!stub.exists());
    assert_eq!(kv.len(), 3);
    close(engine);
    // The same stub with everything before it lost: the history it continued is missing.
    let stub = segment(dir.path(), z(4, 1));
    fs::write(&stub, segment_stub(z(1, 3))).unwrap();
    fs::remove_file(segment(dir.path(), z(1, 1))).unwrap();
    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::LogGap { after, .. } if after == Zxid::ZERO),
        "{err}"
    );
}

/// Epoch 1 writes k0..k4, epoch 2 writes k5..k9 and snapshots at (2, 5), purging log.(1, 1).
fn snapshot_over_a_purged_epoch(dir: &Path) -> PathBuf {
    let (engine, _) = open(dir);
    put(&engine, 0..5);
    close(engine);
    let (engine, _) = open(dir);
    put(&engine, 5..10);
    assert_eq!(engine.snapshot_now().unwrap(), z(2, 5));
    close(engine);
    assert!(!segment(dir, z(1, 1)).exists(), "the snapshot purged it");
    let snapshot = dir.join(snapshot_name(z(2, 5)));
    assert!(snapshot.exists());
    snapshot
}

#[test]
fn damaged_only_snapshot_over_a_purged_log_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = snapshot_over_a_purged_epoch(dir.path());
    let mut bytes = fs::read(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1; // the checksum
    fs::write(&snapshot, bytes).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::Snapshot(SnapshotError::NoneUsable { .. })),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&snapshot.display().to_string()),
        "{message}"
    );
    assert!(message.contains("checksum mismatch"), "{message}");
}

#[test]
fn deleted_snapshot_over_a_purged_log_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = snapshot_over_a_purged_epoch(dir.path());
    fs::remove_file(snapshot).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::LogGap { after, found, .. }
            if after == Zxid::ZERO && found == z(2, 1)),
        "{err}"
    );
}

#[test]
fn unknown_snapshot_version_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let snapshot = snapshot_over_a_purged_epoch(dir.path());
    let mut bytes = fs::read(&snapshot).unwrap();
    bytes[8..12].copy_from_slice(&(coord_engine::snapshot::VERSION + 1).to_be_bytes());
    fs::write(&snapshot, bytes).unwrap();

    let err = open_err(dir.path());
    assert!(
        matches!(err, EngineError::Snapshot(SnapshotError::UnsupportedVersion { ref path, .. })
            if path == &snapshot),
        "{err}"
    );
}

#[test]
fn restart_right_after_a_snapshot_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    snapshot_over_a_purged_epoch(dir.path());
    // Restarts with no writes: the log ends exactly at the snapshot.
    for _ in 0..2 {
        let (engine, kv) = open(dir.path());
        assert_eq!(kv.len(), 10);
        close(engine);
    }
    // A crash while creating the next segment leaves a stub: it is dropped.
    let stub = segment(dir.path(), z(5, 1));
    fs::write(&stub, b"COORDLOG\0\0").unwrap();
    let (engine, kv) = open(dir.path());
    assert!(!stub.exists());
    assert_eq!(kv.len(), 10);
    put(&engine, 10..12);
    close(engine);
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 12);
    close(engine);
}

#[test]
fn snapshot_of_an_empty_engine_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    assert_eq!(engine.snapshot_now().unwrap(), Zxid::ZERO);
    close(engine);
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 0);
    put(&engine, 0..1);
    close(engine);
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 1);
    close(engine);
}

#[test]
fn data_dir_is_created_with_missing_parents() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b");
    let (engine, _) = open(&dir);
    put(&engine, 0..1);
    close(engine);
    let (engine, kv) = open(&dir);
    assert_eq!(kv.len(), 1);
    close(engine);
}

/// A record in the old layout (length, crc, zxid, payload): bytes a client could embed.
fn old_style_record(zxid: Zxid, payload: &[u8]) -> Vec<u8> {
    let zxid_bytes = zxid.as_u64().to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&zxid_bytes), payload);
    let mut record = Vec::new();
    record.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    record.extend_from_slice(&crc.to_be_bytes());
    record.extend_from_slice(&zxid_bytes);
    record.extend_from_slice(payload);
    record
}

/// A well-formed batch header for a salt the client picked.
fn forged_batch_header(salt: u64, body_len: u32, first: Zxid) -> Vec<u8> {
    let mut header = Vec::new();
    header.extend_from_slice(&salt.to_be_bytes());
    header.extend_from_slice(&body_len.to_be_bytes());
    header.extend_from_slice(&1u32.to_be_bytes());
    header.extend_from_slice(&first.as_u64().to_be_bytes());
    let crc = crc32c::crc32c(&header);
    header.extend_from_slice(&crc.to_be_bytes());
    header
}

fn batch_len(payload_lens: &[usize]) -> u64 {
    let records: usize = payload_lens.iter().map(|len| RECORD_HEADER_LEN + len).sum();
    (BATCH_HEADER_LEN + records + BATCH_TRAILER_LEN) as u64
}

#[test]
fn torn_batch_with_client_bytes_that_look_like_records_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
    let mut payload = b"/node\0".to_vec();
    payload.extend(old_style_record(Zxid::from_u64(u64::MAX), b"x"));
    payload.extend(forged_batch_header(0x5eed, 5, Zxid::from_u64(u64::MAX)));
    payload.extend(vec![b'p'; 100]);
    log.append_batch(&[(z(1, 1), b"a=1".as_slice())]).unwrap();
    log.append_batch(&[(z(1, 2), payload.as_slice())]).unwrap();
    drop(log);
    let path = one_segment(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    set_len(&path, len - 10); // torn

    let mut records = Vec::new();
    let log = Log::open(dir.path(), |zxid, _| records.push(zxid)).unwrap();
    assert_eq!(records, vec![z(1, 1)]);
    assert_eq!(log.last_zxid(), z(1, 1));
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        SEGMENT_HEADER_LEN as u64 + batch_len(&[3])
    );
}

#[test]
fn hole_in_the_unsynced_last_batch_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
    let payloads: Vec<Vec<u8>> = (0..100u32).map(|i| vec![i as u8; 100]).collect();
    let batch: Vec<(Zxid, &[u8])> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| (z(1, i as u32 + 1), p.as_slice()))
        .collect();
    log.append_batch(&batch[..10]).unwrap();
    log.append_batch(&batch[10..]).unwrap(); // in flight at power loss
    drop(log);
    let path = one_segment(dir.path());
    let first_batch_end = SEGMENT_HEADER_LEN as u64 + batch_len(&[100; 10]);
    assert!(first_batch_end < 4096);
    assert!(fs::metadata(&path).unwrap().len() > 8192);
    let mut file = OpenOptions::new().write(true).open(&path).unwrap();
    file.seek(SeekFrom::Start(4096)).unwrap();
    file.write_all(&[0u8; 4096]).unwrap(); // page 2 never reached the disk; page 3 did
    drop(file);

    let mut records = 0;
    let log = Log::open(dir.path(), |_, _| records += 1).unwrap();
    assert_eq!(records, 10);
    assert_eq!(log.last_zxid(), z(1, 10));
    assert_eq!(fs::metadata(&path).unwrap().len(), first_batch_end);
}

#[test]
fn bad_batch_followed_by_a_valid_one_is_corrupt_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
    for counter in 1..=5 {
        log.append_batch(&[(z(1, counter), b"0123456789".as_slice())])
            .unwrap();
    }
    drop(log);
    let path = one_segment(dir.path());
    let batch_two = SEGMENT_HEADER_LEN as u64 + batch_len(&[10]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[batch_two as usize + BATCH_HEADER_LEN + RECORD_HEADER_LEN + 3] ^= 0x10;
    fs::write(&path, &bytes).unwrap();

    let err = Log::open(dir.path(), |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, LogError::Corrupt { file, offset, .. } if file == &path && *offset == batch_two),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains(&format!("byte offset {batch_two}")));
    assert_eq!(
        fs::read(&path).unwrap(),
        bytes,
        "a corrupt log is left untouched"
    );
}

#[test]
fn torn_tail_scan_is_linear() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
    // Every 4-byte window is a small length: the old scan decoded and checksummed a record at
    // each offset.
    let size = 4 << 20;
    let payload: Vec<u8> = [0u8, 8, 0, 0].iter().copied().cycle().take(size).collect();
    log.append_batch(&[(z(1, 1), b"a=1".as_slice())]).unwrap();
    log.append_batch(&[(z(1, 2), payload.as_slice())]).unwrap();
    drop(log);
    let path = one_segment(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    set_len(&path, len - 1);

    let started = Instant::now();
    let mut records = 0;
    Log::open(dir.path(), |_, _| records += 1).unwrap();
    let elapsed = started.elapsed();
    assert_eq!(records, 1);
    assert!(
        elapsed < Duration::from_secs(5),
        "recovery of a torn batch took {elapsed:?}"
    );
}
