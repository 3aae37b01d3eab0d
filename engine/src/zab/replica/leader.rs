//! A leader: it chooses the epoch, syncs each learner (DIFF, TRUNC or SNAP), establishes itself
//! on a NEWLEADER quorum, then proposes and commits.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LearnerSync {
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
pub(super) struct LearnerLink {
    pub(super) observer: bool,
    pub(super) sync: LearnerSync,
    pub(super) accepted_epoch: Epoch,
    pub(super) last_heard: Duration,
    /// The highest zxid it acknowledged as durable (followers).
    pub(super) acked: Zxid,
}

#[derive(Debug)]
pub(super) struct Leader {
    pub(super) vote: Vote,
    /// The new epoch, once chosen; LEADERINFO goes out once it is durable.
    pub(super) epoch: Option<Epoch>,
    pub(super) epoch_durable: bool,
    pub(super) learners: BTreeMap<PeerId, LearnerLink>,
    /// The last zxid of the history this leader brings into its epoch.
    pub(super) history_end: Zxid,
    /// Discovery ended: a quorum acknowledged the epoch.
    pub(super) synchronizing: bool,
    /// currentEpoch is being written after a NEWLEADER quorum.
    pub(super) establishing: bool,
    pub(super) established: bool,
    pub(super) started: Duration,
}

impl Replica {
    pub(super) fn lead(&mut self, vote: Vote) {
        let early = match &mut self.state {
            State::Looking(election) => std::mem::take(&mut election.early_follower_infos),
            _ => BTreeMap::new(),
        };
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
        for (peer, follower_info) in early {
            self.handle_leader_message(peer, follower_info);
        }
    }

