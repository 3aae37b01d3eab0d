//! The counters machine through the engine: durable, recovered from log and snapshot.

// Test helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

use coord_engine::{Engine, EngineConfig};
use coord_examples::{add_txn, CounterError, Counters};

fn open(dir: &std::path::Path, snapshot_every_txns: u64) -> (Engine<Counters>, Counters) {
    let counters = Counters::default();
    let config = EngineConfig {
        data_dir: dir.to_owned(),
        snapshot_every_txns,
    };
    (Engine::open(config, counters.clone()).unwrap(), counters)
}

fn add(engine: &Engine<Counters>, name: &str, delta: i64) -> i64 {
    let (_, value) = engine
        .propose(|_| add_txn(name, delta))
        .unwrap()
        .wait()
        .unwrap();
    value.unwrap()
}

#[test]
fn counters_survive_a_restart_through_log_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (engine, counters) = open(dir.path(), 7);
        for i in 0..50 {
            add(&engine, if i % 2 == 0 { "even" } else { "odd" }, i);
        }
        assert_eq!(add(&engine, "even", 0), (0..50).step_by(2).sum::<i64>());
        assert_eq!(counters.get("odd"), (1..50).step_by(2).sum::<i64>());
        engine.snapshot_now().unwrap();
        add(&engine, "late", 5);
        engine.shutdown();
    }
    let (engine, counters) = open(dir.path(), 7);
    assert_eq!(counters.get("even"), (0..50).step_by(2).sum::<i64>());
    assert_eq!(counters.get("odd"), (1..50).step_by(2).sum::<i64>());
    assert_eq!(counters.get("late"), 5);
    assert_eq!(add(&engine, "late", -2), 3);
}

#[test]
fn bad_names_are_refused_on_the_write_path_and_use_no_zxid() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) = open(dir.path(), 0);
    let before = engine.last_applied();
    assert_eq!(
        engine.propose(|_| add_txn("no spaces", 1)).unwrap_err(),
        CounterError::BadName
    );
    assert_eq!(engine.last_applied(), before);
    add(&engine, "ok", 1);
    assert!(engine.last_applied() > before);
}
