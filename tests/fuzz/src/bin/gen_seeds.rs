//! Writes seed inputs for every fuzz target: real encodings produced by coord's own encoders
//! and engine, so the fuzzer starts past the length prefixes, tags and checksums.
//!
//! Usage: `cargo run --bin gen-seeds -- [corpus dir]` (default `corpus`); writes
//! `<dir>/<target>/seed-*`. Deterministic except for the engine's random segment salts.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use coord_engine::{Snapshot, StateMachine, Zxid};
use coord_fuzz::{
    encode_dir, engine_dir_image, DirFile, FileKind, Step, FIX_CHECKSUMS, TXN_SEPARATOR,
};
use coord_proto::{
    frame::write_frame, Acl, AddWatchMode, AuthPacket, ClientInfo, ConnectRequest, CreateMode,
    CreateRequest, Id, MultiOp, MultiResult, Record, ReplyHeader, Request, Response, Stat,
    WatcherType,
};
use coord_znode::{Caller, Prep, Tree, Write};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus".into()));
    let counts = [
        ("proto_request", proto_seeds(&root.join("proto_request"))?),
        ("znode_txn", znode_seeds(&root)?),
        ("engine_log", engine_seeds(&root.join("engine_log"))?),
    ];
    for (target, n) in counts {
        println!("{target}: {n} seeds");
    }
    Ok(())
}

fn write_seed(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join(format!("seed-{name}")), bytes)?;
    Ok(())
}

fn create(path: &str, flags: i32, ttl: Option<i64>) -> CreateRequest {
    CreateRequest {
        path: path.into(),
        data: b"data".to_vec(),
        acl: vec![
            Acl {
                perms: 31,
                id: Id::new("world", "anyone"),
            },
            Acl {
                perms: 1,
                id: Id::new("digest", "user:c2VjcmV0"),
            },
        ],
        flags,
        ttl,
    }
}

fn requests() -> Vec<Request> {
    let seq = CreateMode::PersistentSequential.code();
    vec![
        Request::Ping,
        Request::Auth(AuthPacket {
            auth_type: 0,
            scheme: "digest".into(),
            auth: b"user:secret".to_vec(),
        }),
        Request::Create(create("/app", 0, None)),
        Request::Create2(create("/app/seq-", seq, None)),
        Request::CreateContainer(create("/box", CreateMode::Container.code(), None)),
        Request::CreateTtl(create(
            "/ttl",
            CreateMode::PersistentWithTtl.code(),
            Some(5_000),
        )),
        Request::Delete {
            path: "/app".into(),
            version: 3,
        },
        Request::Exists {
            path: "/app".into(),
            watch: true,
        },
        Request::GetData {
            path: "/app".into(),
            watch: false,
        },
        Request::SetData {
            path: "/app".into(),
            data: b"v2".to_vec(),
            version: -1,
        },
        Request::GetAcl {
            path: "/app".into(),
        },
        Request::SetAcl {
            path: "/app".into(),
            acl: Acl::open_unsafe(),
            version: 0,
        },
        Request::GetChildren {
            path: "/".into(),
            watch: true,
        },
        Request::GetChildren2 {
            path: "/".into(),
            watch: false,
        },
        Request::Sync { path: "/".into() },
        Request::Check {
            path: "/app".into(),
            version: 1,
        },
        Request::Multi(vec![
            MultiOp::Create(create("/m", 0, None)),
            MultiOp::CreateTtl(create("/mt", CreateMode::PersistentWithTtl.code(), Some(9))),
            MultiOp::SetData {
                path: "/m".into(),
                data: b"x".to_vec(),
                version: 0,
            },
            MultiOp::Check {
                path: "/m".into(),
                version: 1,
            },
            MultiOp::Delete {
                path: "/m".into(),
                version: -1,
            },
        ]),
        Request::MultiRead(vec![
            MultiOp::GetChildren { path: "/".into() },
            MultiOp::GetData {
                path: "/app".into(),
            },
        ]),
        Request::CheckWatches {
            path: "/app".into(),
            watcher_type: WatcherType::Data,
        },
        Request::RemoveWatches {
            path: "/app".into(),
            watcher_type: WatcherType::Any,
        },
        Request::SetWatches {
            relative_zxid: 42,
            data: vec!["/a".into()],
            exist: vec!["/b".into()],
            child: vec!["/c".into()],
        },
        Request::SetWatches2 {
            relative_zxid: 42,
            data: vec!["/a".into()],
            exist: vec![],
            child: vec!["/c".into()],
            persistent: vec!["/p".into()],
            persistent_recursive: vec!["/r".into()],
        },
        Request::AddWatch {
            path: "/app".into(),
            mode: AddWatchMode::PersistentRecursive,
        },
        Request::GetEphemerals {
            prefix: "/app".into(),
        },
        Request::GetAllChildrenNumber { path: "/".into() },
        Request::WhoAmI,
        Request::CloseSession,
    ]
}