    pub(super) fn handle_leader_message(&mut self, from: PeerId, message: Message) {
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
                // The leader must hold the newest history of its quorum; a follower of that
                // quorum ahead of it means this election went wrong: start over. One that does
                // not count (its acknowledgement is not fresh: a suspect log, or an epoch
                // accepted before) holds nothing committed beyond the leader's history, and is
                // cut back by TRUNC instead of costing an election each time it joins.
                if fresh && (current_epoch, last_zxid) > (self.current_epoch, self.last_appended) {
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

    pub(super) fn choose_epoch_if_quorum(&mut self) {
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

    pub(super) fn end_discovery_if_quorum(&mut self) {
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
    pub(super) fn sync_learner(&mut self, peer: PeerId) {
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
        let shared_log = last_zxid == self.log_base || self.log_index(last_zxid).is_some();
        // A DIFF longer than a link's queue can never get through (the queue overflows, the
        // stream resets, the learner asks again for a longer one): past the bound, a SNAP.
        let diff_start = self.log.partition_point(|(z, _)| *z <= last_zxid);
        let diff_len = self.log.len() - diff_start;
        let too_long = diff_len > self.config.diff_txns_max
            || self
                .log
                .range(diff_start..)
                .map(|(_, txn)| txn.len())
                .sum::<usize>()
                > self.config.diff_bytes_max;
        let from = if last_zxid < self.log_base || (too_long && last_zxid < self.last_committed) {
            // Older than this leader's log reaches, or too far behind: the state, exact at the
            // commit point.
            let zxid = self.last_committed;
            self.syncs.snap += 1;
            self.actions.push_back(Action::SendSnapshot {
                to: peer,
                epoch,
                zxid,
            });
            zxid
        } else if shared_log {
            if last_zxid > end {
                // An observer ahead of the commit point cannot be: it only logs commits.
                return;
            }
            self.syncs.diff += 1;
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
            self.syncs.trunc += 1;
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
    pub(super) fn establish_if_quorum(&mut self) {
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

    pub(super) fn established(&mut self) {
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

    /// The zxid the next [`Replica::handle_propose`] will assign, so that a caller can build a
    /// txn that depends on it. An established leader whose epoch used every counter steps down
    /// here, before the counter overflows (PITFALLS 4).
    pub fn next_zxid(&mut self) -> Result<Zxid, ProposeError> {
        let State::Leading(leader) = &self.state else {
            return Err(ProposeError::NotLeader);
        };
        let (true, Some(epoch)) = (leader.established, leader.epoch) else {
            return Err(ProposeError::NotLeader);
        };
        if self.last_appended.epoch() != epoch {
            return Ok(Zxid::new(epoch, 1));
        }
        match self.last_appended.next() {
            Some(zxid) => Ok(zxid),
            None => {
                self.look();
                Err(ProposeError::ZxidExhausted(epoch))
            }
        }
    }

    /// Proposes `txn` as the next zxid of this leader's epoch.
    pub fn handle_propose(&mut self, txn: Bytes) -> Result<Zxid, ProposeError> {
        let zxid = self.next_zxid()?;
        let epoch = zxid.epoch();
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
    pub(super) fn advance_commit(&mut self) {
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

    /// Steps down without a quorum (in initLimit before it is established, in syncLimit
    /// after), and pings the learners it syncs or leads.
    pub(super) fn tick_leader(&mut self, init: Duration, sync: Duration) {
        let quorum = self.config.quorum();
        let State::Leading(leader) = &self.state else {
            return;
        };
        if !leader.established {
            if self.now.saturating_sub(leader.started) > init {
                tracing::debug!(id = ?self.config.id, "no quorum followed in initLimit");
                self.look();
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
            .filter(|(_, l)| matches!(l.sync, LearnerSync::Syncing { .. } | LearnerSync::Up))
            .map(|(p, _)| *p)
            .collect();
        for peer in peers {
            self.send(peer, Message::Ping { epoch, committed });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a lone voter, carrying out its actions at once, until it leads an established
    /// epoch.
    fn establish(r: &mut Replica, now: &mut Duration) -> Epoch {
        for _ in 0..100 {
            while let Some(action) = r.poll_action() {
                match action {
                    Action::PersistAcceptedEpoch(e) => {
                        r.handle_epoch_persisted(EpochFile::Accepted, e)
                    }
                    Action::PersistCurrentEpoch(e) => {
                        r.handle_epoch_persisted(EpochFile::Current, e)
                    }
                    Action::Append { zxid, .. } => r.handle_persisted(zxid),
                    _ => {}
                }
            }
            if let Some(epoch) = r.established_epoch() {
                return epoch;
            }
            *now += r.config.tick;
            r.handle_tick(*now);
        }
        panic!("no leader after 100 ticks");
    }

    /// PITFALLS 4 (ZOOKEEPER-1277): a leader whose epoch used every counter refuses the next
    /// proposal and steps down; the next election's epoch starts the counter again.
    #[test]
    fn a_leader_steps_down_before_its_zxid_counter_overflows() {
        let config = Config {
            id: PeerId(1),
            voters: [PeerId(1)].into(),
            observers: BTreeSet::new(),
            tick: Duration::from_millis(50),
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            diff_txns_max: DIFF_TXNS_MAX_DEFAULT,
            diff_bytes_max: DIFF_BYTES_MAX_DEFAULT,
            compacted_tail_txns: COMPACTED_TAIL_TXNS_DEFAULT,
        };
        let mut r = Replica::new(config, Durable::default(), Duration::ZERO).expect("starts");
        let mut now = Duration::ZERO;
        let epoch = establish(&mut r, &mut now);
        // Getting there takes 2^32 proposals: start from a snapshot one short of the end.
        let last_but_one = Zxid::new(epoch, u32::MAX - 1);
        r.log_base = last_but_one;
        r.last_appended = last_but_one;
        r.last_persisted = last_but_one;
        r.last_committed = last_but_one;
        r.last_applied = last_but_one;
        assert_eq!(
            r.handle_propose(Bytes::from_static(b"last")),
            Ok(Zxid::new(epoch, u32::MAX))
        );
        assert_eq!(
            r.handle_propose(Bytes::from_static(b"one too many")),
            Err(ProposeError::ZxidExhausted(epoch))
        );
        assert_eq!(r.role(), Role::Looking);
        let next = establish(&mut r, &mut now);
        assert!(next > epoch);
        assert_eq!(
            r.handle_propose(Bytes::from_static(b"after")),
            Ok(Zxid::new(next, 1))
        );
        assert_eq!(
            r.last_committed(),
            Zxid::new(epoch, u32::MAX),
            "the last txn of {epoch:?} is kept and committed"
        );
    }
}
