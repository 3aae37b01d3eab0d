//! [`Replica`]: one member of an ensemble, through every Zab phase, without I/O.
//!
//! Election (fast leader election) → Discovery (a new epoch above every accepted one) →
//! Synchronization (DIFF, TRUNC or SNAP, then NEWLEADER) → Broadcast (PROPOSAL, ACK, COMMIT;
//! INFORM to observers). The rules of `ZAB-PITFALLS.md` are stated where they apply.
//!
//! The caller drives it: inputs are messages from peers ([`Replica::handle_message`]), clock
//! ticks ([`Replica::handle_tick`]), client txns on the leader ([`Replica::handle_propose`]) and
//! durability notices ([`Replica::handle_persisted`], [`Replica::handle_epoch_persisted`]).
//! Outputs are [`Action`]s, drained with [`Replica::poll_action`] and carried out **in order**:
//! a `Send` after an `Append` must not overtake it on its link, a `Truncate` or
//! `InstallSnapshot` is durable before the next action runs. Streams are FIFO per pair of
//! members; when one breaks, the transport says so ([`Replica::handle_link_reset`]) before it
//! delivers anything from the next one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use super::message::{Message, PeerId, PeerState, Vote};
use crate::{Epoch, Zxid};

mod election;
mod leader;
mod learner;

use election::Election;
use leader::Leader;
use learner::{Learner, LearnerPhase};

/// How long a looking member waits for a better vote once one has a quorum (ZooKeeper's
/// finalizeWait).
pub const ELECTION_FINALIZE_WAIT: Duration = Duration::from_millis(200);

/// Who is in the ensemble and how time is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub id: PeerId,
    /// The members that vote and count in quorums.
    pub voters: BTreeSet<PeerId>,
    /// The members that receive committed txns and never vote.
    pub observers: BTreeSet<PeerId>,
    /// The basic time unit (ZooKeeper's tickTime); [`Replica::handle_tick`] comes once per tick.
    pub tick: Duration,
    /// Ticks Discovery and Synchronization may take (initLimit).
    pub init_limit_ticks: u32,
    /// Ticks a leader and a follower may go without hearing each other (syncLimit).
    pub sync_limit_ticks: u32,
    /// The most txns a leader sends a learner as a DIFF (or after a TRUNC); a learner further
    /// behind gets a SNAP. The runtime must be able to hold that much for the learner while
    /// its link drains (the ensemble runtime holds up to 256 MiB per learner).
    pub diff_txns_max: usize,
    /// The most txn bytes a DIFF carries; past it, a SNAP.
    pub diff_bytes_max: usize,
    /// Txns a compaction keeps in memory below the snapshot (at most
    /// [`COMPACTED_TAIL_BYTES_MAX`] of them), so that a learner a little behind still gets a
    /// DIFF rather than a whole SNAP (ZooKeeper's `commitLogCount`).
    pub compacted_tail_txns: usize,
}

/// The default [`Config::diff_txns_max`]: what a runtime can hold for a learner while its
/// queue drains.
pub const DIFF_TXNS_MAX_DEFAULT: usize = 100_000;
/// The default [`Config::diff_bytes_max`].
pub const DIFF_BYTES_MAX_DEFAULT: usize = 64 << 20;
/// The default [`Config::compacted_tail_txns`], as ZooKeeper's.
pub const COMPACTED_TAIL_TXNS_DEFAULT: usize = 500;
/// The most txn bytes a compaction keeps in memory.
pub const COMPACTED_TAIL_BYTES_MAX: usize = 16 << 20;

impl Config {
    fn is_member(&self, peer: PeerId) -> bool {
        self.voters.contains(&peer) || self.observers.contains(&peer)
    }

