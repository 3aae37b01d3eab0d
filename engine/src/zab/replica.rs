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
}

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

#[derive(Debug)]
struct Election {
    vote: Vote,
    /// Votes of this round from looking voters, this member's included.
    votes: BTreeMap<PeerId, Vote>,
    /// Votes of members that are following or leading, with their state.
    settled: BTreeMap<PeerId, (Vote, PeerState)>,
    /// When this member's vote had a quorum: it decides after [`ELECTION_FINALIZE_WAIT`] unless
    /// a better vote arrives.
    quorum_since: Option<Duration>,
    /// False until every append is durable: no vote goes out before the log is drained.
    started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerPhase {
    /// FOLLOWERINFO sent (and repeated each tick) until LEADERINFO.
    Discovery,
    /// LEADERINFO accepted; acceptedEpoch being written.
    AcceptingEpoch,
    /// ACKEPOCH sent; the sync payload arrives.
    Synchronization,
    /// NEWLEADER received; its ACK waits for the history, then currentEpoch, to be durable.
    AckingNewLeader {
        zxid: Zxid,
    },
    /// NEWLEADER acknowledged; waiting for UPTODATE.
    AwaitingUpToDate,
    Broadcast,
}

#[derive(Debug)]
struct Learner {
    leader: PeerId,
    observer: bool,
    vote: Vote,
    phase: LearnerPhase,
    /// The leader's epoch, from LEADERINFO.
    epoch: Option<Epoch>,
    /// When this member chose the leader: Discovery and Synchronization must end within
    /// initLimit of it, however lively the leader is.
    started: Duration,
    last_heard: Duration,
    /// The highest zxid acknowledged to the leader.
    acked: Zxid,
    /// This handshake accepted the leader's epoch (it was above the one accepted before).
    fresh_accept: bool,
    /// DIFF, TRUNC or SNAP arrived: the sync payload started. Proposals before it mean the
    /// link lost it (a later epoch's first zxid "follows" any older one, so the zxids alone
    /// cannot tell).
    payload_started: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LearnerSync {
    /// FOLLOWERINFO received.
    Info { last_zxid: Zxid },
    /// ACKEPOCH received: its history is `last_zxid`; synced once discovery has a quorum of
    /// fresh acknowledgements.
    AckedEpoch { last_zxid: Zxid, fresh: bool },
    /// The sync payload and NEWLEADER are sent; proposals are forwarded.
    Syncing { newleader: Zxid },
    /// NEWLEADER acknowledged (followers) or UPTODATE sent (observers): in Broadcast.
    Up,
}

#[derive(Debug)]
struct LearnerLink {
    observer: bool,
    sync: LearnerSync,
    accepted_epoch: Epoch,
    last_heard: Duration,
    /// The highest zxid it acknowledged as durable (followers).
    acked: Zxid,
}

#[derive(Debug)]
struct Leader {
    vote: Vote,
    /// The new epoch, once chosen; LEADERINFO goes out once it is durable.
    epoch: Option<Epoch>,
    epoch_durable: bool,
    learners: BTreeMap<PeerId, LearnerLink>,
    /// The last zxid of the history this leader brings into its epoch.
    history_end: Zxid,
    /// Discovery ended: a quorum acknowledged the epoch.
    synchronizing: bool,
    /// currentEpoch is being written after a NEWLEADER quorum.
    establishing: bool,
    established: bool,
    started: Duration,
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
    /// The election round (logical clock); grows with every election this member starts.
    round: u64,
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
            round: 0,
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

    // ---- Election -------------------------------------------------------------------------

    /// Starts looking for a leader (a new election round), closing the streams of the role
    /// it leaves.
    fn look(&mut self) {
        let peers: Vec<PeerId> = match &self.state {
            State::Learning(learner) => vec![learner.leader],
            State::Leading(leader) => leader.learners.keys().copied().collect(),
            State::Looking(_) => Vec::new(),
        };
        for peer in peers {
            self.actions.push_back(Action::Disconnect { peer });
        }
        self.round += 1;
        let vote = self.own_vote();
        self.state = State::Looking(Election {
            vote,
            votes: BTreeMap::new(),
            settled: BTreeMap::new(),
            quorum_since: None,
            started: false,
        });
        self.set_role(Role::Looking);
        self.start_election_if_drained();
    }

