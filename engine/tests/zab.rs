//! Scenarios of the Zab core: each replays a way ZooKeeper lost or forked data
//! (`ZAB-PITFALLS.md`, numbered as there) and checks the core does not. A small harness
//! (`zab/cluster.rs`) delivers messages in order and persists at once, except where a scenario
//! holds them back. Scenarios whose whole exchange is worth pinning are data, in
//! `engine/src/zab/testdata/` (input and expected trace; `zab/scripted.rs` runs them); the
//! rest, which loop or inspect what was sent, are code here.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use coord_engine::zab::{Action, Config, Durable, EpochFile, Message, PeerId, Replica, Role};
use coord_engine::{Bytes, Epoch, Zxid};

#[path = "zab/cluster.rs"]
mod cluster;
#[path = "zab/scripted.rs"]
mod scripted;

use cluster::{txns, Cluster, TICK};

#[test]
fn three_members_elect_the_highest_id_and_commit() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    // Equal (empty) histories: the vote order falls to the id.
    assert_eq!(c.leader(), Some(PeerId(3)));
    c.write("a");
    c.write("b");
    c.run(Duration::from_millis(200));
    for id in [1, 2, 3] {
        assert_eq!(txns(&c.applied[&PeerId(id)]), ["a", "b"], "p{id}");
    }
}

/// PITFALLS 7 (ZOOKEEPER-1154): an old leader rejoins with a txn nobody else has; the new
/// leader TRUNCs it away before the DIFF, and it is never applied anywhere.
#[test]
fn old_leader_uncommitted_tail_is_truncated() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let old = c.leader().expect("leader");
    c.write("committed");
    c.run(Duration::from_millis(200));
    // The leader logs a txn no follower receives, then dies.
    c.isolate(old);
    let lost = c.write("uncommitted");
    c.crash(old);
    c.heal();
    c.run(Duration::from_secs(3));
    let new = c.leader().expect("a new leader");
    assert_ne!(new, old);
    c.write("after");
    c.start(old);
    c.run(Duration::from_secs(3));
    for (id, applied) in &c.applied {
        assert_eq!(txns(applied), ["committed", "after"], "{id:?}");
    }
    for (id, disk) in &c.disks {
        assert!(
            disk.log.iter().all(|(z, _)| *z != lost),
            "{id:?} still logs {lost}"
        );
    }
}

/// PITFALLS 2 and 11 (ZOOKEEPER-4643, -3911): a follower acknowledges NEWLEADER only after the
/// synced history, and then currentEpoch, are durable.
#[test]
fn newleader_ack_waits_for_the_durable_history() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    c.write("a");
    c.write("b");
    c.run(Duration::from_millis(200));
    // A follower restarts and must sync; its disk is slow.
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.crash(follower);
    c.disks.get_mut(&follower).unwrap().log.clear();
    c.disks.get_mut(&follower).unwrap().current = Epoch(0);
    c.slow.insert(follower);
    c.sent.clear();
    c.start(follower);
    c.run(Duration::from_millis(300));
    let acked_newleader = |c: &Cluster| {
        c.sent.iter().any(|(from, _, m)| {
            *from == follower && matches!(m, Message::Ack { zxid, .. } if zxid.counter() == 2)
        })
    };
    assert!(
        !acked_newleader(&c),
        "NEWLEADER acknowledged before the history was durable"
    );
    assert_eq!(c.disks[&follower].current, Epoch(0));
    c.slow.remove(&follower);
    c.fsync(follower);
    c.run(Duration::from_millis(200));
    assert!(acked_newleader(&c));
    assert!(c.disks[&follower].current > Epoch(0));
    assert_eq!(txns(&c.applied[&follower]), ["a", "b"]);
}

