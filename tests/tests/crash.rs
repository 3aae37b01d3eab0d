//! Crash and disk-damage tests: `kill -9` under load, torn and garbage log tails, a corrupted
//! record in the middle of a log, restart from snapshots.
//!
//! The kill-under-load and snapshot tests run against ZooKeeper too (`TARGET=zookeeper`); the
//! log-file surgery is coord-specific (it edits coord's `log.<16 hex>` segments) and returns
//! early under ZooKeeper.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_system_tests::{
    connect_client, is_coord, run_coord_expecting_exit, within_deadline, CoordServer, ServerConfig,
};
use tokio::time::{sleep, timeout};
use zookeeper_client as zk;

const OPEN: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

/// A write the server acknowledged: path and value.
type Written = (String, Vec<u8>);

async fn client_for(server: &CoordServer) -> zk::Client {
    connect_client(server, Duration::from_secs(15))
        .await
        .expect("client connects")
}

/// coord's log segments in `dir`, oldest first.
fn log_segments(dir: &Path) -> Vec<PathBuf> {
    let mut segments: Vec<PathBuf> = fs::read_dir(dir)
        .expect("read data dir")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.strip_prefix("log.")
                .is_some_and(|hex| hex.len() == 16 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        })
        .collect();
    segments.sort();
    segments
}

/// coord's segment layout (documented at the top of engine/src/log.rs): a segment header, then
/// batches of [header: salt u64, body length u32, record count u32, first zxid u64, crc u32]
/// [records][body crc u32], all big-endian.
const SEGMENT_HEADER_LEN: usize = 32;
const BATCH_HEADER_LEN: usize = 28;
const BATCH_TRAILER_LEN: usize = 4;

/// A batch in a segment file.
#[derive(Debug, Clone, Copy)]
struct LogBatch {
    offset: usize,
    len: usize,
    first_zxid: i64,
}

