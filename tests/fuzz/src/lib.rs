//! The bodies of coord's fuzz targets, as plain functions so that the libFuzzer binaries in
//! `fuzz_targets/`, the seed generator and the fixture replay test (`cargo test` in this
//! directory) all run the same code.
//!
//! Every function takes arbitrary bytes and must return normally: a panic, a hang or a huge
//! allocation is a bug in the crate under test. The only panics here are the harness's own
//! property checks (`assert!`), each of which states a property the decoders promise.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::BytesMut;
use coord_engine::{Engine, EngineConfig, Epoch, RestoreError, Snapshot, StateMachine, Zxid};
use coord_proto::{
    decode_frame, four_letter_word, frame::JUTE_MAXBUFFER_DEFAULT, ConnectRequest, Reader,
    ReplyHeader, Request, RequestFrameError, RequestHeader, Response, WatcherEvent,
};
use coord_znode::{Caller, Prep, Tree, Txn, Write as ZWrite};

/// Frames decoded per input at most (a 1 MiB input of empty frames would otherwise be 256k).
const FRAMES_MAX: usize = 64;

// ---------------------------------------------------------------------------------------------
// proto_request
// ---------------------------------------------------------------------------------------------

/// The client port's decoders, as a server runs them on a connection's bytes:
/// four-letter-word check, framing, `ConnectRequest` for the first frame, `RequestHeader` +
/// `Request` for the rest; and, on every frame, the client-side `ReplyHeader` + `Response`
/// decoders with the op code taken from the input. The whole input is also decoded unframed.
///
/// Properties: nothing panics; a request or response that decodes re-encodes to bytes that
/// decode to the same value.
pub fn proto_request(data: &[u8]) {
    if let Some(first4) = data.get(..4) {
        let mut word = [0u8; 4];
        word.copy_from_slice(first4);
        let _ = four_letter_word(word);
    }

    // Unframed: the input is one frame's payload.
    check_frame(data, true);

    // Framed: the input is a connection's byte stream.
    let mut buf = BytesMut::from(data);
    for index in 0..FRAMES_MAX {
        match decode_frame(&mut buf, JUTE_MAXBUFFER_DEFAULT) {
            Ok(Some(frame)) => check_frame(&frame, index == 0),
            Ok(None) | Err(_) => break,
        }
    }
}

fn check_frame(frame: &[u8], first: bool) {
    if first {
        if let Ok((connect, read_only_sent)) = ConnectRequest::decode_detailed(frame) {
            let mut again = Vec::new();
            coord_proto::Record::write(&connect, &mut again);
            if !read_only_sent {
                // `write` always appends the readOnly byte.
                again.pop();
            }
            assert_eq!(
                ConnectRequest::decode_detailed(&again).ok(),
                Some((connect, read_only_sent)),
                "ConnectRequest does not round-trip"
            );
        }
    }

    match Request::decode_frame(frame) {
        Ok((header, request)) => {
            assert_eq!(
                request.op().code(),
                header.op,
                "request decoded under op {} reports op {:?}",
                header.op,
                request.op()
            );
            let mut body = Vec::new();
            request.encode_body(&mut body);
            let again = Request::decode(header.op, &body);
            assert_eq!(again.as_ref(), Ok(&request), "request does not round-trip");
        }
        Err(RequestFrameError::Body { .. } | RequestFrameError::Header(_)) => {}
        Err(_) => {}
    }

    // The op code from the request header, the body after it: the response decoders.
    if let Ok((header, body)) = RequestHeader::split(frame) {
        check_response(header.op, body);
    }
    // A reply frame: header, then a body whose op the client knows; take the op from the
    // reply's xid field so the fuzzer controls it.
    if let Ok((reply, body)) = ReplyHeader::split(frame) {
        check_response(reply.xid, body);
        let _ = Reader::new(body).read::<WatcherEvent>();
    }
}