    /// A vote for this member: its durable currentEpoch and last durable zxid (PITFALLS 2, 3).
    fn own_vote(&self) -> Vote {
        Vote {
            epoch: self.current_epoch,
            zxid: self.last_persisted,
            leader: self.config.id,
        }
    }

    fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.config.id)
    }

    /// Votes go out only once every append is durable, so the log a vote describes is the log
    /// this member has (PITFALLS 10: stop and drain the writer, then report).
    fn start_election_if_drained(&mut self) {
        if self.last_persisted != self.last_appended {
            return;
        }
        let own = self.own_vote();
        let id = self.config.id;
        let voter = self.is_voter();
        let State::Looking(election) = &mut self.state else {
            return;
        };
        if election.started {
            return;
        }
        election.started = true;
        if voter {
            election.vote = election.vote.max(own);
            let vote = election.vote;
            election.votes.insert(id, vote);
        }
        self.broadcast_vote();
        self.check_election();
    }

    fn broadcast_vote(&mut self) {
        let State::Looking(election) = &self.state else {
            return;
        };
        let message = Message::Notification {
            vote: election.vote,
            round: self.round,
            state: if self.is_voter() {
                PeerState::Looking
            } else {
                PeerState::Observing
            },
        };
        let voters: Vec<PeerId> = self.config.voters.iter().copied().collect();
        for to in voters {
            self.send(to, message.clone());
        }
    }

    fn handle_notification(&mut self, from: PeerId, vote: Vote, round: u64, state: PeerState) {
        let sender_voter = self.config.voters.contains(&from);
        match &mut self.state {
            State::Looking(election) => {
                if !election.started {
                    return;
                }
                match state {
                    PeerState::Looking
                        if sender_voter && self.config.voters.contains(&self.config.id) =>
                    {
                        if round > self.round {
                            self.round = round;
                            election.votes.clear();
                            election.quorum_since = None;
                            let own = Vote {
                                epoch: self.current_epoch,
                                zxid: self.last_persisted,
                                leader: self.config.id,
                            };
                            election.vote = own.max(vote);
                            let mine = election.vote;
                            election.votes.insert(self.config.id, mine);
                            election.votes.insert(from, vote);
                            self.broadcast_vote();
                        } else if round < self.round {
                            // It is behind: tell it where this round stands.
                            let message = Message::Notification {
                                vote: election.vote,
                                round: self.round,
                                state: PeerState::Looking,
                            };
                            self.send(from, message);
                            return;
                        } else {
                            election.votes.insert(from, vote);
                            if vote > election.vote {
                                election.vote = vote;
                                election.quorum_since = None;
                                let mine = election.vote;
                                election.votes.insert(self.config.id, mine);
                                self.broadcast_vote();
                            }
                        }
                    }
                    PeerState::Looking | PeerState::Observing => {}
                    PeerState::Following | PeerState::Leading => {
                        if sender_voter {
                            election.settled.insert(from, (vote, state));
                        }
                    }
                }
                self.check_election();
            }
            State::Learning(learner) => {
                if matches!(state, PeerState::Looking | PeerState::Observing) {
                    let message = Message::Notification {
                        vote: learner.vote,
                        round: self.round,
                        state: if learner.observer {
                            PeerState::Observing
                        } else {
                            PeerState::Following
                        },
                    };
                    self.send(from, message);
                }
            }
            State::Leading(leader) => {
                if matches!(state, PeerState::Looking | PeerState::Observing) {
                    let message = Message::Notification {
                        vote: leader.vote,
                        round: self.round,
                        state: PeerState::Leading,
                    };
                    self.send(from, message);
                }
            }
        }
    }

