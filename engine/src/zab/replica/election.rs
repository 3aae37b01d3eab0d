//! Fast leader election: votes ordered by (epoch, zxid, id), a quorum for one vote held for
//! [`ELECTION_FINALIZE_WAIT`], or a quorum already following an established leader.

use super::*;

#[derive(Debug)]
pub(super) struct Election {
    pub(super) vote: Vote,
    /// Votes of this round from looking voters, this member's included.
    pub(super) votes: BTreeMap<PeerId, Vote>,
    /// Votes of members that are following or leading, with their state.
    pub(super) settled: BTreeMap<PeerId, (Vote, PeerState)>,
    /// When this member's vote had a quorum: it decides after [`ELECTION_FINALIZE_WAIT`] unless
    /// a better vote arrives.
    pub(super) quorum_since: Option<Duration>,
    /// False until every append is durable: no vote goes out before the log is drained.
    pub(super) started: bool,
    /// FOLLOWERINFOs that arrived before this member knew it leads (the learner decided a
    /// moment sooner): handled if it does, rather than waiting for the learner's next tick.
    /// One per peer at most.
    pub(super) early_follower_infos: BTreeMap<PeerId, Message>,
}

impl Replica {
    /// Starts looking for a leader (a new election round), closing the streams of the role
    /// it leaves.
    pub(super) fn look(&mut self) {
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
            early_follower_infos: BTreeMap::new(),
        });
        self.set_role(Role::Looking);
        self.start_election_if_drained();
    }

    /// A vote for this member: its durable currentEpoch and last durable zxid (PITFALLS 2, 3).
    pub(super) fn own_vote(&self) -> Vote {
        Vote {
            epoch: self.current_epoch,
            zxid: self.last_persisted,
            leader: self.config.id,
        }
    }

    pub(super) fn is_voter(&self) -> bool {
        self.config.voters.contains(&self.config.id)
    }

    /// Whether this member's vote and acknowledgements count: a voter whose log is not suspect.
    /// A suspect one takes part in elections as an observer does (it follows an established
    /// leader, never elects one) until that leader has synced it.
    pub(super) fn counts(&self) -> bool {
        self.is_voter() && !self.log_suspect
    }

    /// Votes go out only once every append is durable, so the log a vote describes is the log
    /// this member has (PITFALLS 10: stop and drain the writer, then report).
    pub(super) fn start_election_if_drained(&mut self) {
        if self.last_persisted != self.last_appended {
            tracing::debug!(
                id = ?self.config.id,
                persisted = %self.last_persisted,
                appended = %self.last_appended,
                "waiting for the log to drain before voting"
            );
            return;
        }
        let own = self.own_vote();
        let id = self.config.id;
        let voter = self.counts();
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

    pub(super) fn broadcast_vote(&mut self) {
        let State::Looking(election) = &self.state else {
            return;
        };
        let message = Message::Notification {
            vote: election.vote,
            round: self.round,
            state: if self.counts() {
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

    pub(super) fn handle_notification(
        &mut self,
        from: PeerId,
        vote: Vote,
        round: u64,
        state: PeerState,
    ) {
        let sender_voter = self.config.voters.contains(&from);
        let counts = self.counts();
        match &mut self.state {
            State::Looking(election) => {
                if !election.started {
                    return;
                }
                match state {
                    PeerState::Looking if sender_voter && counts => {
                        if round > self.round {
                            self.round = round;
                            election.votes.clear();
                            // A FOLLOWERINFO of an earlier round is not for this one.
                            election.early_follower_infos.clear();
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
                            } else if vote < election.vote {
                                // It has not seen the better vote: it may have been following
                                // when this member broadcast it. Tell it now rather than at the
                                // next tick, which may be seconds away.
                                let message = Message::Notification {
                                    vote: election.vote,
                                    round: self.round,
                                    state: PeerState::Looking,
                                };
                                self.send(from, message);
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
    pub(super) fn check_election(&mut self) {
        let counts_here = self.counts();
        let own = self.own_vote();
        let quorum = self.config.quorum();
        let now = self.now;
        let id = self.config.id;
        let State::Looking(election) = &mut self.state else {
            return;
        };
        // A leader to join: it says it leads, and a quorum of voters follows it, this member
        // included if it counts and the leader's history is no older than its own (as
        // ZooKeeper counts its own vote). So a member that lost its stream to a leader that
        // still needs it for its quorum joins it again at once, instead of leaving it waiting
        // out its initLimit.
        let mut leaders: BTreeMap<PeerId, (usize, Vote, bool)> = BTreeMap::new();
        for (peer, (vote, state)) in &election.settled {
            let entry = leaders.entry(vote.leader).or_insert((0, *vote, false));
            entry.0 += 1;
            if *peer == vote.leader && *state == PeerState::Leading {
                entry.2 = true;
                entry.1 = *vote;
            }
        }
        let support = |vote: &Vote, count: usize| {
            let mine = counts_here && (vote.epoch, vote.zxid) >= (own.epoch, own.zxid);
            count + usize::from(mine)
        };
        if let Some((leader, vote)) = leaders
            .iter()
            .find(|(leader, (count, vote, leads))| {
                *leads && support(vote, *count) >= quorum && **leader != id
            })
            .map(|(leader, (_, vote, _))| (*leader, *vote))
        {
            self.learn(leader, vote);
            return;
        }
        if !counts_here {
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
        tracing::debug!(id = ?id, ?vote, "election decided");
        if vote.leader == id {
            self.lead(vote);
        } else {
            self.learn(vote.leader, vote);
        }
    }
}
