//! Three members over a slow, lossy link, once over TCP and once over QUIC: every member reaches
//! its peers through a userspace relay on loopback that delays each packet by 40 ms each way
//! (and, for QUIC's UDP, drops 2% of the datagrams; TCP's relay only delays, as loss under TCP
//! is the kernel's to recover). The ensemble must commit and recover from the loss of its
//! leader on both; the throughput and latency of each are printed side by side (a measurement,
//! not asserted; `cargo test -p coord-transport --test lossy_link -- --nocapture`).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{leader, spawn, until, Member};
use coord_transport::certs::CertAuthority;
use coord_transport::{PeerId, QuicConfig, QuicTransport, TcpConfig, TcpTransport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

mod common;

const DELAY: Duration = Duration::from_millis(40);
const UDP_DROP: f64 = 0.02;
/// Writes proposed at once, for throughput, and one by one, for latency.
const BURST: usize = 200;
const SEQUENTIAL: usize = 20;

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A UDP relay to `to`: each datagram, either way, waits `DELAY` and is dropped with
/// probability `drop_rate`. One upstream socket per client address, as a NAT would.
async fn udp_relay(to: SocketAddr, seed: u64, drop_rate: f64) -> SocketAddr {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let rng = Arc::new(std::sync::Mutex::new(StdRng::seed_from_u64(seed)));
    tokio::spawn(async move {
        let mut sessions: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = front.recv_from(&mut buf).await {
            if rng.lock().unwrap().gen_bool(drop_rate) {
                continue;
            }
            let back = match sessions.get(&from) {
                Some(back) => back.clone(),
                None => {
                    let back = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    back.connect(to).await.unwrap();
                    let (reply, front, rng) = (back.clone(), front.clone(), rng.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n) = reply.recv(&mut buf).await {
                            if rng.lock().unwrap().gen_bool(drop_rate) {
                                continue;
                            }
                            let (front, data) = (front.clone(), buf[..n].to_vec());
                            tokio::spawn(async move {
                                tokio::time::sleep(DELAY).await;
                                let _ = front.send_to(&data, from).await;
                            });
                        }
                    });
                    sessions.insert(from, back.clone());
                    back
                }
            };
            let data = buf[..n].to_vec();
            tokio::spawn(async move {
                tokio::time::sleep(DELAY).await;
                let _ = back.send(&data).await;
            });
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk `DELAY` late, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = from.read(&mut buf).await {
        if n == 0
            || tx
                .send((Instant::now() + DELAY, buf[..n].to_vec()))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// A TCP relay to `to` that delays every byte by `DELAY` each way.
async fn tcp_relay(to: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = TcpStream::connect(to).await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let (client_rx, client_tx) = client.into_split();
            let (up_rx, up_tx) = upstream.into_split();
            tokio::spawn(delayed_copy(client_rx, up_tx));
            tokio::spawn(delayed_copy(up_rx, client_tx));
        }
    });
    addr
}

/// What one run measured.
struct Figures {
    burst_per_second: f64,
    latency_p50: Duration,
    latency_max: Duration,
    failover: Duration,
}

/// Elects, commits a burst and a sequence of writes (timing both), stops the leader, and
/// commits again under the new one.
async fn exercise(mut members: BTreeMap<u64, Member>) -> Figures {
    until(&members, "a leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let first = leader(&members).unwrap();
    let started = Instant::now();
    for i in 0..BURST {
        members[&first]
            .writes
            .send(Bytes::from(format!("burst-{i}")))
            .await
            .unwrap();
    }
    until(&members, "the burst everywhere", |s| {
        s.values().all(|s| s.applied.len() == BURST)
    })
    .await;
    let burst_per_second = BURST as f64 / started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for i in 0..SEQUENTIAL {
        let before = members[&first].status.borrow().applied.len();
        let proposed = Instant::now();
        members[&first]
            .writes
            .send(Bytes::from(format!("one-{i}")))
            .await
            .unwrap();
        let mut status = members[&first].status.clone();
        timeout(
            Duration::from_secs(20),
            status.wait_for(|s| s.applied.len() > before),
        )
        .await
        .unwrap()
        .unwrap();
        latencies.push(proposed.elapsed());
    }
    latencies.sort();

    let gone = members.remove(&first).unwrap();
    let _ = gone.stop.send(true);
    timeout(Duration::from_secs(5), gone.task)
        .await
        .unwrap()
        .unwrap();
    let stopped = Instant::now();
    until(&members, "a new leader", |s| {
        s.values().filter(|s| s.established).count() == 1
    })
    .await;
    let failover = stopped.elapsed();
    let second = leader(&members).unwrap();
    assert_ne!(second, first);
    members[&second]
        .writes
        .send(Bytes::from_static(b"after"))
        .await
        .unwrap();
    let total = BURST + SEQUENTIAL + 1;
    until(&members, "the write after the failover", |s| {
        s.values().all(|s| s.applied.len() == total)
    })
    .await;
    let histories: Vec<Vec<Bytes>> = members
        .values()
        .map(|m| m.status.borrow().applied.clone())
        .collect();
    assert_eq!(histories[0], histories[1]);
    for m in members.values() {
        let _ = m.stop.send(true);
    }
    Figures {
        burst_per_second,
        latency_p50: latencies[latencies.len() / 2],
        latency_max: latencies[latencies.len() - 1],
        failover,
    }
}

async fn over_tcp() -> Figures {
    let listens: BTreeMap<PeerId, SocketAddr> = (1..=3).map(|i| (PeerId(i), free_tcp())).collect();
    let mut relays = BTreeMap::new();
    for (id, addr) in &listens {
        relays.insert(*id, tcp_relay(*addr).await);
    }
    let voters: BTreeSet<PeerId> = listens.keys().copied().collect();
    let mut members = BTreeMap::new();
    for (&id, &listen) in &listens {
        let peers = relays
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        let transport = TcpTransport::bind(TcpConfig::new(id, listen, peers))
            .await
            .unwrap();
        members.insert(id.0, spawn(id.0, voters.clone(), transport));
    }
    exercise(members).await
}

async fn over_quic(drop_rate: f64) -> Figures {
    let ca = CertAuthority::new("lossy link CA").unwrap();
    let listens: BTreeMap<PeerId, SocketAddr> = (1..=3).map(|i| (PeerId(i), free_udp())).collect();
    let mut relays = BTreeMap::new();
    for (id, addr) in &listens {
        relays.insert(*id, udp_relay(*addr, id.0, drop_rate).await);
    }
    let voters: BTreeSet<PeerId> = listens.keys().copied().collect();
    let mut members = BTreeMap::new();
    for (&id, &listen) in &listens {
        let peers = relays
            .iter()
            .filter(|(p, _)| **p != id)
            .map(|(p, a)| (*p, *a))
            .collect();
        let credentials = ca
            .member("lossy", id)
            .unwrap()
            .credentials(ca.cert_pem())
            .unwrap();
        let config = QuicConfig::new(id, "lossy".into(), listen, peers, credentials);
        let transport = QuicTransport::bind(config).await.unwrap();
        members.insert(id.0, spawn(id.0, voters.clone(), transport));
    }
    exercise(members).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_lossy_link_commits_and_recovers_over_tcp_and_quic() {
    let tcp = timeout(Duration::from_secs(120), over_tcp())
        .await
        .expect("TCP run in time");
    let quic = timeout(Duration::from_secs(120), over_quic(UDP_DROP))
        .await
        .expect("QUIC run in time");
    // The same link without loss, to tell what the loss costs from what QUIC costs.
    let quic_lossless = timeout(Duration::from_secs(120), over_quic(0.0))
        .await
        .expect("lossless QUIC run in time");
    println!(
        "link: {} ms each way; QUIC also loses {:.0}% of datagrams",
        DELAY.as_millis(),
        UDP_DROP * 100.0
    );
    println!(
        "{:<6} {:>14} {:>14} {:>14} {:>10}",
        "", "burst/s", "commit p50", "commit max", "failover"
    );
    for (name, f) in [
        ("tcp", &tcp),
        ("quic", &quic),
        ("quic, no loss", &quic_lossless),
    ] {
        println!(
            "{name:<14} {:>14.0} {:>11.0} ms {:>11.0} ms {:>7.0} ms",
            f.burst_per_second,
            f.latency_p50.as_secs_f64() * 1e3,
            f.latency_max.as_secs_f64() * 1e3,
            f.failover.as_secs_f64() * 1e3
        );
    }
}