/// Walks a segment's batches by their length fields, up to the zeros the log preallocates
/// after them.
fn log_batches(bytes: &[u8]) -> Vec<LogBatch> {
    let mut batches = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    while offset + BATCH_HEADER_LEN <= bytes.len() && bytes[offset..].iter().any(|b| *b != 0) {
        let field = |at: usize, width: usize| {
            bytes[offset + at..offset + at + width]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        let body_len = field(8, 4) as usize;
        let len = BATCH_HEADER_LEN + body_len + BATCH_TRAILER_LEN;
        assert!(
            offset + len <= bytes.len(),
            "batch at {offset} fits the file"
        );
        batches.push(LogBatch {
            offset,
            len,
            first_zxid: field(16, 8) as i64,
        });
        offset += len;
    }
    assert!(
        bytes[offset..].iter().all(|b| *b == 0),
        "segment is whole batches, then zeros"
    );
    batches
}

/// Where the batches of a segment end (preallocated zeros may follow).
fn batches_end(bytes: &[u8]) -> usize {
    log_batches(bytes)
        .last()
        .map_or(SEGMENT_HEADER_LEN, |b| b.offset + b.len)
}

/// Creates `/n/0..count` with value `v<i>` one by one; returns each node's czxid.
async fn write_nodes(client: &zk::Client, count: usize) -> Vec<i64> {
    client.create("/n", b"", &OPEN).await.expect("create /n");
    let mut czxids = Vec::with_capacity(count);
    for i in 0..count {
        let (stat, _) = client
            .create(&format!("/n/{i}"), format!("v{i}").as_bytes(), &OPEN)
            .await
            .expect("create");
        czxids.push(stat.czxid);
    }
    czxids
}

/// Asserts `/n/<i>` holds `v<i>` for every i in `range`.
async fn assert_nodes(client: &zk::Client, range: std::ops::Range<usize>) {
    for i in range {
        let (data, _) = client
            .get_data(&format!("/n/{i}"))
            .await
            .unwrap_or_else(|e| panic!("/n/{i} after restart: {e}"));
        assert_eq!(data, format!("v{i}").as_bytes(), "/n/{i}");
    }
}

/// After a repair, the server must also accept and keep new writes across another crash.
async fn assert_writes_survive_another_crash(server: &mut CoordServer) {
    let client = client_for(server).await;
    client
        .create("/after-repair", b"ok", &OPEN)
        .await
        .expect("write after repair");
    drop(client);
    server.restart().expect("second restart");
    let client = client_for(server).await;
    let (data, _) = client.get_data("/after-repair").await.expect("get");
    assert_eq!(data, b"ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill9_under_load() {
    within_deadline(async move {
        const WRITERS: usize = 4;
        let mut server = CoordServer::start().expect("server starts");
        let setup = client_for(&server).await;
        setup
            .create("/crash", b"", &OPEN)
            .await
            .expect("create /crash");

        let acked: Arc<Mutex<Vec<Written>>> = Arc::default();
        let pairs: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        let mut clients = Vec::new();
        for w in 0..WRITERS {
            let client = client_for(&server).await;
            clients.push(client.clone());
            let (acked, pairs, stop) = (acked.clone(), pairs.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                // Bounded: the server dies long before this many writes.
                for n in 0..100_000u64 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    if n % 3 == 2 {
                        let (a, b) = (format!("/crash/pa-{w}-{n}"), format!("/crash/pb-{w}-{n}"));
                        pairs.lock().expect("lock").push((a.clone(), b.clone()));
                        let mut multi = client.new_multi_writer();
                        multi.add_create(&a, b"a", &OPEN).expect("op");
                        multi.add_create(&b, b"b", &OPEN).expect("op");
                        if multi.commit().await.is_err() {
                            break;
                        }
                        let mut acked = acked.lock().expect("lock");
                        acked.push((a, b"a".to_vec()));
                        acked.push((b, b"b".to_vec()));
                    } else {
                        let path = format!("/crash/k-{w}-{n}");
                        let value = format!("value-{w}-{n}").into_bytes();
                        if client.create(&path, &value, &OPEN).await.is_err() {
                            break;
                        }
                        acked.lock().expect("lock").push((path, value));
                    }
                }
            }));
        }
        sleep(Duration::from_millis(1500)).await;
        server.kill9();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            // In-flight requests fail with connection loss; give them a moment, then cut them off.
            let abort = task.abort_handle();
            if timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
        drop(clients);
        drop(setup);
        let acked = acked.lock().expect("lock").clone();
        let pairs = pairs.lock().expect("lock").clone();
        assert!(
            acked.len() >= 20,
            "load ran: only {} acked writes",
            acked.len()
        );
        eprintln!(
            "kill -9 after {} acknowledged writes, {} multi pairs tried",
            acked.len(),
            pairs.len()
        );

        server.restart().expect("restart on the same data");
        let client = client_for(&server).await;
        for (path, value) in &acked {
            let (data, _) = client
                .get_data(path)
                .await
                .unwrap_or_else(|e| panic!("acknowledged {path} lost: {e}"));
            assert_eq!(&data, value, "{path}");
        }
        let present: HashSet<String> = client
            .list_children("/crash")
            .await
            .expect("children")
            .into_iter()
            .map(|name| format!("/crash/{name}"))
            .collect();
        for (a, b) in &pairs {
            assert_eq!(
                present.contains(a),
                present.contains(b),
                "multi half-applied: {a} present={} {b} present={}",
                present.contains(a),
                present.contains(b)
            );
        }
        let (_, stat) = client.get_children("/crash").await.expect("stat");
        assert_eq!(
            stat.num_children as usize,
            present.len(),
            "numChildren matches children"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_snapshots_keeps_every_node() {
    within_deadline(async move {
        let mut server = CoordServer::start_with(ServerConfig {
            snapshot_every_txns: Some(50),
            ..ServerConfig::default()
        })
        .expect("server starts");
        let client = client_for(&server).await;
        client.create("/n", b"", &OPEN).await.expect("create /n");
        // Pipelined in batches: each request is sent when its method is called, awaited later.
        for batch in 0..10 {
            let paths: Vec<String> = (batch * 50..batch * 50 + 50)
                .map(|i| format!("/n/{i}"))
                .collect();
            let pending: Vec<_> = paths
                .iter()
                .enumerate()
                .map(|(k, path)| {
                    let value = format!("v{}", batch * 50 + k);
                    client.create(path, value.as_bytes(), &OPEN)
                })
                .collect();
            for result in futures_join(pending).await {
                result.expect("create");
            }
        }
        client.set_data("/n/7", b"v7", Some(0)).await.expect("set");
        drop(client);
        if is_coord() {
            let snapshots = fs::read_dir(server.data_dir())
                .expect("read data dir")
                .filter(|e| {
                    e.as_ref()
                        .map(|e| e.file_name().to_string_lossy().starts_with("snapshot."))
                        .unwrap_or(false)
                })
                .count();
            assert!(snapshots >= 1, "--snapshot-every-txns 50 wrote a snapshot");
        }
        server.restart().expect("restart");
        let client = client_for(&server).await;
        let (children, stat) = client.get_children("/n").await.expect("children");
        assert_eq!(children.len(), 500);
        assert_eq!(stat.num_children, 500);
        assert_nodes(&client, 0..500).await;
        let (_, seven) = client.get_data("/n/7").await.expect("get");
        assert_eq!(
            seven.version, 1,
            "a set after the snapshot is replayed from the log"
        );
        drop(client);
        assert_writes_survive_another_crash(&mut server).await;
    })
    .await;
}

/// Awaits futures one after another (the client sent their requests when they were made).
async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut out = Vec::with_capacity(futures.len());
    for f in futures {
        out.push(f.await);
    }
    out
}

/// coord-specific: a last batch cut short (a crash mid-write) is dropped at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_record_is_truncated_at_startup() {
    within_deadline(async move {
        if !is_coord() {
            eprintln!("coord-specific (edits coord log segments): not run against ZooKeeper");
            return;
        }
        let mut server = CoordServer::start().expect("server starts");
        let client = client_for(&server).await;
        write_nodes(&client, 100).await;
        drop(client);
        server.kill9();
        let segments = log_segments(server.data_dir());
        let last = segments.last().expect("a log segment exists");
        let mut bytes = fs::read(last).expect("read segment");
        let end = batches_end(&bytes);
        assert!(
            end > SEGMENT_HEADER_LEN + BATCH_HEADER_LEN,
            "log segment has batches"
        );
        // The last 3 bytes of the last batch never reached the disk.
        bytes[end - 3..end].fill(0);
        fs::write(last, &bytes).expect("write segment");

        server.restart().expect("serves after a torn tail");
        let client = client_for(&server).await;
        // Everything before the torn batch is intact; the torn one (the last create) may be gone.
        assert_nodes(&client, 0..99).await;
        drop(client);
        assert_writes_survive_another_crash(&mut server).await;
    })
    .await;
}

/// coord-specific: garbage after the last record (a torn write of junk) is dropped at start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_the_last_record_is_dropped_at_startup() {
    within_deadline(async move {
        if !is_coord() {
            eprintln!("coord-specific (edits coord log segments): not run against ZooKeeper");
            return;
        }
        let mut server = CoordServer::start().expect("server starts");
        let client = client_for(&server).await;
        write_nodes(&client, 100).await;
        drop(client);
        server.kill9();
        let segments = log_segments(server.data_dir());
        let last = segments.last().expect("a log segment exists");
        let garbage: Vec<u8> = (0..37u8)
            .map(|i| i.wrapping_mul(97).wrapping_add(13))
            .collect();
        let mut bytes = fs::read(last).expect("read segment");
        let end = batches_end(&bytes);
        bytes.truncate(end);
        bytes.extend_from_slice(&garbage);
        fs::write(last, &bytes).expect("write segment");

        server.restart().expect("serves after garbage at the tail");
        let client = client_for(&server).await;
        assert_nodes(&client, 0..100).await;
        drop(client);
        assert_writes_survive_another_crash(&mut server).await;
    })
    .await;
}