    /// A strict majority of the voters.
    fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// What a member read from its disk at start: the epochs, the snapshot its state machine was
/// restored to (committed, by construction), and the durable log after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Durable {
    pub accepted_epoch: Epoch,
    pub current_epoch: Epoch,
    pub snapshot_zxid: Zxid,
    /// Txns after `snapshot_zxid`, in zxid order.
    pub log: Vec<(Zxid, Bytes)>,
    /// Recovery cut a damaged tail off the log: txns this member acknowledged may be gone. It
    /// must not vote, nor count in a quorum, until a leader has synced it (protocol-aware
    /// recovery: the lost txns come back from the peers, never from the shortened log).
    pub log_suspect: bool,
}

/// Why a member cannot start from what its disk holds (ZAB-PITFALLS 6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurableError {
    #[error("acceptedEpoch {accepted:?} is below currentEpoch {current:?}")]
    AcceptedBelowCurrent { accepted: Epoch, current: Epoch },
    #[error("acceptedEpoch {accepted:?} is below the epoch of logged zxid {zxid}")]
    AcceptedBelowLog { accepted: Epoch, zxid: Zxid },
    #[error("log zxid {zxid} does not follow {prev}")]
    LogGap { prev: Zxid, zxid: Zxid },
}

/// Which epoch file a persist notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochFile {
    Accepted,
    Current,
}

/// What a member is, as the rest of the system needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Looking,
    Following { leader: PeerId },
    Observing { leader: PeerId },
    Leading,
}

/// What a leader knows of its learners, for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Learners {
    /// Followers connected to this leader (in any phase).
    pub followers: usize,
    /// Followers in Broadcast: they acknowledged NEWLEADER.
    pub synced_followers: usize,
    pub observers: usize,
    /// Observers in Broadcast.
    pub synced_observers: usize,
    /// Learners that were sent their sync payload and have not finished syncing.
    pub pending_syncs: usize,
}

/// How a leader synchronized learners, counted since the member started (ZooKeeper's
/// `diff_count` and `snap_count`, with TRUNCs apart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Syncs {
    /// The learner's log was a prefix of the leader's: the txns after it.
    pub diff: u64,
    /// The learner had txns the leader did not: cut back, then the txns after the cut.
    pub trunc: u64,
    /// The learner was too far behind, or behind the leader's log: a snapshot.
    pub snap: u64,
}

/// Work for the caller, carried out in the order yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        to: PeerId,
        message: Message,
    },
    /// Write acceptedEpoch durably (tmp, fsync, rename, fsync dir); then
    /// [`Replica::handle_epoch_persisted`].
    PersistAcceptedEpoch(Epoch),
    /// Write currentEpoch durably; then [`Replica::handle_epoch_persisted`].
    PersistCurrentEpoch(Epoch),
    /// Append a txn to the log; report with [`Replica::handle_persisted`] once it and every
    /// earlier one are durable.
    Append {
        zxid: Zxid,
        txn: Bytes,
    },
    /// Drop every logged txn after `after` (and snapshots past it), durably, before the next
    /// action. Nothing is appended meanwhile: the core drains its appends first.
    Truncate {
        after: Zxid,
    },
    /// Send `to`, on its link in this order, `Message::Snap` with the state machine's state
    /// exactly at `zxid` (everything applied so far).
    SendSnapshot {
        to: PeerId,
        epoch: Epoch,
        zxid: Zxid,
    },
    /// Replace the state machine and the log with this snapshot, durably, before the next
    /// action; the log continues after `zxid`.
    InstallSnapshot {
        zxid: Zxid,
        data: Bytes,
    },
    /// Every txn up to `zxid` is committed.
    Commit {
        zxid: Zxid,
    },
    /// Apply this committed txn; yielded once per txn, in zxid order.
    Apply {
        zxid: Zxid,
        txn: Bytes,
    },
    /// The member's role changed. On a change the caller fails the clients' proposals that
    /// are not committed (they may still commit under a later leader).
    RoleChanged {
        role: Role,
        epoch: Epoch,
    },
    /// Close the replication stream with `peer`, dropping what is in flight both ways: the
    /// next one starts a new handshake, and nothing of the old one may reach it.
    Disconnect {
        peer: PeerId,
    },
    /// A leader synced this member after its log was suspect ([`Durable::log_suspect`]): it
    /// counts again. Forget, durably, that the log was damaged.
    LogTrusted,
}

