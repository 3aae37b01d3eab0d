//! The counters machine replicated by a 3-member ensemble over TCP on loopback, each member
//! with its own data dir: a Rust program replicating its own machine with the engine's
//! documented API (`Member`), knowing nothing of znodes.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use coord_engine::zab::{Config, PeerId, Role};
use coord_engine::{EngineError, ForwardReply, Member, MemberConfig};
use coord_examples::{add_txn, Counters};
use coord_transport::{TcpConfig, TcpTransport};
use tokio::time::Instant;

const TICK: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(30);

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Ensemble {
    addrs: BTreeMap<PeerId, SocketAddr>,
    dirs: BTreeMap<PeerId, PathBuf>,
    snapshot_every_txns: u64,
    members: BTreeMap<PeerId, (Member<Counters>, Counters)>,
    _root: tempfile::TempDir,
}

impl Ensemble {
    async fn start(n: u64, snapshot_every_txns: u64) -> Ensemble {
        let root = tempfile::tempdir().unwrap();
        let addrs: BTreeMap<PeerId, SocketAddr> =
            (1..=n).map(|i| (PeerId(i), free_addr())).collect();
        let dirs = addrs
            .keys()
            .map(|id| (*id, root.path().join(format!("m{}", id.0))))
            .collect();
        let mut ensemble = Ensemble {
            addrs,
            dirs,
            snapshot_every_txns,
            members: BTreeMap::new(),
            _root: root,
        };
        for i in 1..=n {
            ensemble.open(PeerId(i)).await;
        }
        ensemble
    }

    async fn open(&mut self, id: PeerId) {
        let peers = self
            .addrs
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        let transport = TcpTransport::bind(TcpConfig::new(id, self.addrs[&id], peers))
            .await
            .unwrap();
        let config = MemberConfig {
            data_dir: self.dirs[&id].clone(),
            snapshot_every_txns: self.snapshot_every_txns,
            zab: Config {
                id,
                voters: self.addrs.keys().copied().collect(),
                observers: Default::default(),
                tick: TICK,
                init_limit_ticks: 10,
                sync_limit_ticks: 5,
                diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
                diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
                // Compaction forgets what it covers, so a member behind a snapshot gets a SNAP.
                compacted_tail_txns: 0,
            },
        };
        let counters = Counters::default();
        let member = Member::open(config, counters.clone(), transport).unwrap();
        tokio::spawn(decide_forwarded(member.clone()));
        self.members.insert(id, (member, counters));
    }

    async fn stop(&mut self, id: PeerId) {
        let (member, _) = self.members.remove(&id).unwrap();
        member.shutdown().await;
    }