/// coord-specific: a batch that fails its checksum with valid batches after it is corruption,
/// not a torn write: start-up fails, naming the segment file and the batch's byte offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_middle_record_stops_startup_naming_file_and_offset() {
    within_deadline(async move {
        if !is_coord() {
            eprintln!("coord-specific (edits coord log segments): not run against ZooKeeper");
            return;
        }
        let mut server = CoordServer::start().expect("server starts");
        let client = client_for(&server).await;
        let czxids = write_nodes(&client, 200).await;
        drop(client);
        server.kill9();

        // Find the batch holding an early create, by the batches' first zxids; a later batch
        // in the same segment must follow it.
        let target = czxids[5];
        let (segment, batch, bytes) = log_segments(server.data_dir())
            .into_iter()
            .find_map(|path| {
                let bytes = fs::read(&path).expect("read segment");
                let batches = log_batches(&bytes);
                let index = batches.iter().rposition(|b| b.first_zxid <= target)?;
                let next = batches.get(index + 1)?;
                assert!(next.first_zxid > target, "batches in zxid order");
                Some((path, batches[index], bytes))
            })
            .expect("the batch holding /n/5 is followed by another in its segment");
        // Flip the last byte of that batch's body (a payload byte of its last record).
        let flip_at = batch.offset + batch.len - BATCH_TRAILER_LEN - 1;
        assert!(
            flip_at >= batch.offset + BATCH_HEADER_LEN,
            "batch has a body"
        );
        let batch_start = batch.offset;
        let mut damaged = bytes.clone();
        damaged[flip_at] ^= 0x5A;
        fs::write(&segment, &damaged).expect("write damaged segment");

        let exited = run_coord_expecting_exit(
            server.data_dir(),
            &ServerConfig::default(),
            Duration::from_secs(20),
        )
        .expect("coord exits by itself on a corrupt log");
        eprintln!("corrupt log: {}; stderr:\n{}", exited.status, exited.stderr);
        assert!(
            !exited.status.success(),
            "exit status is non-zero: {}",
            exited.status
        );
        let file_name = segment
            .file_name()
            .and_then(|n| n.to_str())
            .expect("file name");
        assert!(
            exited.stderr.contains(file_name),
            "stderr names the segment {file_name}:\n{}",
            exited.stderr
        );
        let decimal = batch_start.to_string();
        let hex = format!("{batch_start:#x}");
        assert!(
            exited.stderr.contains(&decimal) || exited.stderr.contains(&hex),
            "stderr names the corrupt batch's offset {decimal} ({hex}):\n{}",
            exited.stderr
        );
        // It must not have "repaired" the log by cutting valid records off.
        assert_eq!(
            fs::read(&segment).expect("read"),
            damaged,
            "a corrupt log is left untouched"
        );
    })
    .await;
}
