//! A cluster of Zab cores driven by hand: messages are delivered in order and appends are
//! durable at once, except where a scenario holds them back (`slow`, `cut`, `step`). Every
//! delivery and every action that changes a member's disk or role is written to `trace`, so
//! scripted scenarios can pin the exact exchange.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::time::Duration;

use coord_engine::zab::{Action, Config, Durable, EpochFile, Message, PeerId, Replica, Role};
use coord_engine::{Bytes, Epoch, Zxid};

pub const TICK: Duration = Duration::from_millis(50);

/// What survives a crash.
#[derive(Default, Clone)]
pub struct Disk {
    pub accepted: Epoch,
    pub current: Epoch,
    /// The state machine's image at the snapshot: the txns applied up to it.
    pub snapshot: Vec<(Zxid, Bytes)>,
    pub log: Vec<(Zxid, Bytes)>,
    pub suspect: bool,
}

impl Disk {
    pub fn snapshot_zxid(&self) -> Zxid {
        self.snapshot.last().map_or(Zxid::ZERO, |(z, _)| *z)
    }
}

pub struct Cluster {
    pub voters: BTreeSet<PeerId>,
    pub observers: BTreeSet<PeerId>,
    pub replicas: BTreeMap<PeerId, Replica>,
    pub disks: BTreeMap<PeerId, Disk>,
    pub applied: BTreeMap<PeerId, Vec<(Zxid, Bytes)>>,
    /// Appends not yet durable, per member; fsynced at once unless the member is in `slow`.
    pub unsynced: BTreeMap<PeerId, Vec<(Zxid, Bytes)>>,
    pub slow: BTreeSet<PeerId>,
    /// Links that drop everything (from, to).
    pub cut: BTreeSet<(PeerId, PeerId)>,
    /// Kinds of message (as `message_line` names them) that are lost on every link.
    pub lost_kinds: BTreeSet<String>,
    pub inflight: VecDeque<(PeerId, PeerId, Message)>,
    /// Every message sent, for scenarios that check what went out.
    pub sent: Vec<(PeerId, PeerId, Message)>,
    /// What happened since the last `take_trace`, one line per event.
    pub trace: Vec<String>,
    pub now: Duration,
    /// The members' tick; `run` also wakes a member at the time `poll_timeout` asks for.
    pub tick: Duration,
    next_tick: Duration,
    pub diff_txns_max: usize,
    /// Txns a compaction keeps in memory; 0 (the default here) lets scenarios force a SNAP.
    pub compacted_tail_txns: usize,
}

impl Cluster {
    pub fn new(voters: u64, observers: u64) -> Cluster {
        Cluster::with_disks(voters, observers, TICK, Disk::default())
    }

    /// A cluster whose members tick every `tick` and all start from a copy of `disk`.
    pub fn with_disks(voters: u64, observers: u64, tick: Duration, disk: Disk) -> Cluster {
        let mut cluster = Cluster {
            voters: (1..=voters).map(PeerId).collect(),
            observers: (voters + 1..=voters + observers).map(PeerId).collect(),
            replicas: BTreeMap::new(),
            disks: BTreeMap::new(),
            applied: BTreeMap::new(),
            unsynced: BTreeMap::new(),
            slow: BTreeSet::new(),
            cut: BTreeSet::new(),
            lost_kinds: BTreeSet::new(),
            inflight: VecDeque::new(),
            sent: Vec::new(),
            trace: Vec::new(),
            now: Duration::ZERO,
            tick,
            next_tick: tick,
            diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
            compacted_tail_txns: 0,
        };
        for id in cluster.members() {
            cluster.disks.insert(id, disk.clone());
            cluster.start(id);
        }
        cluster
    }

    pub fn members(&self) -> Vec<PeerId> {
        self.voters.iter().chain(&self.observers).copied().collect()
    }

