//! A 3-member ensemble of real `coord` processes on loopback, driven by the `zookeeper-client`
//! crate: reads and writes through any member, `kill -9` of the leader under write load, loss
//! and return of a majority, a leader paused past the session timeout, a follower brought back
//! by DIFF, by SNAP and by TRUNC, and a restart of everything. Afterwards every acknowledged write is on every
//! member and the members' trees agree.
//!
//! coord-only: the ZooKeeper target runs standalone.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_system_tests::ensemble::Ensemble;
use coord_system_tests::is_coord;
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

const OPEN: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
const SEQUENTIAL: zk::CreateOptions<'static> =
    zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
const EPHEMERAL: zk::CreateOptions<'static> =
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());

/// The tick: failover takes a few of them.
const TICK_MS: u64 = 100;
const DEADLINE: Duration = Duration::from_secs(120);

async fn connect(hosts: &str) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connected = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .with_connection_timeout(Duration::from_secs(5))
            .connect(hosts)
            .await;
        match connected {
            Ok(client) => return client,
            Err(e) if Instant::now() < deadline => {
                eprintln!("connect to {hosts}: {e}; retrying");
                sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("connect to {hosts}: {e}"),
        }
    }
}

async fn connect_to(addr: SocketAddr) -> zk::Client {
    connect(&addr.to_string()).await
}

/// The children of `path` as member `addr` holds them once it has caught up with the leader.
async fn children_on(addr: SocketAddr, path: &str) -> BTreeSet<String> {
    let client = connect_to(addr).await;
    client.sync(path).await.expect("sync");
    let children = client.list_children(path).await.expect("list");
    children.into_iter().collect()
}