/// PITFALLS 17 (ZOOKEEPER-764, -2959): observers are in no quorum, and receive committed txns
/// only.
#[test]
fn observers_neither_vote_nor_count() {
    let mut c = Cluster::new(3, 2);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    assert!(leader.0 <= 3, "an observer was elected");
    c.write("a");
    c.run(Duration::from_millis(200));
    for id in [4, 5] {
        assert_eq!(txns(&c.applied[&PeerId(id)]), ["a"], "observer p{id}");
        assert!(matches!(
            c.replicas[&PeerId(id)].role(),
            Role::Observing { .. }
        ));
    }
    // With two voters down, three members run but only one votes: nothing may commit.
    let followers: Vec<PeerId> = c
        .voters
        .iter()
        .copied()
        .filter(|id| *id != leader)
        .collect();
    for f in &followers {
        c.crash(*f);
    }
    c.run(Duration::from_secs(3));
    assert_eq!(c.leader(), None, "a leader without a voting quorum");
    assert!(
        c.sent
            .iter()
            .all(|(from, _, m)| !(from.0 > 3 && matches!(m, Message::Ack { .. }))),
        "an observer acknowledged a proposal"
    );
}

/// Tells `r` (of {p1, p2, p3}) that p2 follows and p3 leads with `vote`: it joins p3.
fn hear_that_p3_leads(r: &mut Replica, vote: coord_engine::zab::Vote) {
    for (from, state) in [
        (2, coord_engine::zab::PeerState::Following),
        (3, coord_engine::zab::PeerState::Leading),
    ] {
        r.handle_message(
            PeerId(from),
            Message::Notification {
                vote,
                round: 1,
                state,
            },
        );
    }
    assert_eq!(r.role(), Role::Following { leader: PeerId(3) });
}

/// A member of {p1, p2, p3} with `log` durable in epoch 1, following p3 in epoch 2 and
/// waiting for its sync payload (ACKEPOCH sent).
fn follower_awaiting_sync(log: &[(u32, &str)]) -> Replica {
    let voters: BTreeSet<PeerId> = [1, 2, 3].into_iter().map(PeerId).collect();
    let config = Config {
        id: PeerId(1),
        voters,
        observers: BTreeSet::new(),
        tick: TICK,
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
        diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
        compacted_tail_txns: coord_engine::zab::COMPACTED_TAIL_TXNS_DEFAULT,
    };
    let log = log
        .iter()
        .map(|(n, t)| (Zxid::new(Epoch(1), *n), Bytes::from(t.to_string())))
        .collect();
    let durable = Durable {
        accepted_epoch: Epoch(1),
        current_epoch: Epoch(1),
        snapshot_zxid: Zxid::ZERO,
        log,
        log_suspect: false,
    };
    let mut r = Replica::new(config, durable, Duration::ZERO).expect("starts");
    let leader = coord_engine::zab::Vote {
        epoch: Epoch(1),
        zxid: Zxid::new(Epoch(1), 9),
        leader: PeerId(3),
    };
    hear_that_p3_leads(&mut r, leader);
    r.handle_message(PeerId(3), Message::LeaderInfo { epoch: Epoch(2) });
    r.handle_epoch_persisted(EpochFile::Accepted, Epoch(2));
    let actions: Vec<Action> = std::iter::from_fn(|| r.poll_action()).collect();
    assert!(actions.iter().any(|a| matches!(
        a,
        Action::Send {
            message: Message::AckEpoch { .. },
            ..
        }
    )));
    r
}

fn appended(r: &mut Replica) -> Vec<Zxid> {
    std::iter::from_fn(|| r.poll_action())
        .filter_map(|a| match a {
            Action::Append { zxid, .. } => Some(zxid),
            _ => None,
        })
        .collect()
}

/// Measured in a real failover: a follower whose stream to its new leader broke before
/// LEADERINFO looked again; the leader, which needed it for its quorum, answered its
/// notification with "leading", but one member's word was not a quorum, so both waited out
/// the leader's initLimit (20 s by default). A looking member counts itself for a leader whose
/// history is no older than its own, as ZooKeeper counts its own vote.
#[test]
fn a_member_rejoins_a_leader_that_needs_it_after_its_stream_broke() {
    let lead = |zxid: Zxid| {
        let mut r = Replica::new(
            lone_config(),
            Durable {
                accepted_epoch: Epoch(1),
                current_epoch: Epoch(1),
                log: vec![(Zxid::new(Epoch(1), 1), Bytes::from_static(b"t"))],
                ..Durable::default()
            },
            Duration::ZERO,
        )
        .expect("starts");
        // Only the leader answers: p2 is down.
        r.handle_message(
            PeerId(3),
            Message::Notification {
                vote: coord_engine::zab::Vote {
                    epoch: Epoch(1),
                    zxid,
                    leader: PeerId(3),
                },
                round: 1,
                state: coord_engine::zab::PeerState::Leading,
            },
        );
        r.role()
    };
    assert_eq!(
        lead(Zxid::new(Epoch(1), 1)),
        Role::Following { leader: PeerId(3) }
    );
    // A leader with less history than this member is not joined on its own word.
    assert_eq!(lead(Zxid::ZERO), Role::Looking);
}

