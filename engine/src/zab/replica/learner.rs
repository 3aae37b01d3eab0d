//! A follower or observer: Discovery (FOLLOWERINFO, LEADERINFO, ACKEPOCH), Synchronization (the
//! payload, NEWLEADER, UPTODATE) and Broadcast (PROPOSAL, ACK, COMMIT, INFORM) from its side.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LearnerPhase {
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
pub(super) struct Learner {
    pub(super) leader: PeerId,
    pub(super) observer: bool,
    pub(super) vote: Vote,
    pub(super) phase: LearnerPhase,
    /// The leader's epoch, from LEADERINFO.
    pub(super) epoch: Option<Epoch>,
    /// When this member chose the leader: Discovery and Synchronization must end within
    /// initLimit of it, however lively the leader is.
    pub(super) started: Duration,
    pub(super) last_heard: Duration,
    /// The highest zxid acknowledged to the leader.
    pub(super) acked: Zxid,
    /// This handshake accepted the leader's epoch (it was above the one accepted before).
    pub(super) fresh_accept: bool,
    /// DIFF, TRUNC or SNAP arrived: the sync payload started. Proposals before it mean the
    /// link lost it (a later epoch's first zxid "follows" any older one, so the zxids alone
    /// cannot tell).
    pub(super) payload_started: bool,
}

impl Replica {
    pub(super) fn learn(&mut self, leader: PeerId, vote: Vote) {
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

    pub(super) fn send_follower_info(&mut self) {
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
    pub(super) fn abandon(&mut self, why: &str) {
        tracing::debug!(id = ?self.config.id, role = ?self.role(), why, "back to looking");
        self.look();
    }

    pub(super) fn handle_learner_message(&mut self, from: PeerId, message: Message) {
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
                if self.log_suspect {
                    // Synced with the leader's history, durable with its epoch: whole again.
                    self.log_suspect = false;
                    self.actions.push_back(Action::LogTrusted);
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

    pub(super) fn handle_leader_info(&mut self, epoch: Epoch) {
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

    pub(super) fn send_ack_epoch(&mut self) {
        let State::Learning(learner) = &mut self.state else {
            return;
        };
        learner.phase = LearnerPhase::Synchronization;
        let message = Message::AckEpoch {
            epoch: learner.epoch.unwrap_or_default(),
            current_epoch: self.current_epoch,
            last_zxid: self.last_persisted,
            // A suspect log may lack txns a quorum counted on: its history must not decide the
            // new leader's.
            fresh: learner.fresh_accept && !self.log_suspect,
        };
        let leader = learner.leader;
        self.send(leader, message);
    }

    /// NEWLEADER is acknowledged only once the synced history is durable and then currentEpoch
    /// is (PITFALLS 2, 11).
    pub(super) fn ack_new_leader_when_durable(&mut self) {
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
    pub(super) fn ack_persisted(&mut self) {
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

    /// Gives up on a leader that went quiet or a sync that took longer than initLimit; repeats
    /// FOLLOWERINFO until LEADERINFO, and keeps the leader hearing from this member.
    pub(super) fn tick_learner(&mut self, init: Duration, sync: Duration) {
        let State::Learning(learner) = &self.state else {
            return;
        };
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
}