    /// Starts `id` from its disk: the machine holds the snapshot, nothing of the log yet.
    pub fn start(&mut self, id: PeerId) {
        let config = Config {
            id,
            voters: self.voters.clone(),
            observers: self.observers.clone(),
            tick: self.tick,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            diff_txns_max: self.diff_txns_max,
            diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
            compacted_tail_txns: self.compacted_tail_txns,
        };
        let disk = self.disks[&id].clone();
        let durable = Durable {
            accepted_epoch: disk.accepted,
            current_epoch: disk.current,
            snapshot_zxid: disk.snapshot_zxid(),
            log: disk.log,
            log_suspect: disk.suspect,
        };
        self.applied.insert(id, disk.snapshot);
        self.unsynced.insert(id, Vec::new());
        let replica = Replica::new(config, durable, self.now).expect("starts from its disk");
        self.replicas.insert(id, replica);
        self.drain(id);
    }

    /// Stops `id` at once: what its disk has not synced is lost, and so is what is in flight
    /// to or from it.
    pub fn crash(&mut self, id: PeerId) {
        self.replicas.remove(&id);
        self.unsynced.insert(id, Vec::new());
        self.inflight
            .retain(|(from, to, _)| *from != id && *to != id);
    }

    pub fn drain(&mut self, id: PeerId) {
        while let Some(action) = self.replicas.get_mut(&id).and_then(Replica::poll_action) {
            match action {
                Action::Send { to, message } => {
                    self.sent.push((id, to, message.clone()));
                    if !self.cut.contains(&(id, to)) {
                        self.inflight.push_back((id, to, message));
                    }
                }
                Action::PersistAcceptedEpoch(e) => {
                    self.note(id, format!("persist acceptedEpoch {}", e.0));
                    self.disks.get_mut(&id).unwrap().accepted = e;
                    self.replicas
                        .get_mut(&id)
                        .unwrap()
                        .handle_epoch_persisted(EpochFile::Accepted, e);
                }
                Action::PersistCurrentEpoch(e) => {
                    self.note(id, format!("persist currentEpoch {}", e.0));
                    self.disks.get_mut(&id).unwrap().current = e;
                    self.replicas
                        .get_mut(&id)
                        .unwrap()
                        .handle_epoch_persisted(EpochFile::Current, e);
                }
                Action::Append { zxid, txn } => {
                    self.unsynced.get_mut(&id).unwrap().push((zxid, txn));
                }
                Action::Truncate { after } => {
                    self.note(id, format!("truncate after {}", z(after)));
                    let disk = self.disks.get_mut(&id).unwrap();
                    disk.log.retain(|(z, _)| *z <= after);
                    if disk.snapshot_zxid() > after {
                        disk.snapshot.clear();
                    }
                    self.unsynced
                        .get_mut(&id)
                        .unwrap()
                        .retain(|(z, _)| *z <= after);
                }
                Action::SendSnapshot { to, epoch, zxid } => {
                    let applied = &self.applied[&id];
                    assert_eq!(
                        applied.last().map(|(z, _)| *z),
                        Some(zxid),
                        "snapshot point"
                    );
                    let data = Bytes::from(
                        applied
                            .iter()
                            .map(|(z, t)| format!("{}={}", z.as_u64(), String::from_utf8_lossy(t)))
                            .collect::<Vec<_>>()
                            .join("\n"),
                    );
                    let message = Message::Snap { epoch, zxid, data };
                    self.sent.push((id, to, message.clone()));
                    self.inflight.push_back((id, to, message));
                }
                Action::InstallSnapshot { zxid, data } => {
                    self.note(id, format!("install snapshot {}", z(zxid)));
                    let image = snapshot_image(&data);
                    self.applied.insert(id, image.clone());
                    let disk = self.disks.get_mut(&id).unwrap();
                    disk.snapshot = image;
                    disk.log.clear();
                    self.unsynced.get_mut(&id).unwrap().clear();
                }
                Action::Apply { zxid, txn } => {
                    self.note(
                        id,
                        format!("apply {} {}", z(zxid), String::from_utf8_lossy(&txn)),
                    );
                    self.applied.get_mut(&id).unwrap().push((zxid, txn));
                }
                Action::LogTrusted => {
                    self.note(id, "log trusted".to_owned());
                    self.disks.get_mut(&id).unwrap().suspect = false;
                }
                Action::RoleChanged { role, epoch } => {
                    self.note(id, format!("role {} epoch {}", role_name(role), epoch.0));
                }
                Action::Disconnect { peer } => self.note(id, format!("disconnect {peer:?}")),
                Action::Commit { .. } => {}
            }
        }
        self.fsync(id);
    }