/// Why [`Replica::handle_propose`] refused a txn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProposeError {
    #[error("not an established leader")]
    NotLeader,
    #[error("epoch {0:?} used every zxid; stepping down for a new election")]
    ZxidExhausted(Epoch),
}

#[derive(Debug)]
enum State {
    Looking(Election),
    Learning(Learner),
    Leading(Leader),
}

/// One member of a Zab ensemble. See the module docs for how to drive it.
#[derive(Debug)]
pub struct Replica {
    config: Config,
    /// The durable acceptedEpoch: what the disk is known to hold.
    accepted_epoch: Epoch,
    /// The highest acceptedEpoch written or being written. Writes only ever go up, so the
    /// disk ends at the highest one; a lower write after a higher one would leave memory ahead
    /// of the disk (an epoch ACKed but not durable).
    accepted_issued: Epoch,
    current_epoch: Epoch,
    /// Txns after `log_base`, in zxid order: appended, not necessarily durable.
    /// Invariant: zxids strictly increase, each following the one before (same epoch, next
    /// counter; or a later epoch, counter 1) except across a snapshot.
    log: VecDeque<(Zxid, Bytes)>,
    /// The zxid before the first txn of `log`: the snapshot the state starts from.
    log_base: Zxid,
    /// Invariants: last_applied <= last_committed <= last_appended;
    /// last_persisted <= last_appended.
    last_appended: Zxid,
    last_persisted: Zxid,
    last_committed: Zxid,
    last_applied: Zxid,
    /// The log lost a tail that may have been acknowledged: no vote, no quorum, until synced.
    log_suspect: bool,
    /// The election round (logical clock); grows with every election this member starts.
    round: u64,
    syncs: Syncs,
    now: Duration,
    state: State,
    actions: VecDeque<Action>,
}

/// Whether `next` may directly follow `prev` in a history.
fn follows(prev: Zxid, next: Zxid) -> bool {
    prev.next() == Some(next) || (next.epoch() > prev.epoch() && next.counter() == 1)
}

impl Replica {
    /// A member that starts looking, from what its disk holds.
    pub fn new(config: Config, durable: Durable, now: Duration) -> Result<Replica, DurableError> {
        let Durable {
            accepted_epoch,
            current_epoch,
            snapshot_zxid,
            log,
            log_suspect,
        } = durable;
        if accepted_epoch < current_epoch {
            return Err(DurableError::AcceptedBelowCurrent {
                accepted: accepted_epoch,
                current: current_epoch,
            });
        }
        let mut prev = snapshot_zxid;
        for (zxid, _) in &log {
            if !follows(prev, *zxid) {
                return Err(DurableError::LogGap { prev, zxid: *zxid });
            }
            prev = *zxid;
        }
        // Observers accept no epoch (they never acknowledge): their log may be ahead of it.
        let observer = config.observers.contains(&config.id);
        if !observer && prev.epoch() > accepted_epoch {
            return Err(DurableError::AcceptedBelowLog {
                accepted: accepted_epoch,
                zxid: prev,
            });
        }
        let mut replica = Replica {
            config,
            accepted_epoch,
            accepted_issued: accepted_epoch,
            current_epoch,
            log: log.into(),
            log_base: snapshot_zxid,
            last_appended: prev,
            last_persisted: prev,
            // Only the snapshot is known committed: the log's tail may not be (PITFALLS 16).
            last_committed: snapshot_zxid,
            last_applied: snapshot_zxid,
            log_suspect,
            round: 0,
            syncs: Syncs::default(),
            now,
            state: State::Looking(Election {
                vote: Vote {
                    epoch: current_epoch,
                    zxid: prev,
                    leader: PeerId(0),
                },
                votes: BTreeMap::new(),
                settled: BTreeMap::new(),
                quorum_since: None,
                started: false,
                early_follower_infos: BTreeMap::new(),
            }),
            actions: VecDeque::new(),
        };
        replica.look();
        Ok(replica)
    }

