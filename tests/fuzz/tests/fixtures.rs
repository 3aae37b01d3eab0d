//! Replays every file under `fixtures/<target>/` (crashes the fuzzers found, kept as
//! regression inputs) through its target, without libFuzzer: `cargo test` in tests/fuzz.

use std::fs;
use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 4] = [
    ("proto_request", coord_fuzz::proto_request),
    ("znode_txn", coord_fuzz::znode_txn),
    ("znode_snapshot", coord_fuzz::znode_snapshot),
    ("engine_log", coord_fuzz::engine_log),
];

#[test]
fn every_fixture_replays_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut replayed = 0;
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "md") {
                continue;
            }
            let data = fs::read(&path).unwrap();
            eprintln!("replaying {}", path.display());
            target(&data);
            replayed += 1;
        }
    }
    eprintln!("{replayed} fixtures replayed");
}

#[test]
fn empty_and_tiny_inputs_are_handled() {
    for (_, target) in TARGETS {
        target(b"");
        target(&[0]);
        target(&[0xff; 40]);
    }
}

/// The harness itself: a data dir the engine wrote opens, with or without checksum fixing; a
/// damaged batch in a segment that is not the last is refused unless the harness fixes the
/// checksums (then the damage is only in a payload, which the engine cannot judge).
#[test]
fn engine_log_harness_opens_real_dirs_and_refuses_damaged_ones() {
    use coord_fuzz::{encode_dir, engine_dir_image, engine_log_opened, FileKind, Step};
    let files = engine_dir_image(&[
        Step::Propose(3),
        Step::Reopen,
        Step::Propose(2),
        Step::Snapshot,
        Step::Propose(1),
    ])
    .unwrap();
    assert_eq!(
        files.iter().filter(|f| f.kind == FileKind::Segment).count(),
        2,
        "{files:?}"
    );
    assert!(files.iter().any(|f| f.kind == FileKind::Snapshot));
    assert!(engine_log_opened(&encode_dir(0, &files)));
    assert!(engine_log_opened(&encode_dir(
        coord_fuzz::FIX_CHECKSUMS,
        &files
    )));

    // Flip the last payload byte of the first segment's first batch.
    let mut damaged = files.clone();
    let first = damaged
        .iter_mut()
        .find(|f| f.kind == FileKind::Segment)
        .unwrap();
    let last = first.bytes.len() - 5;
    first.bytes[last] ^= 0x55;
    assert!(!engine_log_opened(&encode_dir(0, &damaged)));
    assert!(engine_log_opened(&encode_dir(
        coord_fuzz::FIX_CHECKSUMS,
        &damaged
    )));
}

/// The txn harness's splitting, which the seeds rely on.
#[test]
fn txn_inputs_split_at_the_separator() {
    let parts: Vec<&[u8]> =
        coord_fuzz::split(b"a#TXN#bc#TXN#", coord_fuzz::TXN_SEPARATOR).collect();
    assert_eq!(parts, vec![&b"a"[..], &b"bc"[..], &b""[..]]);
}
