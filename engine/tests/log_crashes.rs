//! The txn log crashes at every storage operation of a workload (appends, rolls, a TRUNC, a
//! reset for a SNAP) on a simulated disk that loses, or tears, what was not synced. After each
//! crash the log opens without an error, holds every acknowledged record, and nothing that was
//! not written: what an operation in flight leaves is one of the states the log's docs allow.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use coord_engine::log::{Log, LogError};
use coord_engine::storage::{SimStorage, Storage, TornWrites};
use coord_engine::{Epoch, Zxid};

type Records = Vec<(Zxid, Vec<u8>)>;

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u32>, &'static str),
    Roll,
    TruncateAfter(u32),
    ResetAfter(u32),
}

fn z(counter: u32) -> Zxid {
    Zxid::new(Epoch(1), counter)
}

/// Appends, rolls, a TRUNC into the middle of a batch, writes after it, a reset as a SNAP
/// install does, and writes after that; one batch big enough to need more preallocated space.
fn workload() -> Vec<Op> {
    vec![
        Op::Append(vec![1, 2, 3], "a"),
        Op::Append(vec![4], "a"),
        Op::Append(vec![5, 6], "big"),
        Op::Roll,
        Op::Append(vec![7, 8], "a"),
        Op::TruncateAfter(5),
        Op::Append(vec![6, 7], "b"),
        Op::ResetAfter(20),
        Op::Append(vec![21, 22], "c"),
    ]
}

fn payload(counter: u32, tag: &str) -> Vec<u8> {
    if tag == "big" {
        return vec![counter as u8; 700 * 1024];
    }
    format!("{tag}{counter}").into_bytes()
}

/// The records `op` leaves in a log that held `before`.
fn apply(before: &Records, op: &Op) -> Records {
    match op {
        Op::Append(counters, tag) => {
            let mut after = before.clone();
            after.extend(counters.iter().map(|c| (z(*c), payload(*c, tag))));
            after
        }
        Op::Roll => before.clone(),
        Op::TruncateAfter(to) => before
            .iter()
            .filter(|(zx, _)| *zx <= z(*to))
            .cloned()
            .collect(),
        Op::ResetAfter(_) => Vec::new(),
    }
}

fn open(storage: &SimStorage, dir: &Path) -> Result<(Log, Records), LogError> {
    let mut records = Vec::new();
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    let log = Log::open_in(
        storage,
        dir,
        |zxid, payload| records.push((zxid, payload.to_vec())),
        || Ok(()),
    )?;
    Ok((log, records))
}

/// Runs the workload until the storage fails; returns what was acknowledged and the
/// operation in flight, if any.
fn run(storage: &SimStorage, dir: &Path) -> (Records, Option<Op>) {
    let mut state = Records::new();
    let Ok((mut log, _)) = open(storage, dir) else {
        return (state, None);
    };
    for op in workload() {
        let result = match &op {
            Op::Append(counters, tag) => {
                let batch: Vec<(Zxid, Vec<u8>)> =
                    counters.iter().map(|c| (z(*c), payload(*c, tag))).collect();
                let refs: Vec<(Zxid, &[u8])> =
                    batch.iter().map(|(zx, p)| (*zx, p.as_slice())).collect();
                log.append_batch(&refs)
            }
            Op::Roll => {
                log.roll();
                Ok(())
            }
            Op::TruncateAfter(to) => log.truncate_after(z(*to)),
            Op::ResetAfter(zxid) => log.reset_after(z(*zxid)),
        };
        match result {
            Ok(()) => state = apply(&state, &op),
            Err(_) => return (state, Some(op)),
        }
    }
    (state, None)
}

/// Whether `found` is a state a crash during `inflight` may leave of a log that held `acked`.
fn allowed(acked: &Records, inflight: Option<&Op>, found: &Records) -> bool {
    let is_prefix = |of: &Records| found.len() <= of.len() && of[..found.len()] == found[..];
    match inflight {
        None | Some(Op::Roll) => found == acked,
        Some(op @ Op::Append(..)) => found == acked || *found == apply(acked, op),
        // Newest segments go first, then the cut one is replaced whole: a prefix of the old
        // log at least as long as the cut.
        Some(op @ Op::TruncateAfter(_)) => {
            is_prefix(acked) && found.len() >= apply(acked, op).len()
        }
        // Segments go newest first; the caller's install marker finishes the job.
        Some(Op::ResetAfter(_)) => is_prefix(acked),
    }
}

fn crash_everywhere(torn: TornWrites, seeds: u64) {
    let dir = Path::new("/data");
    let total = {
        let storage = SimStorage::new(0, torn);
        let (acked, inflight) = run(&storage, dir);
        assert!(inflight.is_none());
        assert_eq!(acked.last().map(|(zx, _)| *zx), Some(z(22)));
        storage.ops()
    };
    for at in 0..total {
        for seed in 0..seeds {
            let storage = SimStorage::new(seed, torn);
            storage.crash_at(at);
            let (acked, inflight) = run(&storage, dir);
            storage.restart();
            let context =
                format!("{torn:?}, crash at operation {at}/{total}, seed {seed}, in {inflight:?}");
            let (mut log, found) = open(&storage, dir)
                .unwrap_or_else(|err| panic!("{context}: the log does not open: {err}"));
            assert!(
                allowed(&acked, inflight.as_ref(), &found),
                "{context}: found {:?}, acknowledged {:?}",
                found.iter().map(|(zx, _)| *zx).collect::<Vec<_>>(),
                acked.iter().map(|(zx, _)| *zx).collect::<Vec<_>>()
            );
            if torn == TornWrites::Lost {
                assert!(
                    !log.dropped_tail(),
                    "{context}: a lost write taken for damage"
                );
            }
            // The log goes on where it ends, and keeps what it is given.
            let next = log.last_zxid().counter() + 1;
            let more = payload(next, "d");
            log.append_batch(&[(z(next), &more)]).unwrap();
            drop(log);
            let (_, reopened) = open(&storage, dir).unwrap();
            let mut expected = found.clone();
            expected.push((z(next), more));
            assert_eq!(reopened, expected, "{context}: after one more append");
        }
    }
}

#[test]
fn the_log_survives_a_crash_at_every_operation_losing_what_was_not_synced() {
    // Only torn pages depend on the seed.
    crash_everywhere(TornWrites::Lost, 1);
}

#[test]
fn the_log_survives_a_crash_at_every_operation_tearing_what_was_not_synced() {
    crash_everywhere(TornWrites::Pages, 4);
}

#[test]
fn equal_seeds_give_byte_equal_disks() {
    let disk = |seed| {
        let storage = SimStorage::new(seed, TornWrites::Pages);
        run(&storage, Path::new("/data"));
        storage.files()
    };
    assert_eq!(disk(7), disk(7));
    assert_ne!(disk(7), disk(8), "salts come from the seed");
}
