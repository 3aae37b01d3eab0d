//! The Zab core over the TCP transport on loopback: three members, each a task that owns its
//! replica, elect a leader, commit writes, and survive the leader's transport going away.
//! Storage is in memory here (the durable runtime is a later step); what is under test is
//! the wire form, the two streams and the reset contract, end to end over real sockets.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use bytes::Bytes;
use coord_engine::zab::{Action, Config, Durable, EpochFile, Message, Replica};
use coord_transport::{Event, PeerId, Stream, TcpConfig, TcpTransport, Transport};
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};

const TICK: Duration = Duration::from_millis(50);

fn free_addr() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

/// What a member reports to the test.
#[derive(Debug, Clone, Default)]
struct Status {
    established: bool,
    applied: Vec<Bytes>,
}

/// Runs one member until `stop` fires: the transport's events and the clock in, the core's
/// actions out, storage in memory (every append is durable at once).
async fn member(
    id: PeerId,
    addrs: BTreeMap<PeerId, SocketAddr>,
    mut writes: mpsc::Receiver<Bytes>,
    status: watch::Sender<Status>,
    mut stop: watch::Receiver<bool>,
) {
    let peers = addrs
        .iter()
        .filter(|(p, _)| **p != id)
        .map(|(p, a)| (*p, *a))
        .collect();
    let mut transport = TcpTransport::bind(TcpConfig::new(id, addrs[&id], peers))
        .await
        .expect("bind");
    let config = Config {
        id,
        voters: addrs.keys().copied().collect(),
        observers: Default::default(),
        tick: TICK,
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
        diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
        compacted_tail_txns: coord_engine::zab::COMPACTED_TAIL_TXNS_DEFAULT,
    };
    let started = Instant::now();
    let mut replica = Replica::new(config, Durable::default(), Duration::ZERO).expect("start");
    let mut ticks = tokio::time::interval(TICK);
    let mut applied = Vec::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => replica.handle_tick(started.elapsed()),
            event = transport.recv() => match event {
                Some(Event::Frame { from, frame, .. }) => {
                    let message = Message::decode(&frame).expect("a peer's message decodes");
                    replica.handle_message(from, message);
                }
                Some(Event::Reset { peer, stream: Stream::Replication }) => {
                    replica.handle_link_reset(peer)
                }
                Some(Event::Reset { .. }) => {}
                None => return,
            },
            Some(txn) = writes.recv() => {
                let _ = replica.handle_propose(txn);
            }
        }
        while let Some(action) = replica.poll_action() {
            match action {
                Action::Send { to, message } => {
                    let mut frame = Vec::new();
                    message.encode(&mut frame);
                    // A full queue resets the stream; the core re-syncs on the reset.
                    let _ = transport.send(to, Stream::of(&message), frame.into());
                }
                Action::Disconnect { peer } => transport.reset(peer, Stream::Replication),
                Action::PersistAcceptedEpoch(e) => {
                    replica.handle_epoch_persisted(EpochFile::Accepted, e)
                }
                Action::PersistCurrentEpoch(e) => {
                    replica.handle_epoch_persisted(EpochFile::Current, e)
                }
                Action::Append { zxid, .. } => replica.handle_persisted(zxid),
                Action::Apply { txn, .. } => applied.push(txn),
                Action::Truncate { .. }
                | Action::Commit { .. }
                | Action::RoleChanged { .. }
                | Action::SendSnapshot { .. }
                | Action::InstallSnapshot { .. }
                | Action::LogTrusted => {}
            }
        }
        let established = replica.established_epoch().is_some();
        status.send_if_modified(|s| {
            let changed = s.established != established || s.applied.len() != applied.len();
            s.established = established;
            s.applied.clone_from(&applied);
            changed
        });
    }
}

struct Member {
    writes: mpsc::Sender<Bytes>,
    status: watch::Receiver<Status>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn spawn(id: u64, addrs: &BTreeMap<PeerId, SocketAddr>) -> Member {
    let (writes, writes_rx) = mpsc::channel(64);
    let (status_tx, status) = watch::channel(Status::default());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(member(
        PeerId(id),
        addrs.clone(),
        writes_rx,
        status_tx,
        stop_rx,
    ));
    Member {
        writes,
        status,
        stop,
        task,
    }
}

/// Waits until `done` holds for the members' statuses.
async fn until(
    members: &BTreeMap<u64, Member>,
    what: &str,
    done: impl Fn(&BTreeMap<u64, Status>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now: BTreeMap<u64, Status> = members
            .iter()
            .map(|(id, m)| (*id, m.status.borrow().clone()))
            .collect();
        if done(&now) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn leader(members: &BTreeMap<u64, Member>) -> Option<u64> {
    members
        .iter()
        .find(|(_, m)| m.status.borrow().established)
        .map(|(id, _)| *id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_commit_over_tcp_and_survive_the_leader() {
    let addrs: BTreeMap<PeerId, SocketAddr> = (1..=3).map(|i| (PeerId(i), free_addr())).collect();
    let mut members: BTreeMap<u64, Member> = (1..=3).map(|i| (i, spawn(i, &addrs))).collect();
    until(&members, "a leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let first = leader(&members).unwrap();
    for i in 0..20 {
        members[&first]
            .writes
            .send(Bytes::from(format!("w{i}")))
            .await
            .unwrap();
    }
    until(&members, "20 writes everywhere", |s| {
        s.values().all(|s| s.applied.len() == 20)
    })
    .await;

    // The leader goes away: its transport closes, the others elect among themselves.
    let gone = members.remove(&first).unwrap();
    let _ = gone.stop.send(true);
    timeout(Duration::from_secs(5), gone.task)
        .await
        .unwrap()
        .unwrap();
    until(&members, "a new leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let second = leader(&members).unwrap();
    assert_ne!(second, first);
    members[&second]
        .writes
        .send(Bytes::from_static(b"after"))
        .await
        .unwrap();
    until(&members, "the write after failover", |s| {
        s.values().all(|s| s.applied.len() == 21)
    })
    .await;
    let histories: Vec<Vec<Bytes>> = members
        .values()
        .map(|m| m.status.borrow().applied.clone())
        .collect();
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[0].last(), Some(&Bytes::from_static(b"after")));
    for m in members.values() {
        let _ = m.stop.send(true);
    }
}
