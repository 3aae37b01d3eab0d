//! The Broadcast phase for an ensemble of one voter, which the standalone runtime drives: the
//! leader's own durable write is the quorum. [`super::Replica`] is the core for ensembles; the
//! runtime moves to it once it drives peers.
//!
//! [`Replica`] takes events (`handle_*`) and hands back work ([`Replica::poll_action`]); it never
//! touches a disk, a socket or a clock. Durability is an input: a proposal is committed only once
//! [`Replica::handle_persisted`] reports it durable (here: on this replica's own log).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::{Epoch, Zxid};

/// Work the runtime must do for a [`Replica`], in the order yielded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Append this txn to the log; report with [`Replica::handle_persisted`] once it and every
    /// earlier txn are durable.
    Persist { zxid: Zxid, txn: Bytes },
    /// Every txn up to `zxid` is committed: durable on a quorum (a leader sends COMMIT here).
    Commit { zxid: Zxid },
    /// Apply this committed txn to the state machine. Yielded once per txn, in zxid order,
    /// after the [`Action::Commit`] that covers it.
    Apply { zxid: Zxid, txn: Bytes },
}

/// One Zab participant. Currently always the leader of a single-voter ensemble.
#[derive(Debug)]
pub struct Replica {
    /// The epoch this replica leads; every zxid it proposes carries it.
    epoch: Epoch,
    /// The last zxid proposed. Invariant: `last_committed <= last_persisted <= last_proposed`.
    last_proposed: Zxid,
    /// The last zxid this replica's log holds durably.
    last_persisted: Zxid,
    /// The last zxid known committed.
    last_committed: Zxid,
    /// Proposals not yet committed, in zxid order (ZooKeeper's outstanding proposals).
    outstanding: VecDeque<(Zxid, Bytes)>,
    /// Work not yet handed out by `poll_action`.
    actions: VecDeque<Action>,
}

