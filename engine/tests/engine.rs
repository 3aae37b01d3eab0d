//! The engine end to end on a real disk, with a toy key-value machine.

// Test helpers outside `#[test]` functions panic on failure by design.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

mod common;

use common::{Kv, KvSnapshot};
use coord_engine::{Engine, EngineConfig, EngineError, Epoch, RestoreError, StateMachine, Zxid};

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.to_path_buf(),
        snapshot_every_txns: 0,
    }
}

fn open(dir: &Path) -> (Engine<Kv>, Kv) {
    let kv = Kv::default();
    let engine = Engine::open(config(dir), kv.clone()).unwrap();
    (engine, kv)
}

fn txn(i: usize) -> Vec<u8> {
    format!("k{i}=v{i}").into_bytes()
}

/// Proposes `key{i}=value{i}` for each i and waits for each in turn.
fn put(engine: &Engine<Kv>, range: std::ops::Range<usize>) -> Vec<Zxid> {
    range
        .map(|i| {
            let proposal = engine.propose(|_| Ok::<_, ()>(txn(i))).unwrap();
            proposal.wait().unwrap().0
        })
        .collect()
}

fn close(engine: Engine<Kv>) {
    engine.shutdown();
    drop(engine);
}

fn files_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && !name.ends_with(".tmp")
        })
        .collect();
    paths.sort();
    paths
}

/// The byte offset of batch `index` in a segment holding txns `txn(0..)`, one per batch (as
/// `put` writes them: each waits for the one before).
fn batch_offset(index: usize) -> u64 {
    use coord_engine::log::{
        BATCH_HEADER_LEN, BATCH_TRAILER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    };
    let batches: usize = (0..index)
        .map(|i| BATCH_HEADER_LEN + RECORD_HEADER_LEN + txn(i).len() + BATCH_TRAILER_LEN)
        .sum();
    (SEGMENT_HEADER_LEN + batches) as u64
}

#[test]
fn committed_txns_are_replayed_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, kv) = open(dir.path());
    let zxids = put(&engine, 0..50);
    assert_eq!(zxids.first(), Some(&Zxid::new(Epoch(1), 1)));
    assert_eq!(engine.last_applied(), *zxids.last().unwrap());
    assert_eq!(engine.stats().last_zxid, *zxids.last().unwrap());
    assert_eq!(kv.len(), 50);
    // The output is the machine's: overwriting a key yields its previous value.
    let (_, previous) = engine
        .propose(|_| Ok::<_, ()>(b"k3=new".to_vec()))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(previous.as_deref(), Some("v3"));
    close(engine);

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.applied(), 51);
    assert_eq!(kv.len(), 50);
    assert_eq!(kv.map.lock().unwrap()["k3"], "new");
    assert_eq!(engine.last_applied(), Zxid::new(Epoch(1), 51));
    close(engine);
}

#[test]
fn reopen_restores_the_snapshot_then_replays_only_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    put(&engine, 0..30);
    assert_eq!(engine.snapshot_now().unwrap(), Zxid::new(Epoch(1), 30));
    put(&engine, 30..37);
    assert_eq!(engine.stats().snapshots, 1);
    close(engine);

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 37);
    assert_eq!(
        kv.applied(),
        7,
        "only the txns after the snapshot are replayed"
    );
    assert_eq!(engine.last_applied(), Zxid::new(Epoch(1), 37));
    close(engine);
}

#[test]
fn torn_tail_is_truncated_and_the_good_prefix_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    put(&engine, 0..10);
    close(engine);

    let segments = files_with_prefix(dir.path(), "log.");
    assert_eq!(segments.len(), 1);
    let segment = &segments[0];
    let len = fs::metadata(segment).unwrap().len();
    assert_eq!(len, batch_offset(10));
    // A crash mid-write: the last batch is cut short and garbage follows.
    let file = OpenOptions::new().write(true).open(segment).unwrap();
    file.set_len(len - 5).unwrap();
    drop(file);
    let mut file = OpenOptions::new().append(true).open(segment).unwrap();
    file.write_all(&[0xab; 37]).unwrap();
    drop(file);

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 9);
    assert!(!kv.map.lock().unwrap().contains_key("k9"));
    assert_eq!(fs::metadata(segment).unwrap().len(), batch_offset(9));
    // The engine carries on in a new epoch.
    let zxids = put(&engine, 10..11);
    assert_eq!(zxids, vec![Zxid::new(Epoch(2), 1)]);
    close(engine);

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 10);
    close(engine);
}