fn check_response(op: i32, body: &[u8]) {
    if let Ok(response) = Response::decode(op, body) {
        let mut again = Vec::new();
        response.encode(&mut again);
        assert_eq!(
            Response::decode(op, &again).as_ref(),
            Ok(&response),
            "response to op {op} does not round-trip"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// znode_txn
// ---------------------------------------------------------------------------------------------

/// Separates the txns of a `znode_txn` input.
pub const TXN_SEPARATOR: &[u8] = b"#TXN#";

/// Most txns applied per input.
const TXNS_MAX: usize = 32;

/// `Txn::decode` on the whole input, then the input split at [`TXN_SEPARATOR`] into txns applied
/// in order (zxids 1, 2, ...) to one fresh [`Tree`] through [`StateMachine::apply`].
///
/// Properties: nothing panics; a txn that decodes re-encodes to the same bytes; the tree the
/// txns leave behind snapshots and restores to a tree with the same nodes.
pub fn znode_txn(data: &[u8]) {
    check_txn_bytes(data);

    let mut tree = Tree::new();
    let mut applied = 0u32;
    for chunk in split(data, TXN_SEPARATOR).take(TXNS_MAX) {
        if chunk.len() != data.len() {
            check_txn_bytes(chunk);
        }
        applied += 1;
        let _ = tree.apply(Zxid::new(Epoch(1), applied), chunk);
    }
    exercise_reads(&tree);
    check_snapshot_round_trip(&tree);
}

fn check_txn_bytes(bytes: &[u8]) {
    if let Ok(txn) = Txn::decode(bytes) {
        assert_eq!(txn.encode(), bytes, "txn does not re-encode to its bytes");
    }
}

/// Splits `data` at every occurrence of `sep`.
pub fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current.windows(sep.len()).position(|w| w == sep) {
            Some(at) => {
                rest = Some(&current[at + sep.len()..]);
                Some(&current[..at])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

const SUPER: Caller<'static> = Caller {
    session_id: 0,
    ids: &[],
    is_super: true,
};

/// Every read a server performs, on the root's children and the system nodes.
fn exercise_reads(tree: &Tree) {
    let _ = tree.node_count();
    let _ = tree.approximate_data_size();
    let _ = tree.ephemerals_by_session();
    let _ = tree.reap_candidates(i64::MAX);
    let _ = tree.reap_candidates(0);
    let _ = tree.get_all_children_number("/", &SUPER);
    for (id, _) in tree.sessions().take(8) {
        let _ = tree.get_ephemerals(id, "/");
    }
    let mut paths = vec!["/".to_string()];
    if let Ok((children, _)) = tree.get_children("/", &SUPER) {
        paths.extend(children.into_iter().take(16).map(|c| format!("/{c}")));
    }
    for path in &paths {
        let _ = tree.get_data(path, &SUPER);
        let _ = tree.get_acl(path, &SUPER);
        let _ = tree.exists(path, &SUPER);
        let _ = tree.get_children(path, &SUPER);
        let _ = tree.get_all_children_number(path, &SUPER);
    }
}

fn snapshot_bytes(tree: &Tree) -> Vec<u8> {
    let mut bytes = Vec::new();
    if let Err(err) = tree.snapshot().write_to(&mut bytes) {
        panic!("writing a snapshot to memory failed: {err}");
    }
    bytes
}

/// A tree's snapshot must restore, to a tree with as many nodes and the same last zxid.
fn check_snapshot_round_trip(tree: &Tree) -> Tree {
    let bytes = snapshot_bytes(tree);
    let mut restored = Tree::new();
    if let Err(err) = restored.restore(&mut &bytes[..]) {
        panic!("a tree built by apply does not restore from its own snapshot: {err}");
    }
    assert_eq!(restored.node_count(), tree.node_count());
    assert_eq!(restored.last_zxid(), tree.last_zxid());
    restored
}

// ---------------------------------------------------------------------------------------------
// znode_snapshot
// ---------------------------------------------------------------------------------------------

/// [`StateMachine::restore`] of a [`Tree`] from the input. When it succeeds the tree must be one
/// the server can run on: reads, snapshot round trip, and the writes the server makes on
/// start-up (closing sessions, reaping containers and TTL nodes) and later (create, setData,
/// delete under the root), prepared by [`Prep`] and applied, must not panic.
pub fn znode_snapshot(data: &[u8]) {
    let mut tree = Tree::new();
    if tree.restore(&mut &data[..]).is_err() {
        return;
    }
    exercise_reads(&tree);
    let mut tree = check_snapshot_round_trip(&tree);

    let mut writes = Vec::new();
    for (id, _) in tree.sessions().take(4) {
        writes.push(ZWrite::CloseSession { session_id: id });
    }
    for path in tree.reap_candidates(i64::MAX).into_iter().take(4) {
        writes.push(ZWrite::Reap { path });
    }
    if let Ok((children, _)) = tree.get_children("/", &SUPER) {
        for child in children.into_iter().take(4) {
            let path = format!("/{child}");
            writes.push(ZWrite::Create {
                path: format!("{path}/fuzz-"),
                data: "x".into(),
                acl: coord_proto::Acl::open_unsafe(),
                mode: coord_proto::CreateMode::PersistentSequential.code(),
                ttl: None,
                container: false,
            });
            writes.push(ZWrite::SetData {
                path: path.clone(),
                data: "y".into(),
                version: -1,
            });
            writes.push(ZWrite::Delete { path, version: -1 });
        }
    }
    writes.push(ZWrite::CreateSession {
        session_id: 0x5eed,
        timeout_ms: 30_000,
        passwd: vec![0; 16],
    });

    let mut prep = Prep::new();
    let start = tree.last_zxid();
    let mut counter = start.counter();
    for write in &writes {
        counter = counter.saturating_add(1);
        let zxid = Zxid::new(start.epoch(), counter);
        if zxid <= tree.last_zxid() {
            break;
        }
        if let Ok(txn) = prep.prepare(&tree, &SUPER, write, zxid, 1_700_000_000_000) {
            let _ = tree.apply(zxid, &txn.encode());
            prep.applied(zxid);
        }
    }
    exercise_reads(&tree);
    check_snapshot_round_trip(&tree);
}

// ---------------------------------------------------------------------------------------------
// engine_log
// ---------------------------------------------------------------------------------------------

/// The kinds of file an `engine_log` input can place in the data dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `log.<zxid>`: a txn log segment.
    Segment = 0,
    /// `snapshot.<zxid>`: a snapshot file.
    Snapshot = 1,
    /// `acceptedEpoch`.
    AcceptedEpoch = 2,
    /// `currentEpoch`.
    CurrentEpoch = 3,
}

impl FileKind {
    fn from_byte(b: u8) -> FileKind {
        match b % 4 {
            0 => FileKind::Segment,
            1 => FileKind::Snapshot,
            2 => FileKind::AcceptedEpoch,
            _ => FileKind::CurrentEpoch,
        }
    }
}

/// One file of an `engine_log` input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirFile {
    pub kind: FileKind,
    /// The zxid in the file name (segments and snapshots).
    pub zxid: u64,
    pub bytes: Vec<u8>,
}

/// Flag bit of an `engine_log` input: recompute every checksum before writing the files, so the
/// fuzzer's mutations reach the parsers behind them.
pub const FIX_CHECKSUMS: u8 = 1;

/// Most files per `engine_log` input.
const DIR_FILES_MAX: usize = 6;

/// Encodes a data dir as an `engine_log` input:
/// `flags: u8`, then per file `kind: u8 | name zxid: u64 BE | length: u32 BE | bytes`.
pub fn encode_dir(flags: u8, files: &[DirFile]) -> Vec<u8> {
    let mut out = vec![flags];
    for file in files {
        out.push(file.kind as u8);
        out.extend_from_slice(&file.zxid.to_be_bytes());
        let len = u32::try_from(file.bytes.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&file.bytes);
    }
    out
}

/// Decodes an `engine_log` input. Truncated lengths take what is left.
pub fn decode_dir(data: &[u8]) -> (u8, Vec<DirFile>) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return (0, Vec::new());
    };
    let mut files = Vec::new();
    while rest.len() >= 13 && files.len() < DIR_FILES_MAX {
        let kind = FileKind::from_byte(rest[0]);
        let zxid = u64::from_be_bytes(rest[1..9].try_into().unwrap_or([0; 8]));
        let len = u32::from_be_bytes(rest[9..13].try_into().unwrap_or([0; 4])) as usize;
        rest = &rest[13..];
        let take = len.min(rest.len());
        files.push(DirFile {
            kind,
            zxid,
            bytes: rest[..take].to_vec(),
        });
        rest = &rest[take..];
    }
    (flags, files)
}