/// How the running members synchronized learners so far (their `mntr` counts, summed):
/// DIFFs without a TRUNC, TRUNCs, SNAPs.
fn syncs(ensemble: &Ensemble) -> (u64, u64, u64) {
    let count = |i: usize, key: &str| -> u64 {
        ensemble
            .mntr(i, key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (0..ensemble.nodes.len())
        .filter(|i| ensemble.is_running(*i))
        .map(|i| {
            let trunc = count(i, "zk_trunc_count");
            (
                count(i, "zk_diff_count") - trunc,
                trunc,
                count(i, "zk_snap_count"),
            )
        })
        .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// Every running member holds the same children of `path`, a superset of `acked`, and, once
/// all have applied the same last txn, the same tree digest.
async fn assert_replicated(ensemble: &Ensemble, path: &str, acked: &HashSet<String>) {
    assert_same_digest(ensemble).await;
    let mut first: Option<BTreeSet<String>> = None;
    for i in 0..ensemble.nodes.len() {
        if !ensemble.is_running(i) {
            continue;
        }
        let children = children_on(ensemble.nodes[i].client_addr, path).await;
        for name in acked {
            assert!(
                children.contains(name),
                "member {} lost acknowledged {path}/{name}",
                ensemble.nodes[i].id
            );
        }
        match &first {
            None => first = Some(children),
            Some(first) => assert_eq!(first, &children, "member {} differs", ensemble.nodes[i].id),
        }
    }
}

/// Waits until every running member reports the same digest at the same zxid.
async fn assert_same_digest(ensemble: &Ensemble) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let digests: Vec<(Option<String>, Option<String>)> = (0..ensemble.nodes.len())
            .filter(|i| ensemble.is_running(*i))
            .map(|i| {
                (
                    ensemble.mntr(i, "zk_tree_digest_zxid"),
                    ensemble.mntr(i, "zk_tree_digest"),
                )
            })
            .collect();
        if digests[0].1.is_some() && digests.iter().all(|d| d == &digests[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas' trees differ: {digests:?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
}

/// Creates sequential nodes under `/load` through a client of every member until stopped,
/// recording the names acknowledged. A create that fails with a connection error may or may not
/// have happened; it is not recorded, and the client retries.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(hosts: String) -> Writer {
        let client = connect(&hosts).await;
        client
            .create("/load", b"", &OPEN)
            .await
            .expect("create /load");
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let task = {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let mut client = client;
                let mut i = 0u64;
                // Bounded by the stop flag and a cap.
                while !stop.load(Ordering::Relaxed) && i < 100_000 {
                    let data = format!("w{i}");
                    let create = client.create("/load/w-", data.as_bytes(), &SEQUENTIAL);
                    match timeout(Duration::from_secs(10), create).await {
                        Ok(Ok((_, sequence))) => {
                            let name = format!("w-{sequence}");
                            let fresh = acked.lock().unwrap().insert(name.clone());
                            assert!(fresh, "sequential name {name} given out twice");
                            i += 1;
                        }
                        Ok(Err(zk::Error::SessionExpired | zk::Error::ClientClosed)) | Err(_) => {
                            client = connect(&hosts).await;
                        }
                        Ok(Err(_)) => sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        };
        Writer { stop, acked, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    async fn wait_for(&self, n: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} writes",
                self.count()
            );
            sleep(Duration::from_millis(10)).await;
        }
    }

    async fn finish(self) -> HashSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("writer task");
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// The peer transport an ensemble test runs over: the fault tests run over both.
#[derive(Debug, Clone, Copy)]
enum Net {
    Tcp,
    Quic,
}

/// Starts 3 members over `net`; for QUIC with certificates `coord certs` writes to `certs`.
fn start_over(net: Net, certs: &Path) -> Ensemble {
    start_over_with(net, certs, TICK_MS, "")
}

/// As [`start_over`], with a tick and `extra` config lines.
fn start_over_with(net: Net, certs: &Path, tick_ms: u64, extra: &str) -> Ensemble {
    match net {
        Net::Tcp => Ensemble::start(3, tick_ms, extra).expect("ensemble starts"),
        Net::Quic => {
            let made = std::process::Command::new(coord_system_tests::coord_bin())
                .args(["certs", "--dir"])
                .arg(certs)
                .output()
                .unwrap();
            assert!(made.status.success(), "{made:?}");
            Ensemble::start_quic_with(3, tick_ms, extra, certs).expect("ensemble starts")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_through_any_member() {
    if !is_coord() {
        return;
    }
    let run = async {
        let ensemble = Ensemble::start(3, TICK_MS, "").expect("ensemble starts");
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let addrs: Vec<SocketAddr> = ensemble.nodes.iter().map(|n| n.client_addr).collect();
        let a = connect_to(addrs[0]).await;
        let b = connect_to(addrs[1]).await;
        let c = connect_to(addrs[2]).await;
        // Session ids carry the member's id in the top byte, as ZooKeeper's do.
        for (client, id) in [(&a, 1), (&b, 2), (&c, 3)] {
            assert_eq!(client.session().id().0 >> 56, id);
        }

        a.create("/x", b"1", &OPEN).await.unwrap();
        b.sync("/x").await.unwrap();
        assert_eq!(b.get_data("/x").await.unwrap().0, b"1");
        // A write through a follower is visible to its own client at once.
        let stat = b.set_data("/x", b"2", None).await.unwrap();
        assert_eq!(b.get_data("/x").await.unwrap().0, b"2");
        assert_eq!(
            c.set_data("/x", b"3", Some(stat.version + 5)).await,
            Err(zk::Error::BadVersion)
        );
        assert_eq!(a.create("/x", b"", &OPEN).await, Err(zk::Error::NodeExists));

        // A watch on one member fires for a write through another.
        c.sync("/").await.unwrap();
        let (_, _, watcher) = c.get_and_watch_data("/x").await.unwrap();
        a.set_data("/x", b"4", None).await.unwrap();
        let event = timeout(Duration::from_secs(10), watcher.changed())
            .await
            .expect("watch fires");
        assert_eq!(event.event_type, zk::EventType::NodeDataChanged);

        // Ephemerals are global, and go with their session everywhere.
        b.create("/eph", b"", &EPHEMERAL).await.unwrap();
        a.sync("/").await.unwrap();
        assert!(a.check_stat("/eph").await.unwrap().is_some());
        drop(b);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            a.sync("/").await.unwrap();
            if a.check_stat("/eph").await.unwrap().is_none() {
                break;
            }
            assert!(Instant::now() < deadline, "ephemeral outlived its session");
            sleep(Duration::from_millis(50)).await;
        }

        // Multi through a follower, decided by the leader.
        let follower = (0..3).find(|i| *i != leader).unwrap();
        let f = connect_to(addrs[follower]).await;
        let mut multi = f.new_multi_writer();
        multi.add_create("/m1", b"", &OPEN).unwrap();
        multi.add_create("/m2", b"", &OPEN).unwrap();
        multi.commit().await.unwrap();
        assert_eq!(ensemble.mode(leader).as_deref(), Some("leader"));
        for addr in &addrs {
            let on = children_on(*addr, "/").await;
            assert!(
                on.contains("m1") && on.contains("m2") && on.contains("x"),
                "{on:?}"
            );
        }
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_loses_no_acknowledged_write() {
    kill_the_leader_under_load(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_under_load_over_quic_loses_no_acknowledged_write() {
    kill_the_leader_under_load(Net::Quic).await;
}

async fn kill_the_leader_under_load(net: Net) {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let ensemble = start_over(net, certs.path());
    timeout(DEADLINE, killed_leader(ensemble))
        .await
        .expect("test deadline");
}

async fn killed_leader(mut ensemble: Ensemble) {
    {
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let follower = (0..3).find(|i| *i != leader).unwrap();
        // A session on a member that survives keeps its ephemeral through the failover.
        let survivor = connect_to(ensemble.nodes[follower].client_addr).await;
        survivor.create("/alive", b"", &EPHEMERAL).await.unwrap();
        let session = survivor.session().id();

        let writer = Writer::start(ensemble.connect_string()).await;
        writer.wait_for(100, "before the kill").await;
        ensemble.kill9(leader);
        let killed_at = writer.count();
        writer.wait_for(killed_at + 100, "after the kill").await;
        let new_leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(new_leader, leader);

        ensemble.launch(leader).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        writer
            .wait_for(writer.count() + 50, "after the restart")
            .await;
        let acked = writer.finish().await;
        assert_replicated(&ensemble, "/load", &acked).await;

        assert_eq!(survivor.session().id(), session);
        survivor.sync("/").await.unwrap();
        assert!(survivor.check_stat("/alive").await.unwrap().is_some());
        let counts: Vec<Option<String>> =
            (0..3).map(|i| ensemble.mntr(i, "zk_znode_count")).collect();
        assert!(counts.iter().all(|c| c == &counts[0]), "{counts:?}");
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ensemble.mntr(leader, "zk_synced_followers").as_deref(),
            Some("2")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_majority_stops_service_until_a_quorum_is_back() {
    lost_majority(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_majority_over_quic_stops_service_until_a_quorum_is_back() {
    lost_majority(Net::Quic).await;
}

async fn lost_majority(net: Net) {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let run = async {
        let mut ensemble = start_over(net, certs.path());
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let client = connect(&ensemble.connect_string()).await;
        client.create("/before", b"", &OPEN).await.unwrap();
        drop(client);

        let survivor = (0..3).find(|i| *i != leader).unwrap();
        for i in 0..3 {
            if i != survivor {
                ensemble.kill9(i);
            }
        }
        // Alone, the survivor gives up its leader and refuses clients.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ensemble.mode(survivor).is_some() {
            assert!(Instant::now() < deadline, "a lone member kept serving");
            sleep(Duration::from_millis(50)).await;
        }
        let refused = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .with_connection_timeout(Duration::from_secs(1))
            .connect(&ensemble.nodes[survivor].client_addr.to_string())
            .await;
        assert!(refused.is_err(), "a member without a quorum took a session");

        // One member back makes a quorum: writes go through again, nothing was lost.
        let back = (0..3).find(|i| *i != survivor).unwrap();
        ensemble.launch(back).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let client = connect(&ensemble.nodes[survivor].client_addr.to_string()).await;
        client.create("/after", b"", &OPEN).await.unwrap();
        client.sync("/").await.unwrap();
        assert!(client.check_stat("/before").await.unwrap().is_some());
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_and_rejoins_as_a_follower() {
    paused_leader(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_over_quic_is_replaced_and_rejoins_as_a_follower() {
    paused_leader(Net::Quic).await;
}

async fn paused_leader(net: Net) {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let run = async {
        let mut ensemble = start_over(net, certs.path());
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let writer = Writer::start(ensemble.connect_string()).await;
        writer.wait_for(50, "before the pause").await;
        // Longer than the session timeout (6 s) and the sync limit.
        ensemble.pause(leader);
        let paused_at = writer.count();
        writer
            .wait_for(paused_at + 50, "while the leader is paused")
            .await;
        sleep(Duration::from_secs(7)).await;
        ensemble.resume(leader);
        let new_leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(new_leader, leader, "the paused leader came back as leader");
        writer
            .wait_for(writer.count() + 50, "after the resume")
            .await;
        let acked = writer.finish().await;
        assert_replicated(&ensemble, "/load", &acked).await;
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_come_back_by_diff_and_by_snapshot_and_everything_restarts() {
    diff_snap_restart(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_over_quic_come_back_by_diff_and_by_snapshot_and_everything_restarts() {
    diff_snap_restart(Net::Quic).await;
}

/// Over QUIC this needs a restarted member to be back at once: its peers' connections to its
/// former self must be reset at their first packet (same stateless-reset and connection-id
/// keys in every run), or it is back only after a keep-alive check, and the writer's txns in
/// that time pass the leader's compacted tail, so the "short" absence comes back by SNAP.
async fn diff_snap_restart(net: Net) {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let run = async {
        // Snapshots every 40 txns: the leader forgets old txns, so a member that missed more
        // than that is sent a snapshot.
        let mut ensemble = start_over_with(net, certs.path(), TICK_MS, "snapshot_every_txns = 40");
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let follower = (0..3).find(|i| *i != leader).unwrap();
        let writer = Writer::start(ensemble.connect_string()).await;
        writer.wait_for(10, "warm-up").await;

        // A short absence: caught up from the leader's log.
        let before = syncs(&ensemble);
        ensemble.kill9(follower);
        writer
            .wait_for(writer.count() + 15, "while a follower is down")
            .await;
        ensemble.launch(follower).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let after = syncs(&ensemble);
        assert!(after.0 > before.0, "no DIFF: {before:?} -> {after:?}");
        assert_eq!(after.2, before.2, "a SNAP for a short absence");

        // A long one: the leader compacted past it, and more than the txns it keeps in memory
        // for DIFFs (16 MiB) went by. Big nodes make the snapshot many chunks.
        ensemble.kill9(follower);
        let big = connect(&ensemble.connect_string()).await;
        let blob = vec![b'b'; 900 * 1024];
        for i in 0..24 {
            big.create(&format!("/big{i}"), &blob, &OPEN).await.unwrap();
        }
        writer
            .wait_for(writer.count() + 200, "while a follower is far behind")
            .await;
        let before = syncs(&ensemble);
        ensemble.launch(follower).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        writer
            .wait_for(writer.count() + 20, "after it is back")
            .await;
        let after = syncs(&ensemble);
        assert!(after.2 > before.2, "no SNAP: {before:?} -> {after:?}");
        let acked = writer.finish().await;
        assert_replicated(&ensemble, "/load", &acked).await;
        let back = connect_to(ensemble.nodes[follower].client_addr).await;
        back.sync("/").await.unwrap();
        assert_eq!(back.get_data("/big23").await.unwrap().0, blob);

        // Everyone down at once, then back: every acknowledged write is still there.
        for i in 0..3 {
            ensemble.kill9(i);
        }
        for i in 0..3 {
            ensemble.launch(i).unwrap();
        }
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_replicated(&ensemble, "/load", &acked).await;
        let client = connect(&ensemble.connect_string()).await;
        client.create("/after-restart", b"", &OPEN).await.unwrap();
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}

/// PITFALLS 7 with real processes: a leader logs a write its followers never read (they are
/// stopped, then killed with it unread in their sockets) and dies; the others go on without
/// it. Back, the old leader is cut back by a TRUNC: the write is nowhere, every acknowledged
/// one everywhere, and the trees agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_leader_is_truncated_back_to_the_history_that_went_on() {
    truncated_leader(Net::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_leader_over_quic_is_truncated_back_to_the_history_that_went_on() {
    truncated_leader(Net::Quic).await;
}

async fn truncated_leader(net: Net) {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let run = async {
        // A tick long enough that the leader, its followers stopped, keeps leading (for
        // syncLimit, 5 ticks) until it has logged the write.
        let mut ensemble = start_over_with(net, certs.path(), 500, "");
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        let client = connect(&ensemble.connect_string()).await;
        client.create("/t", b"", &OPEN).await.unwrap();
        client.create("/t/before", b"", &OPEN).await.unwrap();
        let on_leader = connect_to(ensemble.nodes[leader].client_addr).await;
        on_leader.sync("/").await.unwrap();
        let logged = |ensemble: &Ensemble| -> u64 {
            ensemble
                .mntr(leader, "zk_txns_logged")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let logged_before = logged(&ensemble);
        for f in &followers {
            ensemble.pause(*f);
        }
        // Logged by the leader alone; it can never commit.
        let lonely = tokio::spawn(async move {
            let _ = on_leader.create("/t/never", b"", &OPEN).await;
        });
        let deadline = Instant::now() + Duration::from_secs(2);
        while logged(&ensemble) == logged_before {
            assert!(
                Instant::now() < deadline,
                "the leader never logged the lonely write"
            );
            sleep(Duration::from_millis(10)).await;
        }
        ensemble.kill9(leader);
        for f in &followers {
            ensemble.kill9(*f);
        }
        lonely.abort();
        for f in &followers {
            ensemble.launch(*f).unwrap();
        }
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let client = connect(&ensemble.connect_string()).await;
        client.create("/t/after", b"", &OPEN).await.unwrap();
        let before = syncs(&ensemble);
        ensemble.launch(leader).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let after = syncs(&ensemble);
        assert!(after.1 > before.1, "no TRUNC: {before:?} -> {after:?}");
        let acked: HashSet<String> = ["before", "after"].map(str::to_owned).into();
        assert_replicated(&ensemble, "/t", &acked).await;
        let back = children_on(ensemble.nodes[leader].client_addr, "/t").await;
        assert!(
            !back.contains("never"),
            "an uncommitted write survived: {back:?}"
        );
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_serves_clients_and_never_counts_in_a_quorum() {
    if !is_coord() {
        return;
    }
    let run = async {
        let mut ensemble =
            Ensemble::start_with_observers(3, 1, TICK_MS, "").expect("ensemble starts");
        let observer = 3;
        assert_eq!(ensemble.mode(observer).as_deref(), Some("observer"));
        let leader = ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ensemble.mntr(leader, "zk_synced_observers").as_deref(),
            Some("1")
        );

        // A client of the observer writes (through the leader) and reads its own writes.
        let client = connect_to(ensemble.nodes[observer].client_addr).await;
        client.create("/obs", b"1", &OPEN).await.unwrap();
        assert_eq!(client.get_data("/obs").await.unwrap().0, b"1");
        let other = connect_to(ensemble.nodes[leader].client_addr).await;
        other.set_data("/obs", b"2", None).await.unwrap();
        client.sync("/obs").await.unwrap();
        assert_eq!(client.get_data("/obs").await.unwrap().0, b"2");
        drop((client, other));

        // Two voters gone: one voter and the observer are no quorum, and serve no one.
        let voters: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
        ensemble.kill9(leader);
        ensemble.kill9(voters[0]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while ensemble.mode(observer).is_some() || ensemble.mode(voters[1]).is_some() {
            assert!(
                Instant::now() < deadline,
                "a member kept serving without a quorum"
            );
            sleep(Duration::from_millis(50)).await;
        }
        // A voter back makes a quorum again; the observer serves again.
        ensemble.launch(voters[0]).unwrap();
        ensemble
            .wait_for_leader(DEADLINE)
            .unwrap_or_else(|e| panic!("{e}"));
        let client = connect_to(ensemble.nodes[observer].client_addr).await;
        client.sync("/").await.unwrap();
        assert_eq!(client.get_data("/obs").await.unwrap().0, b"2");
    };
    timeout(DEADLINE, run).await.expect("test deadline");
}
