//! The TCP transport on loopback: frames arrive in order from the right peer, a broken or
//! replaced stream is reported before anything of the next one, bad input closes only its own
//! stream, and a full queue resets instead of growing.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::time::Duration;

use bytes::Bytes;
use coord_transport::{Event, PeerId, SendError, Stream, TcpConfig, TcpTransport, Transport};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

fn free_addr() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

fn config(id: u64, addrs: &BTreeMap<PeerId, SocketAddr>) -> TcpConfig {
    let me = PeerId(id);
    let peers = addrs
        .iter()
        .filter(|(p, _)| **p != me)
        .map(|(p, a)| (*p, *a))
        .collect();
    TcpConfig::new(me, addrs[&me], peers)
}

async fn pair() -> (TcpTransport, TcpTransport) {
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let a = TcpTransport::bind(config(1, &addrs)).await.expect("bind 1");
    let b = TcpTransport::bind(config(2, &addrs)).await.expect("bind 2");
    (a, b)
}

/// The next frame event, skipping resets.
async fn next_frame(t: &mut TcpTransport) -> (PeerId, Stream, Bytes) {
    loop {
        match timeout(WAIT, t.recv()).await.expect("an event in time") {
            Some(Event::Frame {
                from,
                stream,
                frame,
            }) => return (from, stream, frame),
            Some(Event::Reset { .. }) => continue,
            None => panic!("transport gone"),
        }
    }
}

#[tokio::test]
async fn frames_arrive_in_order_from_their_sender() {
    let (a, mut b) = pair().await;
    for i in 0..500u32 {
        let frame = Bytes::from(i.to_be_bytes().to_vec());
        // Queued while the connection comes up: 500 fit the default queue.
        a.send(PeerId(2), Stream::Replication, frame).expect("send");
    }
    a.send(PeerId(2), Stream::Election, Bytes::from_static(b"vote"))
        .expect("send");
    let mut replication = Vec::new();
    let mut election = Vec::new();
    while replication.len() < 500 || election.is_empty() {
        let (from, stream, frame) = next_frame(&mut b).await;
        assert_eq!(from, PeerId(1));
        match stream {
            Stream::Replication => {
                replication.push(u32::from_be_bytes(frame[..].try_into().unwrap()))
            }
            Stream::Election => election.push(frame),
        }
    }
    assert_eq!(replication, (0..500).collect::<Vec<u32>>());
    assert_eq!(election, [Bytes::from_static(b"vote")]);
}

#[tokio::test]
async fn a_reset_stream_is_reported_before_the_next_one_delivers() {
    let (a, mut b) = pair().await;
    a.send(PeerId(2), Stream::Replication, Bytes::from_static(b"first"))
        .expect("send");
    assert_eq!(next_frame(&mut b).await.2, Bytes::from_static(b"first"));
    a.reset(PeerId(2), Stream::Replication);
    // Give the dialer time to drop the connection and come back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(
        PeerId(2),
        Stream::Replication,
        Bytes::from_static(b"second"),
    )
    .expect("send");
    let mut saw_reset = false;
    loop {
        match timeout(WAIT, b.recv()).await.expect("event").expect("open") {
            Event::Reset {
                peer: PeerId(1),
                stream: Stream::Replication,
            } => saw_reset = true,
            Event::Frame { frame, .. } => {
                assert_eq!(frame, Bytes::from_static(b"second"));
                assert!(saw_reset, "a frame of the new stream came before its reset");
                break;
            }
            Event::Reset { .. } => {}
        }
    }
}

#[tokio::test]
async fn bad_input_closes_only_its_own_connection() {
    let (a, mut b) = pair().await;
    let b_addr = b.local_addr();
    // Not a coord peer, a stranger's id, and a frame over the bound.
    let mut junk = TcpStream::connect(b_addr).await.expect("connect");
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("write");
    let mut stranger = TcpStream::connect(b_addr).await.expect("connect");
    let mut hello = b"CRD1".to_vec();
    hello.extend_from_slice(&99u64.to_be_bytes());
    hello.push(2);
    stranger.write_all(&hello).await.expect("write");
    let mut liar = TcpStream::connect(b_addr).await.expect("connect");
    let mut hello = b"CRD1".to_vec();
    hello.extend_from_slice(&1u64.to_be_bytes());
    hello.push(1);
    hello.extend_from_slice(&u32::MAX.to_be_bytes());
    liar.write_all(&hello).await.expect("write");
    // The real peer's stream keeps working.
    for i in 0..3u8 {
        a.send(PeerId(2), Stream::Replication, Bytes::from(vec![i]))
            .expect("send");
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let (from, stream, frame) = next_frame(&mut b).await;
        if stream == Stream::Replication {
            assert_eq!(from, PeerId(1));
            got.push(frame[0]);
        }
    }
    assert_eq!(got, [0, 1, 2]);
}