    /// Joins an established ensemble a quorum reports, or decides this round once its vote
    /// has had a quorum for [`ELECTION_FINALIZE_WAIT`] without a better one arriving.
    fn check_election(&mut self) {
        let quorum = self.config.quorum();
        let now = self.now;
        let id = self.config.id;
        let State::Looking(election) = &mut self.state else {
            return;
        };
        // An established leader: a quorum of voters follow it, and it says it leads.
        let mut leaders: BTreeMap<PeerId, (usize, Vote, bool)> = BTreeMap::new();
        for (peer, (vote, state)) in &election.settled {
            let entry = leaders.entry(vote.leader).or_insert((0, *vote, false));
            entry.0 += 1;
            if *peer == vote.leader && *state == PeerState::Leading {
                entry.2 = true;
                entry.1 = *vote;
            }
        }
        if let Some((leader, vote)) = leaders
            .iter()
            .find(|(leader, (count, _, leads))| *leads && *count >= quorum && **leader != id)
            .map(|(leader, (_, vote, _))| (*leader, *vote))
        {
            self.learn(leader, vote);
            return;
        }
        if !self.config.voters.contains(&id) {
            return;
        }
        let support = election
            .votes
            .values()
            .filter(|v| **v == election.vote)
            .count();
        if support < quorum {
            election.quorum_since = None;
            return;
        }
        let since = *election.quorum_since.get_or_insert(now);
        if now.saturating_sub(since) < ELECTION_FINALIZE_WAIT {
            return;
        }
        let vote = election.vote;
        if vote.leader == id {
            self.lead(vote);
        } else {
            self.learn(vote.leader, vote);
        }
    }

    // ---- Learner (follower or observer) ----------------------------------------------------

    fn learn(&mut self, leader: PeerId, vote: Vote) {
        let observer = !self.is_voter();
        self.state = State::Learning(Learner {
            leader,
            observer,
            vote,
            phase: LearnerPhase::Discovery,
            epoch: None,
            started: self.now,
            last_heard: self.now,
            acked: Zxid::ZERO,
            fresh_accept: false,
            payload_started: false,
        });
        self.set_role(if observer {
            Role::Observing { leader }
        } else {
            Role::Following { leader }
        });
        self.send_follower_info();
    }

    fn send_follower_info(&mut self) {
        let State::Learning(learner) = &self.state else {
            return;
        };
        let message = Message::FollowerInfo {
            accepted_epoch: self.accepted_epoch,
            last_zxid: self.last_persisted,
            observer: learner.observer,
        };
        let leader = learner.leader;
        self.send(leader, message);
    }

    /// A learner's link to its leader failed (a gap, a timeout, a protocol error): it looks
    /// for a leader again and re-syncs.
    fn abandon(&mut self, why: &str) {
        tracing::debug!(id = ?self.config.id, role = ?self.role(), why, "back to looking");
        self.look();
    }