fn stat() -> Stat {
    Stat {
        czxid: 1,
        mzxid: 2,
        ctime: 1_700_000_000_000,
        mtime: 1_700_000_000_001,
        version: 3,
        cversion: 4,
        aversion: 5,
        ephemeral_owner: 0,
        data_length: 4,
        num_children: 2,
        pzxid: 6,
    }
}

/// Responses with the op code they answer.
fn responses() -> Vec<(i32, Response)> {
    use coord_proto::OpCode as Op;
    vec![
        (Op::Delete.code(), Response::Empty),
        (
            Op::Create.code(),
            Response::Create {
                path: "/app".into(),
            },
        ),
        (
            Op::Create2.code(),
            Response::Create2 {
                path: "/app/seq-0000000001".into(),
                stat: stat(),
            },
        ),
        (Op::Exists.code(), Response::Stat(stat())),
        (
            Op::GetData.code(),
            Response::GetData {
                data: b"data".to_vec().into(),
                stat: stat(),
            },
        ),
        (
            Op::GetAcl.code(),
            Response::GetAcl {
                acl: Acl::open_unsafe(),
                stat: stat(),
            },
        ),
        (
            Op::GetChildren.code(),
            Response::GetChildren {
                children: vec!["a".into(), "b".into()],
            },
        ),
        (
            Op::GetChildren2.code(),
            Response::GetChildren2 {
                children: vec!["a".into()],
                stat: stat(),
            },
        ),
        (Op::Sync.code(), Response::Sync { path: "/".into() }),
        (
            Op::Multi.code(),
            Response::Multi(vec![
                MultiResult::Create { path: "/m".into() },
                MultiResult::Create2 {
                    path: "/n".into(),
                    stat: stat(),
                },
                MultiResult::SetData { stat: stat() },
                MultiResult::Delete,
                MultiResult::Check,
                MultiResult::Error(-101),
            ]),
        ),
        (
            Op::MultiRead.code(),
            Response::Multi(vec![
                MultiResult::GetData {
                    data: b"d".to_vec().into(),
                    stat: stat(),
                },
                MultiResult::GetChildren {
                    children: vec!["c".into()],
                },
                MultiResult::Error(-101),
            ]),
        ),
        (
            Op::GetEphemerals.code(),
            Response::GetEphemerals {
                paths: vec!["/e".into()],
            },
        ),
        (
            Op::GetAllChildrenNumber.code(),
            Response::GetAllChildrenNumber { total: 7 },
        ),
        (
            Op::WhoAmI.code(),
            Response::WhoAmI {
                client_info: vec![ClientInfo {
                    auth_scheme: "ip".into(),
                    user: "127.0.0.1".into(),
                }],
            },
        ),
        (Op::AddWatch.code(), Response::AddWatch),
    ]
}

fn proto_seeds(dir: &Path) -> Result<usize> {
    let mut n = 0;
    let connect = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0x1_0000_0005,
        timeout_ms: 30_000,
        session_id: 0,
        passwd: vec![0; 16],
        read_only: false,
    };
    // A whole connection: the handshake and then every request.
    let mut stream = BytesMut::new();
    write_frame(&mut stream, |b| connect.write(b));
    for (xid, request) in requests().iter().enumerate() {
        request.write_frame(xid as i32 + 1, &mut stream);
        // The request alone, as an unframed payload (the harness also decodes the whole input
        // as one frame).
        let mut alone = Vec::new();
        request.encode(xid as i32 + 1, &mut alone);
        write_seed(dir, &format!("request-{:02}", xid), &alone)?;
        n += 1;
    }
    write_seed(dir, "connection", &stream)?;
    n += 1;
    let mut connect_only = Vec::new();
    connect.write(&mut connect_only);
    write_seed(dir, "connect", &connect_only)?;
    n += 1;
    // Replies: the harness takes the op from the reply header's xid field.
    for (i, (op, response)) in responses().iter().enumerate() {
        let mut reply = Vec::new();
        ReplyHeader {
            xid: *op,
            zxid: 9,
            err: 0,
        }
        .write(&mut reply);
        response.encode(&mut reply);
        write_seed(dir, &format!("reply-{i:02}"), &reply)?;
        n += 1;
    }
    write_seed(dir, "ruok", b"ruok")?;
    Ok(n + 1)
}

/// Prepares `writes` one after another on a fresh tree, applying each; returns each txn's
/// bytes and the tree after each.
fn run_writes(writes: &[Write]) -> (Vec<Vec<u8>>, Vec<Tree>) {
    let mut tree = Tree::new();
    let mut prep = Prep::new();
    let mut txns = Vec::new();
    let mut trees = vec![tree.clone()];
    let caller = Caller {
        session_id: 0x77,
        ids: &[],
        is_super: false,
    };
    for (i, write) in writes.iter().enumerate() {
        let zxid = Zxid::from_u64(0x1_0000_0000 + i as u64 + 1);
        match prep.prepare(&tree, &caller, write, zxid, 1_700_000_000_000 + i as i64) {
            Ok(txn) => {
                let bytes = txn.encode();
                let _ = tree.apply(zxid, &bytes);
                prep.applied(zxid);
                txns.push(bytes);
                trees.push(tree.clone());
            }
            Err(rejection) => eprintln!("seed write {i} rejected: {rejection:?}"),
        }
    }
    (txns, trees)
}