impl Replica {
    /// A replica that leads `epoch` alone, over a log whose last txn is `last_logged`.
    ///
    /// # Panics
    /// If `epoch` is not above `last_logged`'s: a new leader's epoch must exceed every epoch in
    /// its history, or zxids would repeat.
    pub fn new_leader(epoch: Epoch, last_logged: Zxid) -> Self {
        assert!(
            epoch > last_logged.epoch(),
            "new leader epoch {epoch:?} must exceed the last logged zxid {last_logged}'s epoch"
        );
        // Counter 0 of the new epoch: below every zxid proposed in it, above every logged one.
        let start = Zxid::new(epoch, 0);
        Replica {
            epoch,
            last_proposed: start,
            last_persisted: start,
            last_committed: start,
            outstanding: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    /// The epoch this replica leads.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The zxid the next proposal gets, or `None` if the epoch's counter is exhausted (a new
    /// epoch, i.e. a restart or an election, is needed).
    pub fn next_zxid(&self) -> Option<Zxid> {
        self.last_proposed.next()
    }

    /// The last zxid known committed.
    pub fn last_committed(&self) -> Zxid {
        self.last_committed
    }

    /// How many proposals wait for their commit.
    pub fn outstanding_len(&self) -> usize {
        self.outstanding.len()
    }

    /// Proposes `txn` under the next zxid and returns it; yields [`Action::Persist`].
    ///
    /// # Panics
    /// If [`Replica::next_zxid`] is `None`: the caller must check it first.
    pub fn handle_propose(&mut self, txn: Bytes) -> Zxid {
        let Some(zxid) = self.next_zxid() else {
            panic!(
                "epoch {:?} exhausted its zxid counter after {}",
                self.epoch, self.last_proposed
            );
        };
        self.last_proposed = zxid;
        self.outstanding.push_back((zxid, txn.clone()));
        self.actions.push_back(Action::Persist { zxid, txn });
        zxid
    }

    /// Reports that this replica's log holds every txn up to `zxid` durably.
    ///
    /// # Panics
    /// If `zxid` was never proposed or goes backwards: persistence notices come from our own
    /// runtime, so either is a bug.
    pub fn handle_persisted(&mut self, zxid: Zxid) {
        assert!(
            zxid <= self.last_proposed,
            "persisted zxid {zxid} was never proposed (last proposed {})",
            self.last_proposed
        );
        assert!(
            zxid >= self.last_persisted,
            "persisted zxid went backwards: {zxid} after {}",
            self.last_persisted
        );
        self.last_persisted = zxid;
        // This replica's own durable write is its ACK; with one voter that is a quorum.
        let quorum_durable = self.last_persisted;
        self.advance_commit(quorum_durable);
    }

    /// Hands out the next piece of work, or `None` when there is none until the next input.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Commits every outstanding proposal up to `zxid`: one `Commit`, then an `Apply` each.
    fn advance_commit(&mut self, zxid: Zxid) {
        if zxid <= self.last_committed {
            return;
        }
        self.last_committed = zxid;
        self.actions.push_back(Action::Commit { zxid });
        while let Some((front, _)) = self.outstanding.front() {
            if *front > zxid {
                break;
            }
            let Some((zxid, txn)) = self.outstanding.pop_front() else {
                break;
            };
            self.actions.push_back(Action::Apply { zxid, txn });
        }
        assert!(
            self.last_committed <= self.last_persisted,
            "committed {} beyond persisted {}",
            self.last_committed,
            self.last_persisted
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(replica: &mut Replica) -> Vec<Action> {
        std::iter::from_fn(|| replica.poll_action()).collect()
    }

    fn txn(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn first_proposal_of_an_epoch_has_counter_one() {
        let mut replica = Replica::new_leader(Epoch(3), Zxid::new(Epoch(2), 40));
        assert_eq!(replica.next_zxid(), Some(Zxid::new(Epoch(3), 1)));
        assert_eq!(replica.handle_propose(txn("a")), Zxid::new(Epoch(3), 1));
        assert_eq!(replica.handle_propose(txn("b")), Zxid::new(Epoch(3), 2));
    }

    #[test]
    fn proposal_is_persisted_before_it_commits() {
        let mut replica = Replica::new_leader(Epoch(1), Zxid::ZERO);
        let zxid = replica.handle_propose(txn("a"));
        assert_eq!(
            drain(&mut replica),
            vec![Action::Persist {
                zxid,
                txn: txn("a")
            }]
        );
        // Nothing commits until the disk says so.
        assert_eq!(drain(&mut replica), vec![]);
        assert_eq!(replica.last_committed(), Zxid::new(Epoch(1), 0));

        replica.handle_persisted(zxid);
        assert_eq!(
            drain(&mut replica),
            vec![
                Action::Commit { zxid },
                Action::Apply {
                    zxid,
                    txn: txn("a")
                }
            ]
        );
        assert_eq!(replica.last_committed(), zxid);
        assert_eq!(replica.outstanding_len(), 0);
    }

    #[test]
    fn commits_apply_in_zxid_order_up_to_the_persisted_point() {
        let mut replica = Replica::new_leader(Epoch(1), Zxid::ZERO);
        let z1 = replica.handle_propose(txn("a"));
        let z2 = replica.handle_propose(txn("b"));
        let z3 = replica.handle_propose(txn("c"));
        drain(&mut replica);

        replica.handle_persisted(z2);
        assert_eq!(
            drain(&mut replica),
            vec![
                Action::Commit { zxid: z2 },
                Action::Apply {
                    zxid: z1,
                    txn: txn("a")
                },
                Action::Apply {
                    zxid: z2,
                    txn: txn("b")
                },
            ]
        );
        // A repeated notice commits nothing new.
        replica.handle_persisted(z2);
        assert_eq!(drain(&mut replica), vec![]);

        replica.handle_persisted(z3);
        assert_eq!(
            drain(&mut replica),
            vec![
                Action::Commit { zxid: z3 },
                Action::Apply {
                    zxid: z3,
                    txn: txn("c")
                },
            ]
        );
    }

    #[test]
    #[should_panic(expected = "never proposed")]
    fn persisting_an_unproposed_zxid_panics() {
        let mut replica = Replica::new_leader(Epoch(1), Zxid::ZERO);
        replica.handle_persisted(Zxid::new(Epoch(1), 1));
    }

    #[test]
    #[should_panic(expected = "must exceed")]
    fn leader_epoch_must_exceed_logged_epoch() {
        Replica::new_leader(Epoch(2), Zxid::new(Epoch(2), 5));
    }

    #[test]
    fn exhausted_epoch_offers_no_next_zxid() {
        let mut replica = Replica::new_leader(Epoch(1), Zxid::ZERO);
        replica.last_proposed = Zxid::new(Epoch(1), u32::MAX);
        assert_eq!(replica.next_zxid(), None);
    }
}