#[test]
fn flipped_byte_in_a_middle_batch_fails_open_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    put(&engine, 0..10);
    close(engine);

    let segment = files_with_prefix(dir.path(), "log.").remove(0);
    let offset = batch_offset(5);
    let mut bytes = fs::read(&segment).unwrap();
    // A payload byte of the batch's only record.
    bytes[offset as usize + coord_engine::log::BATCH_HEADER_LEN + 12 + 1] ^= 0x01;
    fs::write(&segment, bytes).unwrap();

    let err = Engine::open(config(dir.path()), Kv::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(
            err,
            EngineError::Log(coord_engine::log::LogError::Corrupt { .. })
        ),
        "{message}"
    );
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte offset {offset}")),
        "{message}"
    );
}

#[test]
fn corrupt_newest_snapshot_falls_back_to_an_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    put(&engine, 0..10);
    engine.snapshot_now().unwrap();
    put(&engine, 10..20);
    engine.snapshot_now().unwrap();
    put(&engine, 20..25);
    close(engine);

    let snapshots = files_with_prefix(dir.path(), "snapshot.");
    assert_eq!(snapshots.len(), 2);
    let newest = snapshots.last().unwrap();
    let mut bytes = fs::read(newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(newest, bytes).unwrap();

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 25);
    assert_eq!(
        kv.applied(),
        15,
        "replayed from the older snapshot at txn 10"
    );
    close(engine);
}

#[test]
fn concurrent_proposals_share_fsyncs() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let (engine, kv) = open(dir.path());
    let zxids: Vec<Zxid> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let engine = engine.clone();
                scope.spawn(move || {
                    let proposals: Vec<_> = (0..PER_THREAD)
                        .map(|i| {
                            engine
                                .propose(|_| Ok::<_, ()>(txn(t * PER_THREAD + i)))
                                .unwrap()
                        })
                        .collect();
                    proposals
                        .into_iter()
                        .map(|p| p.wait().unwrap().0)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let total = (THREADS * PER_THREAD) as u64;
    let mut sorted = zxids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len() as u64,
        total,
        "every proposal got its own zxid"
    );
    assert_eq!(sorted.last(), Some(&Zxid::new(Epoch(1), total as u32)));
    assert_eq!(kv.len() as u64, total);
    let stats = engine.stats();
    assert_eq!(stats.txns_logged, total);
    assert!(
        stats.fsyncs < total,
        "group commit: {} fsyncs for {total} txns",
        stats.fsyncs
    );
    close(engine);
}

#[test]
fn zxids_start_a_new_epoch_after_each_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    assert_eq!(engine.epoch(), Epoch(1));
    assert_eq!(
        put(&engine, 0..2),
        vec![Zxid::new(Epoch(1), 1), Zxid::new(Epoch(1), 2)]
    );
    close(engine);

    let (engine, _) = open(dir.path());
    assert_eq!(put(&engine, 2..3), vec![Zxid::new(Epoch(2), 1)]);
    close(engine);
    for file in ["acceptedEpoch", "currentEpoch"] {
        assert_eq!(
            fs::read_to_string(dir.path().join(file)).unwrap().trim(),
            "2"
        );
    }

    // Even with the epoch files lost, the log's own epochs keep zxids increasing.
    fs::remove_file(dir.path().join("acceptedEpoch")).unwrap();
    fs::remove_file(dir.path().join("currentEpoch")).unwrap();
    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 3);
    assert_eq!(put(&engine, 3..4), vec![Zxid::new(Epoch(3), 1)]);
    close(engine);
}

#[test]
fn second_open_of_a_locked_dir_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    let err = Engine::open(config(dir.path()), Kv::default()).unwrap_err();
    assert!(matches!(err, EngineError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    close(engine);

    let (engine, _) = open(dir.path());
    close(engine);
}

#[test]
fn failed_build_consumes_no_zxid() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, kv) = open(dir.path());
    let err = engine.propose(|zxid| Err::<Vec<u8>, _>(format!("rejected {zxid}")));
    assert_eq!(
        err.unwrap_err(),
        format!("rejected {}", Zxid::new(Epoch(1), 1))
    );
    let mut seen = None;
    let (zxid, _) = engine
        .propose(|zxid| {
            seen = Some(zxid);
            Ok::<_, ()>(txn(0))
        })
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(zxid, Zxid::new(Epoch(1), 1));
    assert_eq!(seen, Some(zxid), "build saw the zxid its txn got");
    assert_eq!(kv.applied(), 1);
    close(engine);
}

#[test]
fn proposals_after_shutdown_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    engine.shutdown();
    let result = engine.propose(|_| Ok::<_, ()>(txn(0))).unwrap().wait();
    assert!(matches!(result, Err(EngineError::ShutDown)), "{result:?}");
    assert!(matches!(engine.snapshot_now(), Err(EngineError::ShutDown)));
}

