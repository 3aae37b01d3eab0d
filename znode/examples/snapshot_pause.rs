//! Prints how long taking a snapshot of a tree of N znodes holds the tree (the apply thread
//! waits that long), and how long writing it out takes (done on another thread).
//!
//! `cargo run --release -p coord-znode --example snapshot_pause -- [N]` (default 1,000,000).

use std::time::Instant;

use bytes::Bytes;
use coord_engine::{Snapshot, StateMachine, Zxid};
use coord_proto::Acl;
use coord_znode::{Caller, Tree, Txn, TxnOp};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .map_or(1_000_000, |s| s.parse().expect("a node count"));
    let mut tree = Tree::new();
    let mut zxid = 0u64;
    let mut apply = |tree: &mut Tree, op: TxnOp| {
        zxid += 1;
        tree.apply_txn(Zxid::from_u64(zxid), &Txn { time_ms: 0, op });
    };
    let dirs = 1000;
    for d in 0..dirs {
        apply(
            &mut tree,
            TxnOp::Create {
                path: format!("/d{d}"),
                data: Bytes::new(),
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: d as i32 + 1,
            },
        );
    }
    let started = Instant::now();
    for i in 0..n {
        apply(
            &mut tree,
            TxnOp::Create {
                path: format!("/d{}/n{i}", i % dirs),
                data: Bytes::from_static(&[7; 100]),
                acl: Acl::open_unsafe(),
                ephemeral_owner: 0,
                parent_cversion: (i / dirs) as i32 + 1,
            },
        );
    }
    println!(
        "built {n} znodes in {:?}; resident memory {} MiB",
        started.elapsed(),
        resident_mib()
    );
    // Reads of existing nodes in a scattered order, as clients would make them.
    let started = Instant::now();
    let mut found = 0u64;
    let reads = 2_000_000u64;
    for k in 0..reads {
        let i = (k.wrapping_mul(2_654_435_761) % u64::from(n)) as u32;
        let path = format!("/d{}/n{i}", i % dirs);
        if tree.get_data(&path, &Caller::ANONYMOUS).is_ok() {
            found += 1;
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(found, reads);
    println!(
        "{reads} reads in {elapsed:?}: {:.0} ns each",
        elapsed.as_nanos() as f64 / reads as f64
    );
    for _ in 0..3 {
        let started = Instant::now();
        let snapshot = tree.snapshot();
        let taken = started.elapsed();
        let started = Instant::now();
        let mut sink = std::io::sink();
        snapshot.write_to(&mut sink).expect("writes");
        println!(
            "snapshot of {n} znodes: taken (apply waits) {taken:?}, written {:?}",
            started.elapsed()
        );
    }
}

/// This process's resident set size, from /proc (0 where there is none).
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| (pages * 4096) >> 20)
}