/// Measured in a real failover: a follower decided a moment before the member it chose did,
/// so its FOLLOWERINFO arrived while that member was still looking and was dropped; the
/// leader then waited for the follower's next tick (2 s by default). It is kept and handled
/// once the member leads.
#[test]
fn a_followerinfo_that_arrives_before_the_election_ends_is_not_lost() {
    let config = Config {
        id: PeerId(3),
        ..lone_config()
    };
    let mut r = Replica::new(config, Durable::default(), Duration::ZERO).expect("starts");
    let vote = coord_engine::zab::Vote {
        epoch: Epoch(0),
        zxid: Zxid::ZERO,
        leader: PeerId(3),
    };
    r.handle_message(
        PeerId(1),
        Message::Notification {
            vote,
            round: 1,
            state: coord_engine::zab::PeerState::Looking,
        },
    );
    r.handle_message(
        PeerId(1),
        Message::FollowerInfo {
            accepted_epoch: Epoch(0),
            last_zxid: Zxid::ZERO,
            observer: false,
        },
    );
    assert_eq!(r.role(), Role::Looking);
    while r.poll_action().is_some() {}
    let decide_at = r.poll_timeout().expect("the vote has a quorum");
    r.handle_timeout(decide_at);
    assert_eq!(r.role(), Role::Leading);
    // With p1's FOLLOWERINFO, p3 has a quorum to choose its epoch with.
    let chose = std::iter::from_fn(|| r.poll_action())
        .any(|a| matches!(a, Action::PersistAcceptedEpoch(Epoch(1))));
    assert!(chose, "the early FOLLOWERINFO was dropped");
}

/// Found by the simulator: a follower holding an uncommitted tail lost the TRUNC that would
/// cut it, then took the leader's next proposals, because a later epoch's first zxid "follows"
/// any older one. Proposals before the sync payload now send it back to election.
#[test]
fn proposals_without_their_sync_payload_are_refused() {
    let mut r = follower_awaiting_sync(&[(1, "a"), (2, "uncommitted")]);
    r.handle_message(
        PeerId(3),
        Message::Proposal {
            epoch: Epoch(2),
            zxid: Zxid::new(Epoch(2), 1),
            txn: Bytes::from_static(b"new"),
        },
    );
    assert!(appended(&mut r).is_empty());
    assert_eq!(r.role(), Role::Looking);
    assert_eq!(r.last_appended(), Zxid::new(Epoch(1), 2));
}

/// Found by the simulator: a stream broke after DIFF and the next one carried later proposals;
/// the follower appended them over the hole. The transport now reports the break first.
#[test]
fn a_broken_stream_to_the_leader_means_a_new_sync() {
    let mut r = follower_awaiting_sync(&[(1, "a")]);
    r.handle_message(
        PeerId(3),
        Message::Diff {
            epoch: Epoch(2),
            zxid: Zxid::new(Epoch(1), 1),
        },
    );
    r.handle_link_reset(PeerId(3));
    assert_eq!(r.role(), Role::Looking);
    r.handle_message(
        PeerId(3),
        Message::Proposal {
            epoch: Epoch(2),
            zxid: Zxid::new(Epoch(2), 1),
            txn: Bytes::from_static(b"past a hole"),
        },
    );
    assert!(appended(&mut r).is_empty());
}

/// A DIFF must start where this log ends; from anywhere else it would leave a hole.
#[test]
fn a_diff_from_elsewhere_is_refused() {
    let mut r = follower_awaiting_sync(&[(1, "a"), (2, "b")]);
    r.handle_message(
        PeerId(3),
        Message::Diff {
            epoch: Epoch(2),
            zxid: Zxid::new(Epoch(1), 1),
        },
    );
    assert_eq!(r.role(), Role::Looking);
}