    fn handle_learner_message(&mut self, from: PeerId, message: Message) {
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        if from != learner.leader {
            return;
        }
        learner.last_heard = self.now;
        // Before LEADERINFO only LEADERINFO counts; after it, only its epoch.
        if let Message::LeaderInfo { epoch } = message {
            if learner.phase != LearnerPhase::Discovery {
                return;
            }
            self.handle_leader_info(epoch);
            return;
        }
        if message.epoch().is_none() || message.epoch() != learner.epoch {
            return;
        }
        let epoch = learner.epoch.unwrap_or_default();
        let phase = learner.phase;
        let observer = learner.observer;
        let payload_started = learner.payload_started;
        if matches!(
            message,
            Message::Diff { .. } | Message::Trunc { .. } | Message::Snap { .. }
        ) {
            if phase != LearnerPhase::Synchronization || payload_started {
                return self.abandon("a sync payload out of place");
            }
            learner.payload_started = true;
        }
        match message {
            Message::Diff { zxid, .. } if zxid != self.last_appended => {
                self.abandon("DIFF from another point than this log's end");
            }
            Message::Diff { .. } => {}
            Message::Trunc { to, .. } => {
                let known = to == self.log_base || self.log_index(to).is_some();
                if !known || to < self.last_committed {
                    // A cut this log cannot make, or one through committed txns: the leader
                    // and this member disagree about history. Never trust it: start over.
                    return self.abandon("TRUNC to a point this log cannot cut at");
                }
                self.truncate_after(to);
            }
            Message::Snap { zxid, .. } if zxid < self.last_committed => {
                self.abandon("SNAP behind what this member committed");
            }
            Message::Snap { zxid, data, .. } => {
                self.install_snapshot(zxid, data);
            }
            Message::Proposal { zxid, txn, .. } => {
                if phase == LearnerPhase::AcceptingEpoch || phase == LearnerPhase::Discovery {
                    return;
                }
                if !payload_started {
                    return self.abandon("a proposal before the sync payload");
                }
                if zxid <= self.last_appended {
                    // A duplicate (PITFALLS 18): already logged.
                    return;
                }
                if !follows(self.last_appended, zxid) {
                    return self.abandon("gap in the leader's proposals");
                }
                self.append(zxid, txn);
            }
            Message::NewLeader { zxid, .. } => {
                if observer || phase != LearnerPhase::Synchronization {
                    return;
                }
                if !payload_started {
                    return self.abandon("NEWLEADER before the sync payload");
                }
                if zxid != self.last_appended {
                    return self.abandon("NEWLEADER does not match the synced history");
                }
                if let State::Learning(learner) = &mut self.state {
                    learner.phase = LearnerPhase::AckingNewLeader { zxid };
                }
                self.ack_new_leader_when_durable();
            }
            Message::UpToDate { committed, .. } => {
                let ready = if observer {
                    phase == LearnerPhase::Synchronization && payload_started
                } else {
                    phase == LearnerPhase::AwaitingUpToDate
                };
                if !ready {
                    return;
                }
                if committed > self.last_appended {
                    return self.abandon("UPTODATE past the synced history");
                }
                if let State::Learning(learner) = &mut self.state {
                    learner.phase = LearnerPhase::Broadcast;
                }
                self.commit_to(committed);
                self.ack_persisted();
            }
            Message::Commit { zxid, .. } => {
                if phase != LearnerPhase::Broadcast {
                    return;
                }
                if zxid > self.last_appended {
                    return self.abandon("COMMIT of a txn never received");
                }
                self.commit_to(zxid);
            }
            Message::Inform { zxid, txn, .. } => {
                if !observer || phase != LearnerPhase::Broadcast {
                    return;
                }
                if zxid <= self.last_appended {
                    return;
                }
                if !follows(self.last_appended, zxid) {
                    return self.abandon("gap in the leader's INFORMs");
                }
                self.append(zxid, txn);
                self.commit_to(zxid);
            }
            Message::Ping { committed, .. } => {
                if phase == LearnerPhase::Broadcast {
                    // The link is FIFO: every txn the leader committed before this PING was
                    // sent here first. Missing one means the link lost it.
                    if committed > self.last_appended {
                        return self.abandon("the leader committed txns that never arrived");
                    }
                    self.commit_to(committed);
                }
                self.send(from, Message::Pong { epoch });
            }
            _ => {}
        }
    }

    fn handle_leader_info(&mut self, epoch: Epoch) {
        let observer = matches!(&self.state, State::Learning(l) if l.observer);
        if observer {
            // Observers never acknowledge proposals and get committed txns only: the epoch they
            // accept protects nothing, so none is written (and a stale one cannot lock them
            // out of a leader whose quorum never saw it).
            if let State::Learning(learner) = &mut self.state {
                learner.epoch = Some(epoch);
            }
            return self.send_ack_epoch();
        }
        if epoch < self.accepted_issued {
            return self.abandon("the leader's epoch is below the one accepted");
        }
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        learner.epoch = Some(epoch);
        if epoch > self.accepted_issued {
            // acceptedEpoch is durable before ACKEPOCH (PITFALLS 1).
            learner.phase = LearnerPhase::AcceptingEpoch;
            learner.fresh_accept = true;
            self.accepted_issued = epoch;
            self.actions.push_back(Action::PersistAcceptedEpoch(epoch));
        } else if epoch > self.accepted_epoch {
            // Being written, and so never acknowledged yet: ACKEPOCH waits for it.
            learner.phase = LearnerPhase::AcceptingEpoch;
            learner.fresh_accept = true;
        } else {
            self.send_ack_epoch();
        }
    }

    fn send_ack_epoch(&mut self) {
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        learner.phase = LearnerPhase::Synchronization;
        let message = Message::AckEpoch {
            epoch: learner.epoch.unwrap_or_default(),
            current_epoch: self.current_epoch,
            last_zxid: self.last_persisted,
            fresh: learner.fresh_accept,
        };
        let leader = learner.leader;
        self.send(leader, message);
    }