fn znode_writes() -> Vec<Write> {
    let acl = Acl::open_unsafe();
    let create = |path: &str, mode: CreateMode, ttl: Option<i64>, container: bool| Write::Create {
        path: path.into(),
        data: "data".into(),
        acl: acl.clone(),
        mode: mode.code(),
        ttl,
        container,
    };
    vec![
        Write::CreateSession {
            session_id: 0x77,
            timeout_ms: 30_000,
            passwd: vec![7; 16],
        },
        create("/app", CreateMode::Persistent, None, false),
        create("/app/e", CreateMode::Ephemeral, None, false),
        create("/app/s-", CreateMode::PersistentSequential, None, false),
        create("/box", CreateMode::Container, None, true),
        create("/box/c", CreateMode::Persistent, None, false),
        create("/ttl", CreateMode::PersistentWithTtl, Some(1), false),
        Write::SetData {
            path: "/app".into(),
            data: "v2".into(),
            version: 0,
        },
        Write::SetAcl {
            path: "/app".into(),
            acl: vec![
                Acl {
                    perms: 31,
                    id: Id::new("world", "anyone"),
                },
                Acl {
                    perms: 1,
                    id: Id::new("ip", "10.0.0.1"),
                },
            ],
            version: 0,
        },
        Write::Multi(vec![
            create("/m", CreateMode::Persistent, None, false),
            Write::Check {
                path: "/m".into(),
                version: 0,
            },
            Write::SetData {
                path: "/m".into(),
                data: "x".into(),
                version: 0,
            },
            Write::Delete {
                path: "/m".into(),
                version: 1,
            },
        ]),
        Write::Delete {
            path: "/box/c".into(),
            version: -1,
        },
        Write::Reap {
            path: "/box".into(),
        },
        Write::CloseSession { session_id: 0x77 },
    ]
}

fn znode_seeds(root: &Path) -> Result<usize> {
    let (txns, trees) = run_writes(&znode_writes());
    let txn_dir = root.join("znode_txn");
    let snap_dir = root.join("znode_snapshot");
    let mut n = 0;
    for (i, txn) in txns.iter().enumerate() {
        write_seed(&txn_dir, &format!("txn-{i:02}"), txn)?;
        n += 1;
    }
    // Histories: the first k txns, separated, so the fuzzer can mutate one step of a sequence.
    for k in [3, 7, txns.len()] {
        let mut joined = Vec::new();
        for (i, txn) in txns.iter().take(k).enumerate() {
            if i > 0 {
                joined.extend_from_slice(TXN_SEPARATOR);
            }
            joined.extend_from_slice(txn);
        }
        write_seed(&txn_dir, &format!("history-{k:02}"), &joined)?;
        n += 1;
    }
    for (i, tree) in trees.iter().enumerate().step_by(2) {
        let mut bytes = Vec::new();
        tree.snapshot().write_to(&mut bytes)?;
        write_seed(&snap_dir, &format!("tree-{i:02}"), &bytes)?;
        n += 1;
    }
    Ok(n)
}

fn engine_seeds(dir: &Path) -> Result<usize> {
    let scenarios: [(&str, Vec<Step>); 4] = [
        ("one-segment", vec![Step::Propose(5)]),
        (
            "snapshot-and-tail",
            vec![Step::Propose(4), Step::Snapshot, Step::Propose(3)],
        ),
        (
            "two-epochs",
            vec![Step::Propose(3), Step::Reopen, Step::Propose(2)],
        ),
        ("snapshot-only", vec![Step::Propose(2), Step::Snapshot]),
    ];
    let mut n = 0;
    for (name, steps) in scenarios {
        let files = engine_dir_image(&steps)?;
        // With checksum fixing the fuzzer's mutations reach the parsers; without, the
        // checksums themselves are under test.
        write_seed(
            dir,
            &format!("{name}-fixed"),
            &encode_dir(FIX_CHECKSUMS, &files),
        )?;
        write_seed(dir, &format!("{name}-raw"), &encode_dir(0, &files))?;
        // Only the log segments.
        let segments: Vec<DirFile> = files
            .into_iter()
            .filter(|f| f.kind == FileKind::Segment)
            .collect();
        write_seed(
            dir,
            &format!("{name}-segments"),
            &encode_dir(FIX_CHECKSUMS, &segments),
        )?;
        n += 3;
    }
    Ok(n)
}