/// PITFALLS 1 (ZOOKEEPER-335, -1343): an epoch accepted before may already have been
/// acknowledged to another leader, so its ACKEPOCH says so and does not count toward a
/// Discovery quorum; one accepted in this handshake does.
#[test]
fn an_epoch_accepted_before_is_not_acknowledged_as_fresh() {
    let voters: BTreeSet<PeerId> = [1, 2, 3].into_iter().map(PeerId).collect();
    let config = Config {
        id: PeerId(1),
        voters,
        observers: BTreeSet::new(),
        tick: TICK,
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
        diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
        compacted_tail_txns: coord_engine::zab::COMPACTED_TAIL_TXNS_DEFAULT,
    };
    let durable = Durable {
        accepted_epoch: Epoch(4),
        current_epoch: Epoch(3),
        ..Durable::default()
    };
    let mut r = Replica::new(config, durable, Duration::ZERO).expect("starts");
    let vote = coord_engine::zab::Vote {
        epoch: Epoch(3),
        zxid: Zxid::ZERO,
        leader: PeerId(3),
    };
    hear_that_p3_leads(&mut r, vote);
    r.handle_message(PeerId(3), Message::LeaderInfo { epoch: Epoch(4) });
    let fresh: Vec<bool> = std::iter::from_fn(|| r.poll_action())
        .filter_map(|a| match a {
            Action::Send {
                message: Message::AckEpoch { fresh, .. },
                ..
            } => Some(fresh),
            _ => None,
        })
        .collect();
    assert_eq!(fresh, [false]);
}

/// Found by the simulator: a voter that accepted the epoch of a candidate that never got a
/// quorum refuses every LEADERINFO of a lower epoch, so it could never join the leader that
/// did establish itself. That leader steps down, and the next election goes above both.
#[test]
fn a_voter_ahead_in_accepted_epoch_gets_a_new_election() {
    // A FOLLOWERINFO with `accepted` (relative to the leader's epoch) from another voter, and
    // the leader's role after it.
    let role_after = |ahead: u32| {
        let mut c = Cluster::new(3, 0);
        c.run(Duration::from_secs(2));
        let leader = c.leader().expect("leader");
        let epoch = c.replicas[&leader]
            .established_epoch()
            .expect("established");
        let other = c.voters.iter().copied().find(|id| *id != leader).unwrap();
        let r = c.replicas.get_mut(&leader).unwrap();
        r.handle_message(
            other,
            Message::FollowerInfo {
                accepted_epoch: Epoch(epoch.0 + ahead),
                last_zxid: Zxid::ZERO,
                observer: false,
            },
        );
        r.role()
    };
    assert_eq!(role_after(2), Role::Looking);
    // A re-handshake at the leader's own epoch (after a broken stream) is no reason to.
    assert_eq!(role_after(0), Role::Leading);
}

/// A leader whose log no longer reaches back to a follower's last zxid (it was compacted into
/// a snapshot) sends a SNAP exact at its commit point, then the txns after it.
#[test]
fn a_follower_behind_the_compacted_log_gets_a_snapshot() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.write("a");
    c.run(Duration::from_millis(200));
    c.crash(follower);
    c.write("b");
    let last = c.write("c");
    c.run(Duration::from_millis(200));
    c.replicas.get_mut(&leader).unwrap().handle_compacted(last);
    c.sent.clear();
    c.start(follower);
    c.run(Duration::from_secs(3));
    assert!(
        c.sent.iter().any(|(from, to, m)| *from == leader
            && *to == follower
            && matches!(m, Message::Snap { .. })),
        "no SNAP was sent"
    );
    c.write("d");
    c.run(Duration::from_millis(200));
    assert_eq!(txns(&c.applied[&follower]), ["a", "b", "c", "d"]);
}