    pub fn id(&self) -> PeerId {
        self.config.id
    }

    pub fn role(&self) -> Role {
        match &self.state {
            State::Looking(_) => Role::Looking,
            State::Learning(l) if l.observer => Role::Observing { leader: l.leader },
            State::Learning(l) => Role::Following { leader: l.leader },
            State::Leading(_) => Role::Leading,
        }
    }

    /// The leader's epoch once it is established, else None.
    pub fn established_epoch(&self) -> Option<Epoch> {
        match &self.state {
            State::Leading(l) if l.established => l.epoch,
            _ => None,
        }
    }

    /// Whether this member's state may be served to clients: it leads an established epoch, or
    /// it follows (or observes) a leader that told it it is up to date. A member that is
    /// looking, or still syncing, holds a state that may be behind what clients have seen.
    pub fn is_serving(&self) -> bool {
        match &self.state {
            State::Leading(l) => l.established,
            State::Learning(l) => l.phase == LearnerPhase::Broadcast,
            State::Looking(_) => false,
        }
    }

    /// On a leader, its learners; None on other members.
    pub fn learners(&self) -> Option<Learners> {
        let State::Leading(leader) = &self.state else {
            return None;
        };
        let mut counts = Learners::default();
        for link in leader.learners.values() {
            if link.observer {
                counts.observers += 1;
                if matches!(link.sync, leader::LearnerSync::Up) {
                    counts.synced_observers += 1;
                }
            } else {
                counts.followers += 1;
                if matches!(link.sync, leader::LearnerSync::Up) {
                    counts.synced_followers += 1;
                }
            }
            if matches!(link.sync, leader::LearnerSync::Syncing { .. }) {
                counts.pending_syncs += 1;
            }
        }
        Some(counts)
    }

    /// How this member synchronized learners while it led.
    pub fn syncs(&self) -> Syncs {
        self.syncs
    }

    pub fn accepted_epoch(&self) -> Epoch {
        self.accepted_epoch
    }

    pub fn current_epoch(&self) -> Epoch {
        self.current_epoch
    }

    pub fn last_appended(&self) -> Zxid {
        self.last_appended
    }

    pub fn last_persisted(&self) -> Zxid {
        self.last_persisted
    }

    pub fn last_committed(&self) -> Zxid {
        self.last_committed
    }

    /// The txns this member holds after its snapshot point, appended and not necessarily
    /// durable.
    pub fn log(&self) -> impl Iterator<Item = &(Zxid, Bytes)> {
        self.log.iter()
    }