    /// NEWLEADER is acknowledged only once the synced history is durable and then currentEpoch
    /// is (PITFALLS 2, 11).
    fn ack_new_leader_when_durable(&mut self) {
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        let LearnerPhase::AckingNewLeader { zxid } = learner.phase else {
            return;
        };
        if self.last_persisted < zxid {
            return;
        }
        let epoch = learner.epoch.unwrap_or_default();
        if self.current_epoch != epoch {
            self.actions.push_back(Action::PersistCurrentEpoch(epoch));
            return;
        }
        learner.phase = LearnerPhase::AwaitingUpToDate;
        learner.acked = zxid;
        let leader = learner.leader;
        self.send(leader, Message::Ack { epoch, zxid });
    }

    /// In Broadcast (and once NEWLEADER is acknowledged), a follower acknowledges what is
    /// durable, cumulatively.
    fn ack_persisted(&mut self) {
        let persisted = self.last_persisted;
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        if learner.observer
            || !matches!(
                learner.phase,
                LearnerPhase::AwaitingUpToDate | LearnerPhase::Broadcast
            )
            || persisted <= learner.acked
        {
            return;
        }
        learner.acked = persisted;
        let message = Message::Ack {
            epoch: learner.epoch.unwrap_or_default(),
            zxid: persisted,
        };
        let leader = learner.leader;
        self.send(leader, message);
    }

    // ---- Leader ----------------------------------------------------------------------------

    fn lead(&mut self, vote: Vote) {
        self.state = State::Leading(Leader {
            vote,
            epoch: None,
            epoch_durable: false,
            learners: BTreeMap::new(),
            history_end: self.last_appended,
            synchronizing: false,
            establishing: false,
            established: false,
            started: self.now,
        });
        self.set_role(Role::Leading);
        self.choose_epoch_if_quorum();
    }