fn put_be_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0u8; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(field)
}

/// Rewrites a segment's checksums (engine/src/log.rs's format): the 32-byte segment header's
/// crc over its first 28 bytes; each 28-byte batch header's crc over its first 24; each batch
/// body's trailing crc. Stops at the first batch that runs past the end.
pub fn fix_segment_checksums(seg: &mut [u8]) {
    const SEGMENT_HEADER: usize = 32;
    const BATCH_HEADER: usize = 28;
    if seg.len() < SEGMENT_HEADER {
        return;
    }
    let crc = crc32c::crc32c(&seg[..28]);
    put_be_u32(seg, 28, crc);
    let mut at = SEGMENT_HEADER;
    while at + BATCH_HEADER <= seg.len() {
        let crc = crc32c::crc32c(&seg[at..at + 24]);
        put_be_u32(seg, at + 24, crc);
        let body_len = be_u32(seg, at + 8) as usize;
        let body = at + BATCH_HEADER;
        let Some(end) = body.checked_add(body_len) else {
            return;
        };
        if end + 4 > seg.len() {
            return;
        }
        let crc = crc32c::crc32c(&seg[body..end]);
        put_be_u32(seg, end, crc);
        at = end + 4;
    }
}

/// Rewrites a snapshot file's trailing crc (over everything before it).
pub fn fix_snapshot_checksum(snap: &mut [u8]) {
    if snap.len() < 4 {
        return;
    }
    let end = snap.len() - 4;
    let crc = crc32c::crc32c(&snap[..end]);
    put_be_u32(snap, end, crc);
}