#[test]
fn snapshots_purge_old_snapshots_and_the_log_they_cover() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    for round in 0..5 {
        put(&engine, round * 5..round * 5 + 5);
        engine.snapshot_now().unwrap();
    }
    close(engine);

    let snapshots = files_with_prefix(dir.path(), "snapshot.");
    assert_eq!(snapshots.len(), coord_engine::SNAPSHOTS_RETAINED);
    // Each snapshot rolled the log; segments before the oldest kept snapshot (txn 15) are gone,
    // the one holding it stays.
    let segments = files_with_prefix(dir.path(), "log.");
    let names: Vec<String> = segments
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        names,
        vec![
            coord_engine::log::segment_name(Zxid::new(Epoch(1), 11)),
            coord_engine::log::segment_name(Zxid::new(Epoch(1), 16)),
            coord_engine::log::segment_name(Zxid::new(Epoch(1), 21)),
        ]
    );

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 25);
    assert_eq!(kv.applied(), 0, "the newest snapshot covers everything");
    close(engine);
}

#[test]
fn automatic_snapshots_follow_snapshot_every_txns() {
    let dir = tempfile::tempdir().unwrap();
    let kv = Kv::default();
    let engine = Engine::open(
        EngineConfig {
            data_dir: dir.path().to_path_buf(),
            snapshot_every_txns: 10,
        },
        kv.clone(),
    )
    .unwrap();
    put(&engine, 0..100);
    engine.shutdown();
    let stats = engine.stats();
    assert!(stats.snapshots >= 1, "{stats:?}");
    assert!(files_with_prefix(dir.path(), "snapshot.").len() <= coord_engine::SNAPSHOTS_RETAINED);
    drop(engine);

    let (engine, kv) = open(dir.path());
    assert_eq!(kv.len(), 100);
    assert!(kv.applied() < 100, "restored from a snapshot");
    close(engine);
}

#[test]
fn a_missing_log_segment_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    // Each snapshot rolls the log: segments start at txns 1, 4 and 7.
    put(&engine, 0..3);
    engine.snapshot_now().unwrap();
    put(&engine, 3..6);
    engine.snapshot_now().unwrap();
    put(&engine, 6..9);
    close(engine);
    let segments = files_with_prefix(dir.path(), "log.");
    assert_eq!(segments.len(), 3);
    let snapshots = files_with_prefix(dir.path(), "snapshot.");
    assert_eq!(snapshots.len(), 2);
    // Lose the newest snapshot and the segment with txns 4..=6: the older snapshot (at 3)
    // cannot be brought up to date.
    fs::remove_file(&snapshots[1]).unwrap();
    fs::remove_file(&segments[1]).unwrap();

    let err = Engine::open(config(dir.path()), Kv::default()).unwrap_err();
    assert!(
        matches!(err, EngineError::LogGap { after, found, .. }
            if after == Zxid::new(Epoch(1), 3) && found == Zxid::new(Epoch(1), 7)),
        "{err}"
    );
}

#[tokio::test]
async fn proposal_is_a_future() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path());
    let (zxid, previous) = engine
        .propose(|_| Ok::<_, ()>(txn(0)))
        .unwrap()
        .await
        .unwrap();
    assert_eq!(zxid, Zxid::new(Epoch(1), 1));
    assert_eq!(previous, None);
    // Blocking shutdown off the async worker.
    tokio::task::spawn_blocking(move || close(engine))
        .await
        .unwrap();
}

/// Panics on the txn `boom`: a bug in the machine.
struct Fragile;

impl StateMachine for Fragile {
    type Output = ();
    type Snapshot = KvSnapshot;

    fn apply(&mut self, _zxid: Zxid, txn: &[u8]) {
        assert_ne!(txn, b"boom", "the machine hit a bug");
    }

    fn snapshot(&self) -> KvSnapshot {
        KvSnapshot(BTreeMap::new())
    }

    fn restore(&mut self, _reader: &mut dyn Read) -> Result<(), RestoreError> {
        Ok(())
    }
}

#[test]
fn a_panicking_machine_fails_proposals_instead_of_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path()), Fragile).unwrap();
    engine
        .propose(|_| Ok::<_, ()>(b"fine".to_vec()))
        .unwrap()
        .wait()
        .unwrap();
    let result = engine
        .propose(|_| Ok::<_, ()>(b"boom".to_vec()))
        .unwrap()
        .wait();
    assert!(result.is_err(), "{result:?}");
    // Once the failure is noticed every proposal is refused; none is ever left hanging.
    let mut refused = false;
    for _ in 0..1000 {
        let result = engine
            .propose(|_| Ok::<_, ()>(b"after".to_vec()))
            .unwrap()
            .wait();
        assert!(result.is_err(), "{result:?}");
        if matches!(result, Err(EngineError::Failed { .. })) {
            refused = true;
            break;
        }
    }
    assert!(refused, "the engine never reported the failure");
    engine.shutdown();
}
