//! What members tell each other: election notifications and the messages of Discovery,
//! Synchronization and Broadcast, as the core sees them (a transport frames and carries them).

use std::fmt;

use bytes::Bytes;

use crate::{Epoch, Zxid};

/// A member of the ensemble, as its configuration names it (ZooKeeper's `myid`). Who a message
/// comes from is told by the transport, never by the message.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// A vote of fast leader election: who should lead, and the history it would lead with.
///
/// Votes are totally ordered by (epoch, zxid, leader), strictly lexicographically
/// (ZOOKEEPER-1419 broke this order and an election never settled): the member with the newest
/// durable history wins, ties broken by the higher id. Every field must be durable truth on the
/// member it names (ZAB-PITFALLS 2, 3).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Vote {
    /// The last epoch whose NEWLEADER the candidate acknowledged (its `currentEpoch`).
    pub epoch: Epoch,
    /// The candidate's last durably logged zxid.
    pub zxid: Zxid,
    pub leader: PeerId,
}

impl fmt::Debug for Vote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}@({},{})", self.leader, self.epoch.0, self.zxid)
    }
}

/// What a member is doing, as its election notifications say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerState {
    Looking,
    Following,
    Leading,
    Observing,
}

/// A message between two members. Every message of a leader to a learner after `LeaderInfo`,
/// and of a learner to its leader after `FollowerInfo`, names the epoch it belongs to; a message
/// of another epoch is stale and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Fast leader election: the sender's current vote in election round `round`.
    Notification {
        vote: Vote,
        round: u64,
        state: PeerState,
    },
    /// Discovery, learner → leader: what the learner has accepted and logged (FOLLOWERINFO,
    /// OBSERVERINFO).
    FollowerInfo {
        accepted_epoch: Epoch,
        last_zxid: Zxid,
        observer: bool,
    },
    /// Discovery, leader → learner: the new epoch (LEADERINFO, a.k.a. NEWEPOCH).
    LeaderInfo { epoch: Epoch },
    /// Discovery, learner → leader: the learner accepted `epoch` (ACKEPOCH), with its history.
    /// `fresh`: it accepted the epoch in this handshake. An epoch accepted before may already
    /// have been acknowledged to another leader, so only fresh acknowledgements count toward
    /// Discovery's quorum (ZooKeeper sends currentEpoch -1 for the others).
    AckEpoch {
        epoch: Epoch,
        current_epoch: Epoch,
        last_zxid: Zxid,
        fresh: bool,
    },
    /// Synchronization: the learner's log, which ends at `zxid`, is a prefix of the leader's;
    /// proposals follow.
    Diff { epoch: Epoch, zxid: Zxid },
    /// Synchronization: drop every logged txn after `to`; proposals follow.
    Trunc { epoch: Epoch, to: Zxid },
    /// Synchronization: replace the state with this snapshot, exact at `zxid`; proposals follow.
    Snap {
        epoch: Epoch,
        zxid: Zxid,
        data: Bytes,
    },
    /// Synchronization ends: the learner holds the leader's history up to `zxid`.
    NewLeader { epoch: Epoch, zxid: Zxid },
    /// The learner may serve: everything up to `committed` is committed.
    UpToDate { epoch: Epoch, committed: Zxid },
    /// A txn the leader proposes (or, during Synchronization, part of its history).
    Proposal {
        epoch: Epoch,
        zxid: Zxid,
        txn: Bytes,
    },
    /// Learner → leader: every txn up to `zxid` is durable here (also the ACK of NEWLEADER).
    Ack { epoch: Epoch, zxid: Zxid },
    /// Every txn up to `zxid` is committed.
    Commit { epoch: Epoch, zxid: Zxid },
    /// To observers: a committed txn.
    Inform {
        epoch: Epoch,
        zxid: Zxid,
        txn: Bytes,
    },
    /// Leader → learner heartbeat, with the commit point.
    Ping { epoch: Epoch, committed: Zxid },
    /// Learner → leader heartbeat.
    Pong { epoch: Epoch },
}

impl Message {
    /// The epoch a Zab message belongs to; None for election notifications and discovery's
    /// first message.
    pub fn epoch(&self) -> Option<Epoch> {
        match self {
            Message::Notification { .. } | Message::FollowerInfo { .. } => None,
            Message::LeaderInfo { epoch }
            | Message::AckEpoch { epoch, .. }
            | Message::Diff { epoch, .. }
            | Message::Trunc { epoch, .. }
            | Message::Snap { epoch, .. }
            | Message::NewLeader { epoch, .. }
            | Message::UpToDate { epoch, .. }
            | Message::Proposal { epoch, .. }
            | Message::Ack { epoch, .. }
            | Message::Commit { epoch, .. }
            | Message::Inform { epoch, .. }
            | Message::Ping { epoch, .. }
            | Message::Pong { epoch } => Some(*epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn vote() -> impl Strategy<Value = Vote> {
        (0u32..4, 0u64..4, 0u64..4).prop_map(|(e, z, l)| Vote {
            epoch: Epoch(e),
            zxid: Zxid::from_u64(z),
            leader: PeerId(l),
        })
    }

    proptest! {
        /// A strict total order, lexicographic on (epoch, zxid, leader): the property whose
        /// loss kept a 5-member election from settling (ZOOKEEPER-1419).
        #[test]
        fn votes_order_lexicographically(a in vote(), b in vote(), c in vote()) {
            let key = |v: &Vote| (v.epoch, v.zxid, v.leader);
            prop_assert_eq!(a.cmp(&b), key(&a).cmp(&key(&b)));
            prop_assert_eq!(a == b, key(&a) == key(&b));
            if a < b && b < c {
                prop_assert!(a < c);
            }
        }
    }
}