/// A trivial state machine: the state is the concatenation of the txns applied. A snapshot
/// whose body starts with `!` fails to restore, so that path is reachable too.
#[derive(Default)]
pub struct Blob {
    pub state: Vec<u8>,
}

/// [`Blob`]'s snapshot.
pub struct BlobSnapshot(Vec<u8>);

impl Snapshot for BlobSnapshot {
    fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
        writer.write_all(&self.0)
    }
}

/// Largest [`Blob`] state kept (the rest of the txns are only counted).
const BLOB_MAX: usize = 1 << 20;

impl StateMachine for Blob {
    type Output = usize;
    type Snapshot = BlobSnapshot;

    fn apply(&mut self, _zxid: Zxid, txn: &[u8]) -> usize {
        if self.state.len() + txn.len() <= BLOB_MAX {
            self.state.extend_from_slice(txn);
        }
        txn.len()
    }

    fn snapshot(&self) -> BlobSnapshot {
        BlobSnapshot(self.state.clone())
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
        let mut state = Vec::new();
        reader.take(BLOB_MAX as u64).read_to_end(&mut state)?;
        if state.first() == Some(&b'!') {
            return Err(RestoreError::Malformed("snapshot starts with '!'".into()));
        }
        self.state = state;
        Ok(())
    }
}

/// Where `engine_log` makes its data dirs: a tmpfs if there is one (fsync is free there).
fn scratch_root() -> std::path::PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Writes the input's files into a fresh data dir and opens an [`Engine`] with a [`Blob`] on it.
/// `Ok` or `Err`, never a panic. When it opens, one more txn must commit (the log the engine
/// recovered must accept appends) and a reopen after shutdown must succeed too.
pub fn engine_log(data: &[u8]) {
    let _opened = engine_log_opened(data);
}