    /// The established leader, once every running member serves.
    async fn leader(&self) -> PeerId {
        let deadline = Instant::now() + WAIT;
        loop {
            let statuses: Vec<_> = self
                .members
                .iter()
                .map(|(id, (m, _))| (*id, m.status()))
                .collect();
            let leaders: Vec<PeerId> = statuses
                .iter()
                .filter(|(_, s)| s.role == Role::Leading && s.serving)
                .map(|(id, _)| *id)
                .collect();
            if leaders.len() == 1 && statuses.iter().all(|(_, s)| s.serving) {
                return leaders[0];
            }
            assert!(Instant::now() < deadline, "no leader: {statuses:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn add(&self, name: &str, delta: i64) -> i64 {
        let leader = self.leader().await;
        let (member, _) = &self.members[&leader];
        let (_, value) = member
            .propose(|_| add_txn(name, delta))
            .unwrap()
            .await
            .unwrap();
        value.unwrap()
    }

    /// Waits until every running member holds `expected`.
    async fn converged(&self, expected: &BTreeMap<String, i64>) {
        let deadline = Instant::now() + WAIT;
        loop {
            let all: BTreeMap<PeerId, BTreeMap<String, i64>> = self
                .members
                .iter()
                .map(|(id, (_, c))| (*id, c.all()))
                .collect();
            if all.values().all(|c| c == expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "members differ: {all:?}, want {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn shutdown(mut self) {
        let ids: Vec<PeerId> = self.members.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// The application's part on the leader: a forwarded request is `name delta`; a valid one is
/// proposed, an invalid one answered with an error.
async fn decide_forwarded(member: Member<Counters>) {
    let mut requests = member.take_forwarded().unwrap();
    while let Some(forwarded) = requests.recv().await {
        let text = String::from_utf8_lossy(&forwarded.request).into_owned();
        let parsed = text
            .split_once(' ')
            .and_then(|(name, delta)| Some((name.to_owned(), delta.parse::<i64>().ok()?)));
        let Some((name, delta)) = parsed else {
            member.answer_forwarded(&forwarded, Bytes::from_static(b"malformed"));
            continue;
        };
        let txn = add_txn(&name, delta);
        if txn.is_err() {
            member.answer_forwarded(&forwarded, Bytes::from_static(b"bad name"));
            continue;
        }
        let _ = member.propose_forwarded(&forwarded, |_| txn);
    }
}

/// The zxids (as hex) of the snapshot files in `dir`.
fn snapshots(dir: &Path) -> Vec<String> {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.strip_prefix("snapshot.")
                .filter(|hex| hex.len() == 16)
                .map(str::to_owned)
        })
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_replicate_counters_and_survive_the_leader() {
    let mut ensemble = Ensemble::start(3, 0).await;
    let mut expected = BTreeMap::new();
    for i in 0..30 {
        let value = ensemble.add("hits", i).await;
        expected.insert("hits".to_string(), value);
    }
    assert_eq!(expected["hits"], (0..30).sum::<i64>());
    ensemble.converged(&expected).await;

    // A follower refuses proposals: only the leader decides.
    let leader = ensemble.leader().await;
    let follower = *ensemble.members.keys().find(|id| **id != leader).unwrap();
    let refused = ensemble.members[&follower]
        .0
        .propose(|_| add_txn("x", 1))
        .unwrap()
        .await;
    assert!(
        matches!(refused, Err(EngineError::NotLeader)),
        "{refused:?}"
    );

    // The leader goes away; the other two elect a leader and keep committing.
    ensemble.stop(leader).await;
    let value = ensemble.add("hits", 100).await;
    expected.insert("hits".to_string(), value);
    assert_eq!(value, (0..30).sum::<i64>() + 100);
    ensemble.converged(&expected).await;

    // The old leader comes back from its disk and catches up.
    ensemble.open(leader).await;
    ensemble.leader().await;
    ensemble.converged(&expected).await;

    // Everyone restarts: what was committed is still there.
    let ids: Vec<PeerId> = ensemble.members.keys().copied().collect();
    for id in &ids {
        ensemble.stop(*id).await;
    }
    for id in &ids {
        ensemble.open(*id).await;
    }
    ensemble.leader().await;
    let value = ensemble.add("hits", 1).await;
    expected.insert("hits".to_string(), value);
    assert_eq!(value, (0..30).sum::<i64>() + 101);
    ensemble.converged(&expected).await;
    ensemble.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_is_brought_back_by_a_snapshot() {
    // Snapshots every 10 txns: the leader forgets old txns, so a member that missed them
    // cannot get a DIFF and is sent a SNAP.
    let mut ensemble = Ensemble::start(3, 10).await;
    let leader = ensemble.leader().await;
    let behind = *ensemble.members.keys().find(|id| **id != leader).unwrap();
    ensemble.stop(behind).await;
    let mut expected = BTreeMap::new();
    for i in 0..45 {
        let name = format!("c{}", i % 4);
        let value = ensemble.add(&name, 1).await;
        expected.insert(name, value);
    }
    // Members snapshot every 5 to 10 txns (at random, as ZooKeeper does); the newest are kept.
    assert!(!snapshots(&ensemble.dirs[&leader]).is_empty());
    ensemble.open(behind).await;
    ensemble.leader().await;
    ensemble.converged(&expected).await;
    // Catching up by DIFF would have applied 45 txns and written several snapshots of its own;
    // the SNAP leaves exactly the leader's, at the leader's last txn.
    let installed = snapshots(&ensemble.dirs[&behind]);
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert!(
        installed[0].ends_with("2d") || installed[0].ends_with("2e"),
        "{installed:?}"
    );

    // It restarts from the installed snapshot and still agrees.
    ensemble.stop(behind).await;
    ensemble.open(behind).await;
    let value = ensemble.add("c0", 1).await;
    expected.insert("c0".to_string(), value);
    ensemble.converged(&expected).await;
    ensemble.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_forward_writes_and_read_them_back_at_once() {
    let ensemble = Ensemble::start(3, 0).await;
    let leader = ensemble.leader().await;
    let follower = *ensemble.members.keys().find(|id| **id != leader).unwrap();
    let (member, counters) = &ensemble.members[&follower];
    for i in 1..=20 {
        let reply = member
            .forward(Bytes::from(format!("hits {i}")))
            .await
            .unwrap();
        let ForwardReply::Applied { output, .. } = reply else {
            panic!("{reply:?}");
        };
        // The output is the follower's own: its state already reflects the write.
        assert_eq!(output, Ok((1..=i).sum::<i64>()));
        assert_eq!(counters.get("hits"), (1..=i).sum::<i64>());
    }
    let refused = member
        .forward(Bytes::from_static(b"no!pe 1"))
        .await
        .unwrap();
    assert_eq!(
        refused,
        ForwardReply::Answered(Bytes::from_static(b"bad name"))
    );

    // The leader may forward to itself: the same path, decided locally.
    let (member, counters) = &ensemble.members[&leader];
    let reply = member.forward(Bytes::from_static(b"hits 1")).await.unwrap();
    assert!(
        matches!(
            reply,
            ForwardReply::Applied {
                output: Ok(211),
                ..
            }
        ),
        "{reply:?}"
    );
    assert_eq!(counters.get("hits"), 211);
    let mut expected = BTreeMap::new();
    expected.insert("hits".to_string(), 211);
    ensemble.converged(&expected).await;
    ensemble.shutdown().await;
}