    fn handle_leader_message(&mut self, from: PeerId, message: Message) {
        let now = self.now;
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        if let Message::FollowerInfo {
            accepted_epoch,
            last_zxid,
            observer,
        } = message
        {
            if observer != self.config.observers.contains(&from) {
                return;
            }
            // A voter that accepted a later epoch (from a candidate that never
            // got a quorum) can never join it: it would refuse LEADERINFO forever. Stepping
            // down lets the next election choose an epoch above it.
            if !observer && leader.epoch.is_some_and(|e| accepted_epoch > e) {
                tracing::info!(
                    id = ?self.config.id, follower = ?from, ?accepted_epoch,
                    "a voter accepted a later epoch than this leader's; new election"
                );
                return self.look();
            }
            // A new handshake: whatever this learner had before is gone with its old link.
            leader.learners.insert(
                from,
                LearnerLink {
                    observer,
                    sync: LearnerSync::Info { last_zxid },
                    accepted_epoch,
                    last_heard: now,
                    acked: Zxid::ZERO,
                },
            );
            if leader.epoch_durable {
                if let Some(epoch) = leader.epoch {
                    self.send(from, Message::LeaderInfo { epoch });
                }
            } else {
                self.choose_epoch_if_quorum();
            }
            return;
        }
        let Some(epoch) = leader.epoch else {
            return;
        };
        if message.epoch() != Some(epoch) {
            return;
        }
        let Some(link) = leader.learners.get_mut(&from) else {
            return;
        };
        link.last_heard = now;
        match message {
            Message::AckEpoch {
                current_epoch,
                last_zxid,
                fresh,
                ..
            } => {
                if !matches!(link.sync, LearnerSync::Info { .. }) {
                    return;
                }
                // The leader must hold the newest history of its quorum; a follower ahead of it
                // means this election went wrong: start over.
                if (current_epoch, last_zxid) > (self.current_epoch, self.last_appended) {
                    tracing::warn!(
                        id = ?self.config.id, follower = ?from, ?current_epoch, %last_zxid,
                        "a follower is ahead of the leader; new election"
                    );
                    return self.look();
                }
                link.sync = LearnerSync::AckedEpoch { last_zxid, fresh };
                if leader.synchronizing {
                    self.sync_learner(from);
                } else {
                    self.end_discovery_if_quorum();
                }
            }
            Message::Ack { zxid, .. } => match link.sync {
                LearnerSync::Syncing { newleader } if zxid == newleader && !link.observer => {
                    link.sync = LearnerSync::Up;
                    link.acked = zxid;
                    if leader.established {
                        let committed = self.last_committed;
                        self.send(from, Message::UpToDate { epoch, committed });
                    } else {
                        self.establish_if_quorum();
                    }
                }
                LearnerSync::Up
                    if !link.observer && zxid <= self.last_appended && zxid > link.acked =>
                {
                    link.acked = zxid;
                    self.advance_commit();
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn choose_epoch_if_quorum(&mut self) {
        let quorum = self.config.quorum();
        let id = self.config.id;
        let accepted = self.accepted_issued;
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        if leader.epoch.is_some() {
            return;
        }
        let voters: Vec<Epoch> = leader
            .learners
            .iter()
            .filter(|(peer, l)| !l.observer && **peer != id && self.config.voters.contains(peer))
            .map(|(_, l)| l.accepted_epoch)
            .collect();
        if voters.len() + 1 < quorum {
            return;
        }
        // Above every epoch this quorum accepted, this leader's included (PITFALLS 1).
        let highest = voters.into_iter().fold(accepted, Epoch::max);
        let Some(epoch) = highest.0.checked_add(1).map(Epoch) else {
            tracing::error!(id = ?id, "no epoch is left above {highest:?}");
            return;
        };
        leader.epoch = Some(epoch);
        self.accepted_issued = epoch;
        self.actions.push_back(Action::PersistAcceptedEpoch(epoch));
    }

    fn end_discovery_if_quorum(&mut self) {
        let quorum = self.config.quorum();
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        if leader.synchronizing {
            return;
        }
        let acked = leader
            .learners
            .iter()
            .filter(|(peer, l)| {
                self.config.voters.contains(peer)
                    && matches!(l.sync, LearnerSync::AckedEpoch { fresh: true, .. })
            })
            .count();
        if acked + 1 < quorum {
            return;
        }
        leader.synchronizing = true;
        leader.history_end = self.last_appended;
        let peers: Vec<PeerId> = leader.learners.keys().copied().collect();
        for peer in peers {
            self.sync_learner(peer);
        }
        self.establish_if_quorum();
    }

    /// Sends a learner that acknowledged the epoch what it lacks of this leader's history
    /// (DIFF, TRUNC or SNAP, then proposals), then NEWLEADER. Observers get committed txns only
    /// (PITFALLS 17), so they wait until the leader is established. Built and queued in one
    /// step, so no proposal can fall between the payload and the live stream (PITFALLS 8).
    fn sync_learner(&mut self, peer: PeerId) {
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        let Some(epoch) = leader.epoch else {
            return;
        };
        let Some(link) = leader.learners.get_mut(&peer) else {
            return;
        };
        let LearnerSync::AckedEpoch { last_zxid, .. } = link.sync else {
            return;
        };
        if link.observer && !leader.established {
            return;
        }
        let observer = link.observer;
        // Followers get the whole history (committed or not); observers what is committed.
        let end = if observer {
            self.last_committed
        } else {
            self.last_appended
        };
        let from = if last_zxid < self.log_base {
            // Older than this leader's log reaches: the state, exact at the commit point.
            let zxid = self.last_committed;
            self.actions.push_back(Action::SendSnapshot {
                to: peer,
                epoch,
                zxid,
            });
            zxid
        } else if last_zxid == self.log_base || self.log_index(last_zxid).is_some() {
            if last_zxid > end {
                // An observer ahead of the commit point cannot be: it only logs commits.
                return;
            }
            self.send(
                peer,
                Message::Diff {
                    epoch,
                    zxid: last_zxid,
                },
            );
            last_zxid
        } else {
            // The learner has txns this leader does not: cut back to the last shared one
            // (PITFALLS 7).
            let shared = self
                .log
                .iter()
                .map(|(z, _)| *z)
                .take_while(|z| *z <= last_zxid)
                .last()
                .unwrap_or(self.log_base);
            self.send(peer, Message::Trunc { epoch, to: shared });
            shared
        };
        let start = self.log.partition_point(|(z, _)| *z <= from);
        let entries: Vec<(Zxid, Bytes)> = self
            .log
            .iter()
            .skip(start)
            .take_while(|(z, _)| *z <= end)
            .cloned()
            .collect();
        for (zxid, txn) in entries {
            self.send(peer, Message::Proposal { epoch, zxid, txn });
        }
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        let Some(link) = leader.learners.get_mut(&peer) else {
            return;
        };
        if observer {
            link.sync = LearnerSync::Up;
            let committed = self.last_committed;
            self.send(peer, Message::UpToDate { epoch, committed });
        } else {
            link.sync = LearnerSync::Syncing { newleader: end };
            self.send(peer, Message::NewLeader { epoch, zxid: end });
        }
    }

    /// Commits this leader's history once a quorum acknowledged NEWLEADER and its own history
    /// is durable; first currentEpoch is written.
    fn establish_if_quorum(&mut self) {
        let quorum = self.config.quorum();
        let persisted = self.last_persisted;
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        let Some(epoch) = leader.epoch else {
            return;
        };
        if !leader.synchronizing || leader.establishing || leader.established {
            return;
        }
        if persisted < leader.history_end {
            return;
        }
        let acked = leader
            .learners
            .iter()
            .filter(|(peer, l)| self.config.voters.contains(peer) && l.sync == LearnerSync::Up)
            .count();
        if acked + 1 < quorum {
            return;
        }
        leader.establishing = true;
        self.actions.push_back(Action::PersistCurrentEpoch(epoch));
    }

    fn established(&mut self) {
        let State::Leading(leader) = &mut self.state else {
            return;
        };
        leader.established = true;
        let Some(epoch) = leader.epoch else {
            return;
        };
        let history_end = leader.history_end;
        tracing::debug!(id = ?self.config.id, ?epoch, %history_end, "leader established");
        // The whole history is committed now that a quorum holds it under this epoch.
        self.commit_to(history_end);
        let committed = self.last_committed;
        let State::Leading(leader) = &self.state else {
            return;
        };
        let up: Vec<PeerId> = leader
            .learners
            .iter()
            .filter(|(_, l)| l.sync == LearnerSync::Up && !l.observer)
            .map(|(p, _)| *p)
            .collect();
        let observers: Vec<PeerId> = leader
            .learners
            .iter()
            .filter(|(_, l)| l.observer)
            .map(|(p, _)| *p)
            .collect();
        for peer in up {
            self.send(peer, Message::UpToDate { epoch, committed });
        }
        for peer in observers {
            self.sync_learner(peer);
        }
        self.advance_commit();
    }

    /// Proposes `txn` as the next zxid of this leader's epoch.
    pub fn handle_propose(&mut self, txn: Bytes) -> Result<Zxid, ProposeError> {
        let State::Leading(leader) = &self.state else {
            return Err(ProposeError::NotLeader);
        };
        let (true, Some(epoch)) = (leader.established, leader.epoch) else {
            return Err(ProposeError::NotLeader);
        };
        let zxid = if self.last_appended.epoch() == epoch {
            match self.last_appended.next() {
                Some(zxid) => zxid,
                None => {
                    // Step down before the counter overflows (PITFALLS 4).
                    self.look();
                    return Err(ProposeError::ZxidExhausted(epoch));
                }
            }
        } else {
            Zxid::new(epoch, 1)
        };
        self.append(zxid, txn.clone());
        let State::Leading(leader) = &self.state else {
            return Err(ProposeError::NotLeader);
        };
        let forward: Vec<PeerId> = leader
            .learners
            .iter()
            .filter(|(_, l)| {
                !l.observer && matches!(l.sync, LearnerSync::Syncing { .. } | LearnerSync::Up)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in forward {
            self.send(
                peer,
                Message::Proposal {
                    epoch,
                    zxid,
                    txn: txn.clone(),
                },
            );
        }
        Ok(zxid)
    }

    /// Commits up to the highest zxid durable on a quorum of voters (this leader's own log
    /// included), sending COMMIT to followers and INFORM to observers.
    fn advance_commit(&mut self) {
        let quorum = self.config.quorum();
        let id = self.config.id;
        let persisted = self.last_persisted;
        let State::Leading(leader) = &self.state else {
            return;
        };
        let (true, Some(epoch)) = (leader.established, leader.epoch) else {
            return;
        };
        let mut acked: Vec<Zxid> = self
            .config
            .voters
            .iter()
            .map(|voter| {
                if *voter == id {
                    persisted
                } else {
                    leader
                        .learners
                        .get(voter)
                        .filter(|l| l.sync == LearnerSync::Up)
                        .map_or(Zxid::ZERO, |l| l.acked)
                }
            })
            .collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let Some(durable_on_quorum) = acked.get(quorum - 1).copied() else {
            return;
        };
        let from = self.last_committed;
        if durable_on_quorum <= from {
            return;
        }
        let followers: Vec<PeerId> = leader
            .learners
            .iter()
            .filter(|(_, l)| !l.observer && l.sync == LearnerSync::Up)
            .map(|(p, _)| *p)
            .collect();
        let observers: Vec<PeerId> = leader
            .learners
            .iter()
            .filter(|(_, l)| l.observer && l.sync == LearnerSync::Up)
            .map(|(p, _)| *p)
            .collect();
        self.commit_to(durable_on_quorum);
        for peer in followers {
            self.send(
                peer,
                Message::Commit {
                    epoch,
                    zxid: durable_on_quorum,
                },
            );
        }
        if !observers.is_empty() {
            let start = self.log.partition_point(|(z, _)| *z <= from);
            let informs: Vec<(Zxid, Bytes)> = self
                .log
                .iter()
                .skip(start)
                .take_while(|(z, _)| *z <= durable_on_quorum)
                .cloned()
                .collect();
            for peer in observers {
                for (zxid, txn) in &informs {
                    self.send(
                        peer,
                        Message::Inform {
                            epoch,
                            zxid: *zxid,
                            txn: txn.clone(),
                        },
                    );
                }
            }
        }
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
            message => match self.state {
                State::Learning(_) => self.handle_learner_message(from, message),
                State::Leading(_) => self.handle_leader_message(from, message),
                State::Looking(_) => {}
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
            State::Learning(learner) if learner.leader == peer => {
                self.abandon("the stream with the leader broke");
            }
            // Its acknowledgements no longer count; the quorum is re-checked at the next tick.
            State::Leading(leader) => {
                leader.learners.remove(&peer);
            }
            State::Learning(_) | State::Looking(_) => {}
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
        let drop = self.log.partition_point(|(z, _)| *z <= upto);
        self.log.drain(..drop);
        self.log_base = upto;
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
            State::Learning(learner) => {
                // Before Broadcast the leader may be silent while it waits for its quorum.
                let quiet = if learner.phase == LearnerPhase::Broadcast {
                    sync
                } else {
                    init
                };
                if self.now.saturating_sub(learner.last_heard) > quiet {
                    return self.abandon("the leader went quiet");
                }
                if learner.phase != LearnerPhase::Broadcast
                    && self.now.saturating_sub(learner.started) > init
                {
                    return self.abandon("no sync within initLimit");
                }
                match learner.phase {
                    LearnerPhase::Discovery => self.send_follower_info(),
                    LearnerPhase::Broadcast | LearnerPhase::AwaitingUpToDate => {
                        let epoch = learner.epoch.unwrap_or_default();
                        let leader = learner.leader;
                        self.send(leader, Message::Pong { epoch });
                    }
                    _ => {}
                }
            }
            State::Leading(leader) => {
                let quorum = self.config.quorum();
                if !leader.established {
                    if self.now.saturating_sub(leader.started) > init {
                        tracing::debug!(id = ?self.config.id, "no quorum followed in initLimit");
                        return self.look();
                    }
                    return;
                }
                let heard = leader
                    .learners
                    .iter()
                    .filter(|(peer, l)| {
                        self.config.voters.contains(peer)
                            && l.sync == LearnerSync::Up
                            && self.now.saturating_sub(l.last_heard) <= sync
                    })
                    .count();
                if heard + 1 < quorum {
                    tracing::debug!(id = ?self.config.id, "lost the quorum; stepping down");
                    return self.look();
                }
                let Some(epoch) = leader.epoch else {
                    return;
                };
                let committed = self.last_committed;
                let peers: Vec<PeerId> = leader
                    .learners
                    .iter()
                    .filter(|(_, l)| {
                        matches!(l.sync, LearnerSync::Syncing { .. } | LearnerSync::Up)
                    })
                    .map(|(p, _)| *p)
                    .collect();
                for peer in peers {
                    self.send(peer, Message::Ping { epoch, committed });
                }
            }
        }
    }
}
