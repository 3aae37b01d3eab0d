//! The Zab core over the TCP transport on loopback: three members, each a task that owns its
//! replica, elect a leader, commit writes, and survive the leader's transport going away.
//! Storage is in memory here (the durable runtime is a later step); what is under test is
//! the wire form, the two streams and the reset contract, end to end over real sockets.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use bytes::Bytes;
use common::{leader, spawn, until, Member};
use coord_transport::{PeerId, TcpConfig, TcpTransport};
use tokio::time::timeout;

mod common;

fn free_addr() -> SocketAddr {
    StdListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_commit_over_tcp_and_survive_the_leader() {
    let addrs: BTreeMap<PeerId, SocketAddr> = (1..=3).map(|i| (PeerId(i), free_addr())).collect();
    let mut members = BTreeMap::new();
    for i in 1..=3 {
        let me = PeerId(i);
        let peers = addrs
            .iter()
            .filter(|(p, _)| **p != me)
            .map(|(p, a)| (*p, *a))
            .collect();
        let transport = TcpTransport::bind(TcpConfig::new(me, addrs[&me], peers))
            .await
            .unwrap();
        members.insert(i, spawn(i, addrs.keys().copied().collect(), transport));
    }
    let mut members: BTreeMap<u64, Member> = members;
    until(&members, "a leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let first = leader(&members).unwrap();
    for i in 0..20 {
        members[&first]
            .writes
            .send(Bytes::from(format!("w{i}")))
            .await
            .unwrap();
    }
    until(&members, "20 writes everywhere", |s| {
        s.values().all(|s| s.applied.len() == 20)
    })
    .await;

    // The leader goes away: its transport closes, the others elect among themselves.
    let gone = members.remove(&first).unwrap();
    let _ = gone.stop.send(true);
    timeout(Duration::from_secs(5), gone.task)
        .await
        .unwrap()
        .unwrap();
    until(&members, "a new leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let second = leader(&members).unwrap();
    assert_ne!(second, first);
    members[&second]
        .writes
        .send(Bytes::from_static(b"after"))
        .await
        .unwrap();
    until(&members, "the write after failover", |s| {
        s.values().all(|s| s.applied.len() == 21)
    })
    .await;
    let histories: Vec<Vec<Bytes>> = members
        .values()
        .map(|m| m.status.borrow().applied.clone())
        .collect();
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[0].last(), Some(&Bytes::from_static(b"after")));
    for m in members.values() {
        let _ = m.stop.send(true);
    }
}