/// A DIFF longer than a link queues can never get through: past `diff_txns_max` a learner
/// gets a SNAP, even though the leader's log still reaches back to it.
#[test]
fn a_follower_too_far_behind_for_a_diff_gets_a_snapshot() {
    let mut c = Cluster::new(3, 0);
    c.diff_txns_max = 3;
    let ids: Vec<PeerId> = c.voters.iter().copied().collect();
    for id in ids {
        c.start(id);
    }
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.write("a");
    c.run(Duration::from_millis(200));
    c.crash(follower);
    for t in ["b", "c", "d", "e"] {
        c.write(t);
    }
    c.run(Duration::from_millis(200));
    c.sent.clear();
    c.start(follower);
    c.run(Duration::from_secs(3));
    let to_follower: Vec<&Message> = c
        .sent
        .iter()
        .filter(|(from, to, _)| *from == leader && *to == follower)
        .map(|(_, _, m)| m)
        .collect();
    assert!(
        to_follower
            .iter()
            .any(|m| matches!(m, Message::Snap { .. })),
        "no SNAP: {to_follower:?}"
    );
    assert!(!to_follower
        .iter()
        .any(|m| matches!(m, Message::Diff { .. })));
    assert_eq!(txns(&c.applied[&follower]), ["a", "b", "c", "d", "e"]);
}

/// Protocol-aware recovery (Alagappan et al., FAST 2018): a member whose durable log lost a
/// tail it had acknowledged must not vote, nor count in a quorum, until a leader synced it.
/// Here C acknowledged "x" (committed by A and C), then lost it to damage; with A down, B and C
/// must not elect a leader without "x". When A is back, "x" survives and C is whole again.
#[test]
fn a_member_whose_log_lost_acknowledged_txns_does_not_vote_until_synced() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let a = c.leader().expect("leader");
    let others: Vec<PeerId> = c.voters.iter().copied().filter(|id| *id != a).collect();
    let (b, cc) = (others[0], others[1]);
    c.write("before");
    c.run(Duration::from_millis(200));
    c.isolate(b);
    c.write("x");
    c.run(Duration::from_millis(200));
    assert_eq!(txns(&c.applied[&a]), ["before", "x"]);
    // A dies; C restarts with "x" cut off its log by damage, and knows it.
    c.crash(a);
    c.crash(cc);
    let disk = c.disks.get_mut(&cc).unwrap();
    disk.log.pop();
    disk.suspect = true;
    c.heal();
    c.isolate(a);
    c.start(cc);
    c.run(Duration::from_secs(3));
    assert_eq!(
        c.leader(),
        None,
        "B and C elected a leader that lacks \"x\""
    );
    // A returns: the ensemble has a leader again, with "x", and C counts again.
    c.heal();
    c.start(a);
    c.run(Duration::from_secs(3));
    assert!(c.leader().is_some());
    c.write("after");
    c.run(Duration::from_secs(1));
    for id in [a, b, cc] {
        assert_eq!(txns(&c.applied[&id]), ["before", "x", "after"], "{id:?}");
    }
    assert!(!c.disks[&cc].suspect, "C was synced but is still suspect");
}

/// PITFALLS 10 and 4712: a leader demoted while its appends are still being written must not
/// advertise a log before the writer drained; then its vote names the txn, and the new
/// leader cuts it (TRUNC) because nobody else has it.
#[test]
fn a_demoted_leader_votes_only_once_its_writer_drained() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let old = c.leader().expect("leader");
    c.write("committed");
    c.run(Duration::from_millis(200));
    c.slow.insert(old);
    c.isolate(old);
    let pending = c.write("pending");
    // Demoted (no quorum) while "pending" is not durable.
    c.run(Duration::from_secs(1));
    assert_eq!(c.replicas[&old].role(), Role::Looking);
    c.sent.clear();
    c.run(Duration::from_millis(500));
    assert!(
        c.sent.iter().all(|(from, _, _)| *from != old),
        "votes went out before the log drained"
    );
    c.slow.remove(&old);
    c.fsync(old);
    c.sent.clear();
    c.run(Duration::from_millis(100));
    let vote = c.sent.iter().find_map(|(from, _, m)| match m {
        Message::Notification { vote, .. } if *from == old && vote.leader == old => Some(*vote),
        _ => None,
    });
    assert_eq!(
        vote.map(|v| v.zxid),
        Some(pending),
        "the vote names the durable log"
    );
    c.heal();
    c.run(Duration::from_secs(3));
    c.write("after");
    c.run(Duration::from_secs(1));
    // "pending" is in the history only if its leader won again (then its whole log is
    // committed); either way every member holds one history.
    let histories: Vec<Vec<String>> = c.applied.values().map(|a| txns(a)).collect();
    assert!(
        histories.iter().all(|h| *h == histories[0]),
        "{histories:?}"
    );
    assert!(histories[0].starts_with(&["committed".to_owned()]));
    assert_eq!(histories[0].last().map(String::as_str), Some("after"));
}