/// [`engine_log`], reporting whether the engine opened on the input's data dir.
pub fn engine_log_opened(data: &[u8]) -> bool {
    let (flags, files) = decode_dir(data);
    let dir = match tempfile::Builder::new()
        .prefix("coord-fuzz-")
        .tempdir_in(scratch_root())
    {
        Ok(dir) => dir,
        Err(err) => panic!("cannot make a scratch dir: {err}"),
    };
    for mut file in files {
        let name = match file.kind {
            FileKind::Segment => {
                if flags & FIX_CHECKSUMS != 0 {
                    fix_segment_checksums(&mut file.bytes);
                }
                coord_engine::log::segment_name(Zxid::from_u64(file.zxid))
            }
            FileKind::Snapshot => {
                if flags & FIX_CHECKSUMS != 0 {
                    fix_snapshot_checksum(&mut file.bytes);
                }
                coord_engine::snapshot::snapshot_name(Zxid::from_u64(file.zxid))
            }
            FileKind::AcceptedEpoch => "acceptedEpoch".to_string(),
            FileKind::CurrentEpoch => "currentEpoch".to_string(),
        };
        if let Err(err) = fs::write(dir.path().join(name), &file.bytes) {
            panic!("cannot write a scratch file: {err}");
        }
    }
    let config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        snapshot_every_txns: 0,
    };
    let Ok(engine) = Engine::open(config.clone(), Blob::default()) else {
        return false;
    };
    let committed = engine
        .propose(|_| Ok::<_, ()>(b"fuzz".to_vec()))
        .map(|proposal| proposal.wait());
    match committed {
        Ok(Ok(_)) => {}
        other => panic!("an engine that opened cannot commit a txn: {other:?}"),
    }
    engine.shutdown();
    drop(engine);
    if let Err(err) = Engine::open(config, Blob::default()).map(|engine| engine.shutdown()) {
        panic!("an engine that opened and committed does not reopen: {err}");
    }
    true
}

/// Runs the engine with [`Blob`] in a scratch dir and returns the dir's files as an input.
pub fn engine_dir_image(steps: &[Step]) -> Result<Vec<DirFile>, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let config = EngineConfig {
        data_dir: dir.path().to_path_buf(),
        snapshot_every_txns: 0,
    };
    let mut engine = Engine::open(config.clone(), Blob::default())?;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Propose(n) => {
                for j in 0..*n {
                    let txn = format!("txn {i}.{j}").into_bytes();
                    engine
                        .propose(|_| Ok::<_, ()>(txn))
                        .map_err(|()| "propose failed")?
                        .wait()?;
                }
            }
            Step::Snapshot => {
                engine.snapshot_now()?;
            }
            Step::Reopen => {
                engine.shutdown();
                drop(engine);
                engine = Engine::open(config.clone(), Blob::default())?;
            }
        }
    }
    engine.shutdown();
    drop(engine);
    let mut files = Vec::new();
    for entry in fs::read_dir(dir.path())? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let parse = |hex: &str| u64::from_str_radix(hex, 16).ok();
        let (kind, zxid) = if let Some(z) = name.strip_prefix("log.").and_then(parse) {
            (FileKind::Segment, z)
        } else if let Some(z) = name.strip_prefix("snapshot.").and_then(parse) {
            (FileKind::Snapshot, z)
        } else if name == "acceptedEpoch" {
            (FileKind::AcceptedEpoch, 0)
        } else if name == "currentEpoch" {
            (FileKind::CurrentEpoch, 0)
        } else {
            continue;
        };
        files.push(DirFile {
            kind,
            zxid,
            bytes: fs::read(entry.path())?,
        });
    }
    files.sort_by_key(|f| (f.kind as u8, f.zxid));
    Ok(files)
}

/// One step of a scenario run by [`engine_dir_image`].
pub enum Step {
    /// Propose and wait for this many txns.
    Propose(usize),
    /// `Engine::snapshot_now`.
    Snapshot,
    /// Shut down and reopen (a new epoch, a new segment).
    Reopen,
}