    fn note(&mut self, id: PeerId, event: String) {
        self.trace.push(format!("{id:?}: {event}"));
    }

    /// Makes `id`'s appends durable, unless its disk is `slow`.
    pub fn fsync(&mut self, id: PeerId) {
        if self.slow.contains(&id) || !self.replicas.contains_key(&id) {
            return;
        }
        let pending: Vec<(Zxid, Bytes)> = self.unsynced.get_mut(&id).unwrap().drain(..).collect();
        if let Some((last, _)) = pending.last().cloned() {
            self.disks.get_mut(&id).unwrap().log.extend(pending);
            self.replicas.get_mut(&id).unwrap().handle_persisted(last);
            self.drain(id);
        }
    }

    /// Delivers everything in flight, then wakes whoever is due next (a tick, or a time a
    /// member asked for with `poll_timeout`), for `duration` of virtual time.
    pub fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        loop {
            while self.step() {}
            let timeout = self
                .replicas
                .values()
                .filter_map(Replica::poll_timeout)
                .filter(|at| *at > self.now)
                .min();
            let next = timeout.map_or(self.next_tick, |at| at.min(self.next_tick));
            if next > end {
                self.now = end;
                return;
            }
            self.now = next;
            let ticking = next == self.next_tick;
            if ticking {
                self.next_tick += self.tick;
            }
            for id in self.members() {
                let now = self.now;
                if let Some(replica) = self.replicas.get_mut(&id) {
                    if ticking {
                        replica.handle_tick(now);
                    } else if replica.poll_timeout() == Some(now) {
                        replica.handle_timeout(now);
                    }
                }
                self.drain(id);
            }
        }
    }

    /// Delivers the next message in flight, if any.
    pub fn step(&mut self) -> bool {
        let Some((from, to, message)) = self.inflight.pop_front() else {
            return false;
        };
        if !self.cut.contains(&(from, to)) && self.replicas.contains_key(&to) {
            let line = message_line(&message);
            if self
                .lost_kinds
                .iter()
                .any(|kind| line.starts_with(kind.as_str()))
            {
                self.trace.push(format!("{from:?} -> {to:?} lost {line}"));
                return true;
            }
            if !matches!(message, Message::Ping { .. } | Message::Pong { .. }) {
                self.trace.push(format!("{from:?} -> {to:?} {line}"));
            }
            self.replicas
                .get_mut(&to)
                .unwrap()
                .handle_message(from, message);
            self.drain(to);
        }
        true
    }

    pub fn leader(&self) -> Option<PeerId> {
        self.replicas
            .iter()
            .find(|(_, r)| r.established_epoch().is_some())
            .map(|(id, _)| *id)
    }

    pub fn write(&mut self, txn: &str) -> Zxid {
        let leader = self.leader().expect("an established leader");
        let zxid = self
            .replicas
            .get_mut(&leader)
            .unwrap()
            .handle_propose(Bytes::from(txn.to_owned()))
            .expect("the leader proposes");
        self.drain(leader);
        zxid
    }

    /// Writes `id`'s applied state as its snapshot and drops the log it covers, as the
    /// runtime's compaction does.
    pub fn compact(&mut self, id: PeerId) -> Zxid {
        let image = self.applied[&id].clone();
        let at = image.last().map_or(Zxid::ZERO, |(z, _)| *z);
        let disk = self.disks.get_mut(&id).unwrap();
        disk.snapshot = image;
        disk.log.retain(|(z, _)| *z > at);
        self.replicas.get_mut(&id).unwrap().handle_compacted(at);
        self.drain(id);
        at
    }

    pub fn isolate(&mut self, id: PeerId) {
        for other in self.members() {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
        self.lost_kinds.clear();
    }

    pub fn take_trace(&mut self) -> Vec<String> {
        std::mem::take(&mut self.trace)
    }

    /// One line per member: its role, epochs, log, commit point and applied txns.
    pub fn state(&self) -> String {
        let mut out = String::new();
        for id in self.members() {
            let disk = &self.disks[&id];
            let _ = write!(out, "{id:?}: ");
            match self.replicas.get(&id) {
                None => out.push_str("down"),
                Some(r) => {
                    let role = match (r.role(), r.established_epoch()) {
                        (Role::Leading, Some(epoch)) => format!("leading established {}", epoch.0),
                        (Role::Leading, None) => "leading not established".to_owned(),
                        (role, _) => role_name(role),
                    };
                    let _ = write!(
                        out,
                        "{role} logged={} committed={}",
                        z(r.last_persisted()),
                        z(r.last_committed())
                    );
                }
            }
            let _ = write!(
                out,
                " | disk accepted={} current={} snapshot={} log={}",
                disk.accepted.0,
                disk.current.0,
                z(disk.snapshot_zxid()),
                disk.log.last().map_or("-".to_owned(), |(zx, _)| z(*zx))
            );
            if disk.suspect {
                out.push_str(" suspect");
            }
            if self.replicas.contains_key(&id) {
                let _ = write!(out, " | applied [{}]", txns(&self.applied[&id]).join(" "));
            }
            out.push('\n');
        }
        out
    }
}

