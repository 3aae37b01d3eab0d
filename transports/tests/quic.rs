//! The QUIC transport on loopback: frames arrive in order from the member the certificate
//! names, a reset is reported before anything of the next stream, and rogue peers (another CA,
//! no certificate, an expired one, a certificate naming no member, another member's
//! certificate) are refused at the handshake while the members go on talking.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use coord_transport::certs::{CertAuthority, Issued};
use coord_transport::tls::{member_name, TlsError};
use coord_transport::{Event, PeerId, QuicConfig, QuicError, QuicTransport, Stream, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);
const ENSEMBLE: &str = "test";

fn free_addr() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn config(ca: &CertAuthority, id: u64, addrs: &BTreeMap<PeerId, SocketAddr>) -> QuicConfig {
    let me = PeerId(id);
    let peers = addrs
        .iter()
        .filter(|(p, _)| **p != me)
        .map(|(p, a)| (*p, *a))
        .collect();
    let credentials = ca
        .member(ENSEMBLE, me)
        .unwrap()
        .credentials(ca.cert_pem())
        .unwrap();
    QuicConfig::new(me, ENSEMBLE.into(), addrs[&me], peers, credentials)
}

async fn pair(ca: &CertAuthority) -> (QuicTransport, QuicTransport) {
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let a = QuicTransport::bind(config(ca, 1, &addrs)).await.unwrap();
    let b = QuicTransport::bind(config(ca, 2, &addrs)).await.unwrap();
    (a, b)
}

async fn next_frame(t: &mut QuicTransport) -> (PeerId, Stream, Bytes) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_arrive_in_order_from_the_member_the_certificate_names() {
    let ca = CertAuthority::new("test CA").unwrap();
    let (a, mut b) = pair(&ca).await;
    for i in 0..500u32 {
        a.send(
            PeerId(2),
            Stream::Replication,
            Bytes::from(i.to_be_bytes().to_vec()),
        )
        .unwrap();
    }
    a.send(PeerId(2), Stream::Election, Bytes::from_static(b"vote"))
        .unwrap();
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
    // A frame of several MiB (a snapshot chunk, a big proposal) goes through whole.
    let big = Bytes::from(vec![7u8; 3 << 20]);
    a.send(PeerId(2), Stream::Replication, big.clone()).unwrap();
    assert_eq!(next_frame(&mut b).await.2, big);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_stream_is_reported_before_the_next_one_delivers() {
    let ca = CertAuthority::new("test CA").unwrap();
    let (a, mut b) = pair(&ca).await;
    a.send(PeerId(2), Stream::Replication, Bytes::from_static(b"first"))
        .unwrap();
    assert_eq!(next_frame(&mut b).await.2, Bytes::from_static(b"first"));
    a.reset(PeerId(2), Stream::Replication);
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.send(
        PeerId(2),
        Stream::Replication,
        Bytes::from_static(b"second"),
    )
    .unwrap();
    let mut saw_reset = false;
    loop {
        match timeout(WAIT, b.recv()).await.unwrap().unwrap() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_another_members_certificate_does_not_start() {
    let ca = CertAuthority::new("test CA").unwrap();
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), free_addr())].into();
    let mut impostor = config(&ca, 1, &addrs);
    impostor.credentials = ca
        .member(ENSEMBLE, PeerId(2))
        .unwrap()
        .credentials(ca.cert_pem())
        .unwrap();
    match QuicTransport::bind(impostor).await {
        Err(QuicError::Tls(TlsError::NotThisMember { name, .. })) => {
            assert_eq!(name, member_name(ENSEMBLE, PeerId(1)));
        }
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a member started with another member's certificate"),
    }
}