/// PITFALLS 15 (ZOOKEEPER-1489): after a TRUNC the log goes on where it was cut; a restart
/// finds one gap-free history.
#[test]
fn a_restart_after_trunc_finds_one_history() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let old = c.leader().expect("leader");
    c.write("a");
    c.run(Duration::from_millis(200));
    c.isolate(old);
    c.write("cut");
    c.crash(old);
    c.heal();
    c.run(Duration::from_secs(3));
    c.write("b");
    c.start(old);
    c.run(Duration::from_secs(3));
    c.write("c");
    c.run(Duration::from_millis(300));
    // Everyone restarts from disk: the logs must be valid histories (Replica::new checks the
    // chain) and agree.
    let ids: Vec<PeerId> = c.voters.iter().copied().collect();
    for id in &ids {
        c.crash(*id);
    }
    for id in &ids {
        c.start(*id);
    }
    c.run(Duration::from_secs(3));
    c.write("d");
    c.run(Duration::from_millis(300));
    for (id, applied) in &c.applied {
        assert_eq!(txns(applied), ["a", "b", "c", "d"], "{id:?}");
    }
}

fn lone_config() -> Config {
    Config {
        id: PeerId(1),
        voters: [1, 2, 3].into_iter().map(PeerId).collect(),
        observers: BTreeSet::new(),
        tick: TICK,
        init_limit_ticks: 10,
        sync_limit_ticks: 5,
        diff_txns_max: coord_engine::zab::DIFF_TXNS_MAX_DEFAULT,
        diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
        compacted_tail_txns: coord_engine::zab::COMPACTED_TAIL_TXNS_DEFAULT,
    }
}

/// PITFALLS 6 (ZOOKEEPER-2307, -4269): a disk whose epoch files disagree with each other or
/// with the log is refused at start, and so is a log with a hole.
#[test]
fn inconsistent_disks_are_refused_at_start() {
    use coord_engine::zab::DurableError;
    let txn = Bytes::from_static(b"t");
    let refuse =
        |durable: Durable| Replica::new(lone_config(), durable, Duration::ZERO).unwrap_err();
    assert!(matches!(
        refuse(Durable {
            accepted_epoch: Epoch(1),
            current_epoch: Epoch(2),
            ..Durable::default()
        }),
        DurableError::AcceptedBelowCurrent { .. }
    ));
    assert!(matches!(
        refuse(Durable {
            accepted_epoch: Epoch(1),
            current_epoch: Epoch(1),
            log: vec![(Zxid::new(Epoch(2), 1), txn.clone())],
            ..Durable::default()
        }),
        DurableError::AcceptedBelowLog { .. }
    ));
    assert!(matches!(
        refuse(Durable {
            accepted_epoch: Epoch(1),
            current_epoch: Epoch(1),
            log: vec![
                (Zxid::new(Epoch(1), 1), txn.clone()),
                (Zxid::new(Epoch(1), 3), txn)
            ],
            ..Durable::default()
        }),
        DurableError::LogGap { .. }
    ));
}

/// PITFALLS 16 (ZOOKEEPER-1549, -2832): at start only the snapshot is known committed; the
/// log's tail is applied when a leader commits it, never before.
#[test]
fn nothing_past_the_snapshot_is_applied_at_start() {
    let durable = Durable {
        accepted_epoch: Epoch(2),
        current_epoch: Epoch(2),
        snapshot_zxid: Zxid::new(Epoch(2), 1),
        log: vec![(
            Zxid::new(Epoch(2), 2),
            Bytes::from_static(b"maybe uncommitted"),
        )],
        log_suspect: false,
    };
    let mut r = Replica::new(lone_config(), durable, Duration::ZERO).expect("starts");
    r.handle_tick(TICK);
    let applied = std::iter::from_fn(|| r.poll_action())
        .filter(|a| matches!(a, Action::Apply { .. } | Action::Commit { .. }))
        .count();
    assert_eq!(applied, 0);
    assert_eq!(r.last_committed(), Zxid::new(Epoch(2), 1));
}

