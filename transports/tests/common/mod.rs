//! A member of a test ensemble: the Zab core driven by a transport, storage in memory (every
//! append durable at once), shared by the transports' ensemble tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use coord_engine::zab::{Action, Config, Durable, EpochFile, Message, Replica};
use coord_transport::{Event, PeerId, Stream, Transport};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub const TICK: Duration = Duration::from_millis(50);

/// What a member reports to the test.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub established: bool,
    pub applied: Vec<Bytes>,
}

/// Runs one member until `stop` fires: the transport's events and the clock in, the core's
/// actions out, storage in memory (every append is durable at once).
pub async fn member<T: Transport>(
    id: PeerId,
    voters: BTreeSet<PeerId>,
    mut transport: T,
    mut writes: mpsc::Receiver<Bytes>,
    status: watch::Sender<Status>,
    mut stop: watch::Receiver<bool>,
) {
    let config = Config {
        id,
        voters,
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

pub struct Member {
    pub writes: mpsc::Sender<Bytes>,
    pub status: watch::Receiver<Status>,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts member `id` of `voters` on `transport`.
pub fn spawn<T: Transport>(id: u64, voters: BTreeSet<PeerId>, transport: T) -> Member {
    let (writes, writes_rx) = mpsc::channel(1024);
    let (status_tx, status) = watch::channel(Status::default());
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(member(
        PeerId(id),
        voters,
        transport,
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
pub async fn until(
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

pub fn leader(members: &BTreeMap<u64, Member>) -> Option<u64> {
    members
        .iter()
        .find(|(_, m)| m.status.borrow().established)
        .map(|(id, _)| *id)
}