/// Dials `to` as a raw QUIC client presenting `identity` (or no certificate), trusting `ca`.
/// Sends `payload` as one frame; returns whether the peer kept the connection for a moment.
async fn rogue_dial(
    ca_pem: &str,
    identity: Option<&Issued>,
    to: SocketAddr,
    name: &str,
    payload: &[u8],
) -> bool {
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        roots
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(issued) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![b"coord-peer/1".to_vec()];
    let client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ));
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    let Ok(connecting) = endpoint.connect(to, name) else {
        return false;
    };
    let Ok(Ok(conn)) = timeout(WAIT, connecting).await else {
        return false;
    };
    // TLS 1.3 servers check the client's certificate after the client thinks it is done:
    // a refusal arrives as the connection's close.
    let Ok(mut send) = conn.open_uni().await else {
        return false;
    };
    let mut hello = b"CRQ1".to_vec();
    hello.push(Stream::Replication.code());
    hello.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    hello.extend_from_slice(payload);
    if send.write_all(&hello).await.is_err() {
        return false;
    }
    let _ = send.finish();
    tokio::time::timeout(Duration::from_millis(700), conn.closed())
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_peers_are_refused_at_the_handshake_and_the_members_go_on() {
    let ca = CertAuthority::new("test CA").unwrap();
    let (a, mut b) = pair(&ca).await;
    let b_addr = b.local_addr();
    let b_name = member_name(ENSEMBLE, PeerId(2));

    // The honest member is accepted (the check below has teeth).
    let honest = ca.member(ENSEMBLE, PeerId(1)).unwrap();
    assert!(rogue_dial(ca.cert_pem(), Some(&honest), b_addr, &b_name, b"honest").await);

    let other_ca = CertAuthority::new("another CA").unwrap();
    let foreign = other_ca.member(ENSEMBLE, PeerId(1)).unwrap();
    let now = OffsetDateTime::now_utc();
    let expired = ca
        .issue(
            "expired",
            vec![member_name(ENSEMBLE, PeerId(1))],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
        .unwrap();
    let other_ensemble = ca.member("elsewhere", PeerId(1)).unwrap();
    let itself = ca.member(ENSEMBLE, PeerId(2)).unwrap();
    let day = time::Duration::days(1);
    let wildcard = ca
        .issue(
            "wildcard",
            vec![format!("*.{ENSEMBLE}.coord")],
            now - day,
            now + day,
        )
        .unwrap();
    let two_members = ca
        .issue(
            "two members",
            vec![
                member_name(ENSEMBLE, PeerId(1)),
                member_name(ENSEMBLE, PeerId(3)),
            ],
            now - day,
            now + day,
        )
        .unwrap();
    for (what, identity) in [
        ("a certificate from another CA", Some(&foreign)),
        ("no certificate", None),
        ("an expired certificate", Some(&expired)),
        ("a certificate of another ensemble", Some(&other_ensemble)),
        ("the member's own certificate", Some(&itself)),
        ("a wildcard certificate", Some(&wildcard)),
        ("a certificate naming two members", Some(&two_members)),
    ] {
        assert!(
            !rogue_dial(ca.cert_pem(), identity, b_addr, &b_name, b"evil").await,
            "{what} was accepted"
        );
    }

    // Whatever the rogues sent, the member heard only from member 1, and still does.
    a.send(
        PeerId(2),
        Stream::Election,
        Bytes::from_static(b"still here"),
    )
    .unwrap();
    loop {
        let (from, _, frame) = next_frame(&mut b).await;
        assert_eq!(from, PeerId(1));
        assert_ne!(
            frame,
            Bytes::from_static(b"evil"),
            "a rogue's frame was delivered"
        );
        if frame == Bytes::from_static(b"still here") {
            break;
        }
    }
}

/// A rogue server at member 2's address, presenting `identity`: does member 1 finish a
/// connection to it (and so send it its streams)?
async fn member_dials_rogue(ca: &CertAuthority, identity: &Issued) -> bool {
    let rogue_addr = free_addr();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect(),
        PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    tls.alpn_protocols = vec![b"coord-peer/1".to_vec()];
    let server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap(),
    ));
    let endpoint = quinn::Endpoint::server(server, rogue_addr).unwrap();
    let addrs: BTreeMap<PeerId, SocketAddr> =
        [(PeerId(1), free_addr()), (PeerId(2), rogue_addr)].into();
    let member = QuicTransport::bind(config(ca, 1, &addrs)).await.unwrap();
    member
        .send(PeerId(2), Stream::Election, Bytes::from_static(b"vote"))
        .unwrap();
    let accepted = timeout(Duration::from_secs(3), async {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(conn) = incoming.await else {
                continue;
            };
            if conn.accept_uni().await.is_ok() {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    drop(member);
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_dials_only_a_certificate_naming_exactly_the_member_dialed() {
    let ca = CertAuthority::new("test CA").unwrap();
    let now = OffsetDateTime::now_utc();
    let day = time::Duration::days(1);
    // The check has teeth: the real member 2 is sent the stream.
    let real = ca.member(ENSEMBLE, PeerId(2)).unwrap();
    assert!(member_dials_rogue(&ca, &real).await);
    let wildcard = ca
        .issue(
            "wildcard",
            vec![format!("*.{ENSEMBLE}.coord")],
            now - day,
            now + day,
        )
        .unwrap();
    let two = ca
        .issue(
            "two members",
            vec![
                member_name(ENSEMBLE, PeerId(2)),
                member_name(ENSEMBLE, PeerId(3)),
            ],
            now - day,
            now + day,
        )
        .unwrap();
    let other = ca.member(ENSEMBLE, PeerId(3)).unwrap();
    for (what, identity) in [
        ("a wildcard certificate", &wildcard),
        ("a certificate naming two members", &two),
        ("another member's certificate", &other),
    ] {
        assert!(
            !member_dials_rogue(&ca, identity).await,
            "{what} was trusted as member 2"
        );
    }
}