    /// Hands out the next piece of work, or None until the next input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn send(&mut self, to: PeerId, message: Message) {
        if to != self.config.id {
            self.actions.push_back(Action::Send { to, message });
        }
    }

    fn set_role(&mut self, role: Role) {
        let epoch = self.current_epoch;
        self.actions.push_back(Action::RoleChanged { role, epoch });
    }

    // ---- The log ----------------------------------------------------------------------------

    fn log_index(&self, zxid: Zxid) -> Option<usize> {
        let i = self.log.partition_point(|(z, _)| *z < zxid);
        (self.log.get(i).map(|(z, _)| *z) == Some(zxid)).then_some(i)
    }

    fn append(&mut self, zxid: Zxid, txn: Bytes) {
        assert!(
            follows(self.last_appended, zxid),
            "member {:?}: zxid {zxid} appended after {}",
            self.config.id,
            self.last_appended
        );
        self.last_appended = zxid;
        self.log.push_back((zxid, txn.clone()));
        self.actions.push_back(Action::Append { zxid, txn });
    }

    fn truncate_after(&mut self, to: Zxid) {
        assert!(
            self.last_committed <= to,
            "member {:?}: TRUNC to {to} would drop committed {}",
            self.config.id,
            self.last_committed
        );
        while self.log.back().is_some_and(|(z, _)| *z > to) {
            self.log.pop_back();
        }
        self.last_appended = to;
        self.last_persisted = self.last_persisted.min(to);
        self.actions.push_back(Action::Truncate { after: to });
    }

    fn install_snapshot(&mut self, zxid: Zxid, data: Bytes) {
        assert!(
            self.last_committed <= zxid,
            "member {:?}: SNAP at {zxid} is behind committed {}",
            self.config.id,
            self.last_committed
        );
        self.log.clear();
        self.log_base = zxid;
        self.last_appended = zxid;
        self.last_persisted = zxid;
        self.last_committed = zxid;
        self.last_applied = zxid;
        self.actions
            .push_back(Action::InstallSnapshot { zxid, data });
    }

    /// Commits every logged txn up to `zxid` and hands them out to be applied, in order.
    fn commit_to(&mut self, zxid: Zxid) {
        let zxid = zxid.min(self.last_appended);
        if zxid <= self.last_committed {
            return;
        }
        self.last_committed = zxid;
        self.actions.push_back(Action::Commit { zxid });
        let start = self.log.partition_point(|(z, _)| *z <= self.last_applied);
        let apply: Vec<(Zxid, Bytes)> = self
            .log
            .iter()
            .skip(start)
            .take_while(|(z, _)| *z <= zxid)
            .cloned()
            .collect();
        for (zxid, txn) in apply {
            self.last_applied = zxid;
            self.actions.push_back(Action::Apply { zxid, txn });
        }
    }

    // ---- Inputs ----------------------------------------------------------------------------

    /// A message from `from`, as the transport identified it.
    pub fn handle_message(&mut self, from: PeerId, message: Message) {
        if !self.config.is_member(from) || from == self.config.id {
            return;
        }
        match message {
            Message::Notification { vote, round, state } => {
                self.handle_notification(from, vote, round, state)
            }
            message => match &mut self.state {
                State::Learning(_) => self.handle_learner_message(from, message),
                State::Leading(_) => self.handle_leader_message(from, message),
                State::Looking(election) => {
                    if matches!(message, Message::FollowerInfo { .. }) {
                        election.early_follower_infos.insert(from, message);
                    }
                }
            },
        }
    }

    /// The stream with `peer` broke (or was closed): what it carried after the last message
    /// delivered is lost. The transport reports this before it delivers anything from a new
    /// stream with `peer`, so a learner never mistakes a gap for a continuation (a later
    /// epoch's first zxid "follows" any older one). A learner of `peer` re-syncs; a leader
    /// forgets `peer`'s handshake until its next FOLLOWERINFO.
    pub fn handle_link_reset(&mut self, peer: PeerId) {
        match &mut self.state {
            // It looks again; if the leader is still there and needs it, it joins it again at
            // once (see `check_election`).
            State::Learning(learner) if learner.leader == peer => {
                self.abandon("the stream with the leader broke");
            }
            // Its acknowledgements no longer count; the quorum is re-checked at the next tick.
            State::Leading(leader) => {
                leader.learners.remove(&peer);
            }
            State::Looking(election) => {
                election.early_follower_infos.remove(&peer);
            }
            State::Learning(_) => {}
        }
    }

    /// The state machine's state up to `zxid` is in a durable snapshot: the txns up to it
    /// leave memory. A learner behind the new start gets a SNAP instead of a DIFF. Only what
    /// was applied is dropped, whatever `zxid` says.
    pub fn handle_compacted(&mut self, zxid: Zxid) {
        let upto = zxid.min(self.last_applied);
        if upto <= self.log_base {
            return;
        }
        let covered = self.log.partition_point(|(z, _)| *z <= upto);
        let mut keep = 0;
        let mut kept_bytes = 0;
        while keep < covered.min(self.config.compacted_tail_txns) {
            kept_bytes += self.log[covered - keep - 1].1.len();
            if kept_bytes > COMPACTED_TAIL_BYTES_MAX {
                break;
            }
            keep += 1;
        }
        let drop = covered - keep;
        if drop == 0 {
            return;
        }
        self.log_base = self.log[drop - 1].0;
        self.log.drain(..drop);
    }

    /// Every txn up to `zxid` is durable in this member's log.
    ///
    /// # Panics
    /// If `zxid` was never appended or goes backwards: the notice comes from our own runtime.
    pub fn handle_persisted(&mut self, zxid: Zxid) {
        assert!(
            zxid <= self.last_appended,
            "member {:?}: persisted {zxid} was never appended (last {})",
            self.config.id,
            self.last_appended
        );
        if zxid <= self.last_persisted {
            return;
        }
        self.last_persisted = zxid;
        match &self.state {
            State::Looking(_) => self.start_election_if_drained(),
            State::Learning(_) => {
                self.ack_new_leader_when_durable();
                self.ack_persisted();
            }
            State::Leading(leader) => {
                if leader.established {
                    self.advance_commit();
                } else {
                    self.establish_if_quorum();
                }
            }
        }
    }

    /// An epoch file asked for by an action is durable.
    pub fn handle_epoch_persisted(&mut self, file: EpochFile, epoch: Epoch) {
        match file {
            EpochFile::Accepted => {
                self.accepted_epoch = self.accepted_epoch.max(epoch);
                match &mut self.state {
                    State::Learning(learner)
                        if learner.phase == LearnerPhase::AcceptingEpoch
                            && learner.epoch == Some(epoch) =>
                    {
                        self.send_ack_epoch();
                    }
                    State::Leading(leader) if leader.epoch == Some(epoch) => {
                        leader.epoch_durable = true;
                        let peers: Vec<PeerId> = leader.learners.keys().copied().collect();
                        for peer in peers {
                            self.send(peer, Message::LeaderInfo { epoch });
                        }
                        // With a single voter the leader alone is the quorum.
                        self.end_discovery_if_quorum();
                    }
                    _ => {}
                }
            }
            EpochFile::Current => {
                self.current_epoch = self.current_epoch.max(epoch);
                match &self.state {
                    State::Learning(learner) if learner.epoch == Some(epoch) => {
                        self.ack_new_leader_when_durable();
                    }
                    State::Leading(leader)
                        if leader.epoch == Some(epoch) && leader.establishing =>
                    {
                        self.established();
                    }
                    _ => {}
                }
            }
        }
    }

    /// When this member next needs [`Replica::handle_timeout`], if before the next tick: a
    /// vote that has a quorum is decided [`ELECTION_FINALIZE_WAIT`] after it got it, not at a
    /// tick (which may be seconds away).
    pub fn poll_timeout(&self) -> Option<Duration> {
        match &self.state {
            State::Looking(election) => election
                .quorum_since
                .map(|since| since + ELECTION_FINALIZE_WAIT),
            _ => None,
        }
    }

    /// The clock moved to `now` between ticks: runs what [`Replica::poll_timeout`] asked for.
    /// A runtime may call it before any input, so that the times the core records are exact.
    pub fn handle_timeout(&mut self, now: Duration) {
        self.now = self.now.max(now);
        if let State::Looking(election) = &self.state {
            if election.started {
                self.check_election();
            }
        }
    }

    /// The clock: call once per [`Config::tick`]. Repeats what may have been lost and gives up
    /// on a leader, follower or election that went quiet.
    pub fn handle_tick(&mut self, now: Duration) {
        self.now = self.now.max(now);
        let init = self.config.tick * self.config.init_limit_ticks;
        let sync = self.config.tick * self.config.sync_limit_ticks;
        match &self.state {
            State::Looking(election) => {
                if election.started {
                    self.broadcast_vote();
                    self.check_election();
                } else {
                    self.start_election_if_drained();
                }
            }
            State::Learning(_) => self.tick_learner(init, sync),
            State::Leading(_) => self.tick_leader(init, sync),
        }
    }
}