/// PITFALLS 8 (ZOOKEEPER-962, -2418, -4925): a follower syncs while the leader commits a write
/// between every two messages it delivers; the payload and the live stream meet without a gap
/// or an overlap.
#[test]
fn commits_during_every_sync_step_are_neither_lost_nor_doubled() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.write("a");
    c.run(Duration::from_millis(200));
    c.crash(follower);
    c.write("b");
    c.run(Duration::from_millis(200));
    c.start(follower);
    let mut n = 0;
    // Message by message until the follower is in sync; a write after each step.
    for _ in 0..2000 {
        if !c.step() {
            c.run(TICK);
        }
        n += 1;
        c.write(&format!("w{n}"));
        if n >= 60 {
            break;
        }
    }
    c.run(Duration::from_secs(1));
    let expected: Vec<String> = ["a", "b"]
        .iter()
        .map(|s| s.to_string())
        .chain((1..=n).map(|i| format!("w{i}")))
        .collect();
    for (id, applied) in &c.applied {
        assert_eq!(txns(applied), expected, "{id:?}");
    }
}

/// PITFALLS 14 (ZOOKEEPER-3104): writes go on while a SNAP is on its way; the follower gets
/// the image exact at its zxid, then every txn after it, then NEWLEADER.
#[test]
fn writes_during_a_snap_follow_the_image() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.crash(follower);
    let last = c.write("a");
    c.run(Duration::from_millis(200));
    c.replicas.get_mut(&leader).unwrap().handle_compacted(last);
    c.sent.clear();
    c.start(follower);
    for i in 0..40 {
        c.step();
        c.write(&format!("w{i}"));
    }
    c.run(Duration::from_secs(2));
    assert!(c
        .sent
        .iter()
        .any(|(_, to, m)| *to == follower && matches!(m, Message::Snap { .. })));
    let expected: Vec<String> = std::iter::once("a".to_owned())
        .chain((0..40).map(|i| format!("w{i}")))
        .collect();
    for (id, applied) in &c.applied {
        assert_eq!(txns(applied), expected, "{id:?}");
    }
}

/// PITFALLS 12 (ZOOKEEPER-4685, -4394): a follower whose disk is slow acknowledges NEWLEADER
/// first, and only then the proposals that came after it.
#[test]
fn newleader_is_acknowledged_before_later_proposals() {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let leader = c.leader().expect("leader");
    let follower = c.voters.iter().copied().find(|id| *id != leader).unwrap();
    c.write("a");
    c.run(Duration::from_millis(200));
    c.crash(follower);
    c.write("b");
    c.run(Duration::from_millis(200));
    c.slow.insert(follower);
    c.sent.clear();
    c.start(follower);
    // The sync arrives and, before the follower's disk catches up, more proposals.
    for i in 0..20 {
        c.step();
        c.write(&format!("w{i}"));
    }
    c.run(Duration::from_millis(200));
    c.slow.remove(&follower);
    c.fsync(follower);
    c.run(Duration::from_millis(500));
    let newleader = c
        .sent
        .iter()
        .find_map(|(_, to, m)| match m {
            Message::NewLeader { zxid, .. } if *to == follower => Some(*zxid),
            _ => None,
        })
        .expect("a NEWLEADER");
    let acks: Vec<Zxid> = c
        .sent
        .iter()
        .filter_map(|(from, _, m)| match m {
            Message::Ack { zxid, .. } if *from == follower => Some(*zxid),
            _ => None,
        })
        .collect();
    assert_eq!(acks.first(), Some(&newleader), "{acks:?}");
    assert!(acks.windows(2).all(|w| w[0] < w[1]), "acks go up: {acks:?}");
    assert_eq!(txns(&c.applied[&follower]).len(), 22);
}