#[tokio::test]
async fn a_full_queue_resets_instead_of_growing() {
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let mut config = config(1, &addrs);
    config.queue_frames_max = 4;
    // Peer 2 never listens: nothing drains the queue.
    let mut a = TcpTransport::bind(config).await.expect("bind");
    let mut full = false;
    for i in 0..100u8 {
        if let Err(e) = a.send(PeerId(2), Stream::Replication, Bytes::from(vec![i])) {
            assert_eq!(e, SendError::QueueFull(PeerId(2)));
            full = true;
            break;
        }
    }
    assert!(full, "the queue never filled");
    match timeout(WAIT, a.recv()).await.expect("event") {
        Some(Event::Reset {
            peer: PeerId(2),
            stream: Stream::Replication,
        }) => {}
        other => panic!("expected a reset, got {other:?}"),
    }
    assert_eq!(
        a.send(PeerId(3), Stream::Replication, Bytes::new()),
        Err(SendError::UnknownPeer(PeerId(3)))
    );
}

/// A peer that was down long enough for the dialer's backoff to grow (to seconds) hears from
/// this member as soon as it is back and dials in, not when the backoff runs out.
#[tokio::test]
async fn a_peer_that_comes_back_is_dialed_at_once() {
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let mut slow = config(1, &addrs);
    slow.backoff_min = Duration::from_secs(5);
    slow.backoff_max = Duration::from_secs(5);
    let a = TcpTransport::bind(slow).await.expect("bind 1");
    // Peer 2 is down: a's first attempt fails, and its next waits 5 s or more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send(PeerId(2), Stream::Election, Bytes::from_static(b"hello"))
        .unwrap();
    let mut b = TcpTransport::bind(config(2, &addrs)).await.expect("bind 2");
    // b dials a (it has something to say), which tells a that b is back.
    b.send(PeerId(1), Stream::Election, Bytes::from_static(b"hi"))
        .unwrap();
    let (from, _, frame) = timeout(Duration::from_secs(3), next_frame(&mut b))
        .await
        .expect("the frame arrives long before the backoff ends");
    assert_eq!((from, &frame[..]), (PeerId(1), &b"hello"[..]));
}

/// A peer that goes away is noticed at once, not at the next frame sent to it: written into
/// the dead connection, that frame would be lost (an election's notification, say, costing a
/// whole tick). Here the peer reads our handshake and closes; when a real peer comes up on its
/// address, the next frame reaches it.
#[tokio::test]
async fn a_frame_after_the_peer_died_is_not_lost_in_the_dead_connection() {
    use std::io::Read;
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let impostor = StdListener::bind(addrs[&PeerId(2)]).unwrap();
    let a = TcpTransport::bind(config(1, &addrs)).await.expect("bind 1");
    // Both of a's streams connect; the "peer" reads a little, then dies.
    let accepted = tokio::task::spawn_blocking(move || {
        let mut conns = Vec::new();
        for _ in 0..2 {
            let (mut conn, _) = impostor.accept().unwrap();
            let mut hello = [0u8; 8];
            let _ = conn.read(&mut hello);
            conns.push(conn);
        }
    });
    a.send(PeerId(2), Stream::Election, Bytes::from_static(b"one"))
        .unwrap();
    accepted.await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut b = TcpTransport::bind(config(2, &addrs)).await.expect("bind 2");
    a.send(PeerId(2), Stream::Election, Bytes::from_static(b"two"))
        .unwrap();
    let (from, _, frame) = next_frame(&mut b).await;
    assert_eq!((from, &frame[..]), (PeerId(1), &b"two"[..]));
}