/// A zxid as `epoch.counter`.
pub fn z(zxid: Zxid) -> String {
    format!("{}.{}", zxid.epoch().0, zxid.counter())
}

pub fn txns(applied: &[(Zxid, Bytes)]) -> Vec<String> {
    applied
        .iter()
        .map(|(_, t)| String::from_utf8_lossy(t).into_owned())
        .collect()
}

pub fn role_name(role: Role) -> String {
    match role {
        Role::Looking => "looking".to_owned(),
        Role::Leading => "leading".to_owned(),
        Role::Following { leader } => format!("following {leader:?}"),
        Role::Observing { leader } => format!("observing {leader:?}"),
    }
}

/// A message on one line, zxids as `epoch.counter`, txns and snapshots by their text.
pub fn message_line(message: &Message) -> String {
    let text = |b: &Bytes| String::from_utf8_lossy(b).replace('\n', ",");
    match message {
        Message::Notification { vote, round, state } => format!(
            "NOTIFICATION vote={:?}@{}/{} round={round} {state:?}",
            vote.leader,
            vote.epoch.0,
            z(vote.zxid)
        ),
        Message::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer,
        } => format!(
            "{} accepted={} last={}",
            if *observer {
                "OBSERVERINFO"
            } else {
                "FOLLOWERINFO"
            },
            accepted_epoch.0,
            z(*last_zxid)
        ),
        Message::LeaderInfo { epoch } => format!("LEADERINFO epoch={}", epoch.0),
        Message::AckEpoch {
            epoch,
            current_epoch,
            last_zxid,
            fresh,
        } => format!(
            "ACKEPOCH epoch={} current={} last={} fresh={fresh}",
            epoch.0,
            current_epoch.0,
            z(*last_zxid)
        ),
        Message::Diff { zxid, .. } => format!("DIFF {}", z(*zxid)),
        Message::Trunc { to, .. } => format!("TRUNC {}", z(*to)),
        Message::Snap { zxid, data, .. } => {
            format!(
                "SNAP {} [{}]",
                z(*zxid),
                txns(&snapshot_image(data)).join(" ")
            )
        }
        Message::NewLeader { zxid, .. } => format!("NEWLEADER {}", z(*zxid)),
        Message::UpToDate { committed, .. } => format!("UPTODATE committed={}", z(*committed)),
        Message::Proposal { zxid, txn, .. } => format!("PROPOSAL {} {}", z(*zxid), text(txn)),
        Message::Ack { zxid, .. } => format!("ACK {}", z(*zxid)),
        Message::Commit { zxid, .. } => format!("COMMIT {}", z(*zxid)),
        Message::Inform { zxid, txn, .. } => format!("INFORM {} {}", z(*zxid), text(txn)),
        Message::Ping { committed, .. } => format!("PING committed={}", z(*committed)),
        Message::Pong { .. } => "PONG".to_owned(),
    }
}

/// The txns a snapshot of this harness holds (`SendSnapshot` writes one per line).
fn snapshot_image(data: &Bytes) -> Vec<(Zxid, Bytes)> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(z, t)| {
            (
                Zxid::from_u64(z.parse().unwrap()),
                Bytes::from(t.to_owned()),
            )
        })
        .collect()
}