/// One test per file of `engine/src/zab/testdata/` (see `zab/scripted.rs` for the commands).
macro_rules! scripted {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                scripted::run_file(stringify!($name));
            }
        )*

        #[test]
        fn every_scripted_scenario_runs() {
            let listed: BTreeSet<String> = [$(stringify!($name)),*]
                .into_iter()
                .map(str::to_owned)
                .collect();
            assert_eq!(scripted::files(), listed, "list each testdata file in scripted!");
        }
    };
}

scripted!(
    election,
    diff,
    diff_after_compaction,
    trunc,
    snap,
    pitfall_03_nothing_unearned_is_advertised,
    pitfall_04_no_epoch_wraps,
    pitfall_05_stale_notifications,
    pitfall_18_duplicates_and_late_joiners,
);

/// How a member that was down is brought back.
#[derive(Debug, Clone, Copy)]
enum SyncKind {
    Diff,
    Trunc,
    Snap,
}

/// A cluster with a leader and one member down that, started, is synced by `kind`: the
/// txns every member must end with, the member, and the leader.
fn about_to_sync(kind: SyncKind) -> (Cluster, Vec<String>, PeerId, PeerId) {
    let mut c = Cluster::new(3, 0);
    c.run(Duration::from_secs(2));
    let first = c.leader().expect("leader");
    c.write("a");
    c.run(Duration::from_millis(200));
    let back = match kind {
        SyncKind::Diff | SyncKind::Snap => {
            let follower = c.voters.iter().copied().find(|id| *id != first).unwrap();
            c.crash(follower);
            follower
        }
        SyncKind::Trunc => {
            // The old leader logs a txn nobody else gets, then dies.
            c.isolate(first);
            c.write("lost");
            c.crash(first);
            c.heal();
            c.run(Duration::from_secs(3));
            first
        }
    };
    c.write("b");
    c.write("c");
    c.run(Duration::from_millis(200));
    let leader = c.leader().expect("leader");
    if matches!(kind, SyncKind::Snap) {
        c.compact(leader);
    }
    let history = ["a", "b", "c"].map(str::to_owned).to_vec();
    (c, history, back, leader)
}

/// PITFALLS 9 and 13 (ZOOKEEPER-2678, -2872, -3642, -2355): a member restarts, dropping
/// everything in memory, after each message of its sync by DIFF, TRUNC or SNAP; or the leader
/// dies at that point and another leader finishes the job. Either way the member comes back
/// with the committed history, nothing else, and so does every other member after a restart.
#[test]
fn a_crash_at_every_step_of_a_sync_keeps_one_history() {
    let victims = ["member", "leader", "both"];
    for kind in [SyncKind::Diff, SyncKind::Trunc, SyncKind::Snap] {
        for victim in victims {
            let mut steps = 0;
            loop {
                let (mut c, mut history, back, leader) = about_to_sync(kind);
                c.start(back);
                let delivered = (0..steps).take_while(|_| c.step()).count();
                if delivered < steps {
                    break; // past the end of the sync
                }
                let context = format!("{kind:?}, {victim} crashes after {steps} messages");
                if victim != "leader" {
                    c.crash(back);
                }
                if victim != "member" {
                    c.crash(leader);
                }
                c.run(Duration::from_secs(3));
                c.start(back);
                c.start(leader);
                c.run(Duration::from_secs(3));
                assert!(c.leader().is_some(), "{context}: no leader");
                c.write("after");
                history.push("after".to_owned());
                c.run(Duration::from_millis(500));
                for (id, applied) in &c.applied {
                    assert_eq!(txns(applied), history, "{context}: {id:?}");
                }
                // What is on every disk is one history too.
                for id in c.members() {
                    c.crash(id);
                }
                for id in c.members() {
                    c.start(id);
                }
                c.run(Duration::from_secs(3));
                c.write("again");
                history.push("again".to_owned());
                c.run(Duration::from_millis(500));
                for (id, applied) in &c.applied {
                    assert_eq!(txns(applied), history, "{context}, restarted: {id:?}");
                }
                steps += 1;
            }
            assert!(steps > 5, "{kind:?}: a sync of {steps} messages");
        }
    }
}
