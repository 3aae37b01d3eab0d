//! The QUIC transport: mutual TLS 1.3 between members, each stream a QUIC stream.
//!
//! Each member dials one QUIC connection to every peer and carries its outbound streams on
//! it, one unidirectional QUIC stream per [`Stream`]; what it receives comes on the connections
//! its peers dial. So, as over TCP, each direction of each stream is independent: a lost packet
//! on the replication stream does not hold up elections (QUIC streams have no head-of-line
//! blocking between them), and a slow peer holds up only its own connection.
//!
//! Identity is the certificate's (see [`crate::tls`]): the dialer checks that the certificate
//! it is shown names the member it dials; the acceptor learns who dialed from the client
//! certificate alone. A QUIC stream starts with the magic `b"CRQ1"` and the stream's code; then
//! frames, a `u32` length and that many bytes.
//!
//! A restarted member has the same stateless-reset and connection-id keys (derived from its
//! private key), so it resets the connections its peers dialed to its former self at their
//! first packet: they redial at once instead of waiting out the idle timeout.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Connection, Endpoint, RecvStream, TransportConfig, VarInt};
use rustls_pki_types::CertificateDer;
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::endpoint::endpoint_config;
use crate::queues::{self, drop_queue_and_report, Outbound, Outbounds};
use crate::refusals::Refusals;
use crate::tls::{self, Credentials, TlsError};
use crate::{Event, PeerId, SendError, Stream, Transport};

const MAGIC: [u8; 4] = *b"CRQ1";
/// How long a dial may take (the handshake included).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that lasts this long was accepted by the peer (one refused closes at once).
const CONNECTION_PROVEN: Duration = Duration::from_secs(2);
/// Handshakes under way at most; past it, new attempts are ignored (each costs a task and
/// crypto work before anyone is known).
const HANDSHAKES_MAX: usize = 64;
/// How long a new QUIC stream may take to name itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for the engine; past it, readers wait (and QUIC's flow control pushes back
/// on the peers).
const EVENTS_MAX: usize = 1024;
/// The application error code a member closes a connection or stream with.
const CLOSE_CODE: u32 = 1;

/// Why a [`QuicTransport`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How a [`QuicTransport`] is set up.
#[derive(Debug, Clone)]
pub struct QuicConfig {
    pub id: PeerId,
    /// The ensemble's name, in every member's certificate name.
    pub ensemble: String,
    /// Where this member accepts its peers' connections (UDP).
    pub listen: SocketAddr,
    /// Every other member and where it listens.
    pub peers: BTreeMap<PeerId, SocketAddr>,
    pub credentials: Credentials,
    /// The largest frame sent or accepted.
    pub frame_bytes_max: usize,
    /// Frames queued per peer and stream before the stream is reset.
    pub queue_frames_max: usize,
    /// The first and the largest wait between dials of an unreachable peer.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How often an idle connection is pinged, and how long a silent one lives.
    pub keep_alive: Duration,
    pub idle_timeout: Duration,
}

impl QuicConfig {
    /// Defaults for the bounds, backoff and timeouts.
    pub fn new(
        id: PeerId,
        ensemble: String,
        listen: SocketAddr,
        peers: BTreeMap<PeerId, SocketAddr>,
        credentials: Credentials,
    ) -> Self {
        QuicConfig {
            id,
            ensemble,
            listen,
            peers,
            credentials,
            frame_bytes_max: 64 << 20,
            queue_frames_max: 4096,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
            keep_alive: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// The inbound side of one (peer, stream): which QUIC stream is current. Held while an event
/// is handed over, so an old stream's frame can never follow the new one's reset.
#[derive(Default)]
struct Inbound {
    serial: u64,
}

type InboundSlots = BTreeMap<(PeerId, Stream), Arc<Mutex<Inbound>>>;

/// Puts new credentials in use on a running [`QuicTransport`] (see [`QuicTransport::reloader`]).
#[derive(Clone)]
pub struct QuicReload {
    id: PeerId,
    ensemble: String,
    peers: BTreeSet<PeerId>,
    endpoint: Endpoint,
    transport: TransportConfigs,
    client: Arc<watch::Sender<quinn::ClientConfig>>,
}

impl QuicReload {
    /// Checks `credentials` as at start-up and, if they are this member's, uses them for every
    /// connection from now on: those accepted and those dialed. Connections already up keep the
    /// credentials they were made with. On an error nothing changes.
    pub fn reload(&self, credentials: Credentials) -> Result<(), TlsError> {
        credentials.check_member(&self.ensemble, self.id)?;
        let (server, client) =
            quinn_configs(&credentials, &self.ensemble, &self.peers, &self.transport)?;
        self.endpoint.set_server_config(Some(server));
        self.client.send_replace(client);
        Ok(())
    }
}

/// The QUIC server and client configurations for `credentials`.
fn quinn_configs(
    credentials: &Credentials,
    ensemble: &str,
    peers: &BTreeSet<PeerId>,
    transport: &TransportConfigs,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), TlsError> {
    let server_tls = credentials.server_config(ensemble, peers)?;
    let client_tls = credentials.client_config(ensemble)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        QuicServerConfig::try_from(server_tls).map_err(|e| TlsError::Setup(e.to_string()))?,
    ));
    server.transport_config(transport.accepted.clone());
    let mut client = quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client_tls).map_err(|e| TlsError::Setup(e.to_string()))?,
    ));
    client.transport_config(transport.dialed.clone());
    Ok((server, client))
}

/// Peer streams over QUIC with mutual TLS. See the crate docs for what it promises.
pub struct QuicTransport {
    config: Arc<QuicConfig>,
    local_addr: SocketAddr,
    endpoint: Endpoint,
    reload: QuicReload,
    outbound: Outbounds,
    events: mpsc::Receiver<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.endpoint
            .close(VarInt::from_u32(CLOSE_CODE), b"shutting down");
    }
}

/// QUIC's settings for the connections this member accepts (its peers' streams arrive on them)
/// and for those it dials (its own streams leave on them; the peer opens none there).
#[derive(Clone)]
struct TransportConfigs {
    accepted: Arc<TransportConfig>,
    dialed: Arc<TransportConfig>,
}

fn transport_configs(config: &QuicConfig) -> TransportConfigs {
    let make = |uni_streams: u32| {
        let mut transport = TransportConfig::default();
        transport.keep_alive_interval(Some(config.keep_alive));
        if let Ok(idle) = config.idle_timeout.try_into() {
            transport.max_idle_timeout(Some(idle));
        }
        // Only unidirectional streams are used: a few current ones per peer, and new ones after
        // resets.
        transport.max_concurrent_bidi_streams(VarInt::from_u32(0));
        transport.max_concurrent_uni_streams(VarInt::from_u32(uni_streams));
        Arc::new(transport)
    };
    TransportConfigs {
        accepted: make(16),
        dialed: make(0),
    }
}

impl QuicTransport {
    /// Checks the credentials, listens on `config.listen` and starts dialing every peer.
    pub async fn bind(config: QuicConfig) -> Result<QuicTransport, QuicError> {
        config
            .credentials
            .check_member(&config.ensemble, config.id)?;
        let transport = transport_configs(&config);
        let peers: BTreeSet<PeerId> = config.peers.keys().copied().collect();
        let (server, client) =
            quinn_configs(&config.credentials, &config.ensemble, &peers, &transport)?;
        let listen_err = |source| QuicError::Listen {
            addr: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(listen_err)?;
        let endpoint = Endpoint::new(
            endpoint_config(&config.credentials),
            Some(server),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(listen_err)?;
        let local_addr = endpoint.local_addr().map_err(listen_err)?;
        let (client_tx, client_rx) = watch::channel(client);
        let reload = QuicReload {
            id: config.id,
            ensemble: config.ensemble.clone(),
            peers,
            endpoint: endpoint.clone(),
            transport,
            client: Arc::new(client_tx),
        };

        let config = Arc::new(config);
        let refusals = Arc::new(Refusals::new("peer connection refused"));
        let (events_tx, events) = mpsc::channel(EVENTS_MAX);
        let mut tasks = Vec::new();
        let mut outbound = BTreeMap::new();
        let mut inbound = BTreeMap::new();
        let mut back = BTreeMap::new();
        for (&peer, &addr) in &config.peers {
            let (peer_back, back_rx) = watch::channel(0u64);
            back.insert(peer, peer_back);
            let (conn_tx, conn_rx) = watch::channel(None);
            let dialer = Dialer {
                endpoint: endpoint.clone(),
                client: client_rx.clone(),
            };
            tasks.push(tokio::spawn(link(
                config.clone(),
                dialer,
                peer,
                addr,
                conn_tx,
                back_rx,
                refusals.clone(),
            )));
            for stream in [Stream::Election, Stream::Replication] {
                let (tx, rx) = mpsc::channel(config.queue_frames_max.max(1));
                let reset = Arc::new(Notify::new());
                tasks.push(tokio::spawn(write(
                    config.clone(),
                    peer,
                    stream,
                    rx,
                    reset.clone(),
                    conn_rx.clone(),
                    events_tx.clone(),
                )));
                outbound.insert((peer, stream), Outbound { tx, reset });
                inbound.insert((peer, stream), Arc::new(Mutex::new(Inbound::default())));
            }
        }
        tasks.push(tokio::spawn(accept(
            config.clone(),
            endpoint.clone(),
            Arc::new(inbound),
            Arc::new(back),
            events_tx,
            refusals,
        )));
        Ok(QuicTransport {
            config,
            local_addr,
            endpoint,
            reload,
            outbound,
            events,
            tasks,
        })
    }

    /// The address peers dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A handle that puts new credentials in use (on SIGHUP, say); it stays valid once the
    /// transport has been handed to the engine.
    pub fn reloader(&self) -> QuicReload {
        self.reload.clone()
    }
}

impl Transport for QuicTransport {
    fn queued(&self, to: PeerId, stream: Stream) -> usize {
        queues::queued(&self.outbound, to, stream)
    }

    fn send(&self, to: PeerId, stream: Stream, frame: Bytes) -> Result<(), SendError> {
        queues::send(
            &self.outbound,
            self.config.frame_bytes_max,
            to,
            stream,
            frame,
        )
    }

    fn reset(&self, peer: PeerId, stream: Stream) {
        queues::reset(&self.outbound, peer, stream)
    }

    fn recv(&mut self) -> impl std::future::Future<Output = Option<Event>> + Send {
        self.events.recv()
    }
}

fn backoff(config: &QuicConfig, attempt: u32) -> Duration {
    queues::backoff(config.backoff_min, config.backoff_max, attempt)
}

/// How a link dials: the endpoint, and the client credentials current at each dial.
struct Dialer {
    endpoint: Endpoint,
    client: watch::Receiver<quinn::ClientConfig>,
}

/// Keeps one connection to `peer` up, publishing it for the peer's stream writers. Between
/// dials it waits out its backoff, unless the peer dialed in meanwhile (it is up again).
async fn link(
    config: Arc<QuicConfig>,
    dialer: Dialer,
    peer: PeerId,
    addr: SocketAddr,
    conn_tx: watch::Sender<Option<Connection>>,
    mut back: watch::Receiver<u64>,
    refusals: Arc<Refusals>,
) {
    let name = tls::member_name(&config.ensemble, peer);
    let mut attempt = 0;
    loop {
        // The credentials current now: a reload applies to the next dial.
        let credentials = dialer.client.borrow().clone();
        let dial = async {
            match dialer.endpoint.connect_with(credentials, addr, &name) {
                Ok(connecting) => tokio::time::timeout(CONNECT_TIMEOUT, connecting)
                    .await
                    .map_err(|_| "no handshake in time".to_owned())
                    .and_then(|conn| conn.map_err(|e| e.to_string())),
                Err(e) => Err(e.to_string()),
            }
        };
        // A dial towards a peer that is down waits out QUIC's handshake retransmissions; the
        // peer dialing in says it is up, and a new dial goes at once.
        let dialed = tokio::select! {
            dialed = dial => dialed,
            Ok(()) = back.changed() => {
                attempt = 0;
                continue;
            }
        };
        match dialed {
            Ok(conn) => {
                back.borrow_and_update();
                debug!(?peer, "connected");
                let up = Instant::now();
                conn_tx.send_replace(Some(conn.clone()));
                let why = loop {
                    tokio::select! {
                        why = conn.closed() => break why,
                        Ok(()) = back.changed() => {
                            // The peer dialed in again: it may have restarted, and this
                            // connection may talk to its former self. Its stateless reset
                            // usually says so at our next packet; it cannot if it restarted
                            // with another key (new credentials). So if the peer answers
                            // nothing for two keep-alive intervals, the connection is dropped
                            // and dialed again; a live one answers, and stays.
                            let heard = conn.stats().udp_rx.datagrams;
                            tokio::select! {
                                why = conn.closed() => break why,
                                () = tokio::time::sleep(config.keep_alive * 2 + Duration::from_millis(100)) => {}
                            }
                            if conn.stats().udp_rx.datagrams == heard {
                                debug!(?peer, "the peer came back; dropping the connection to its former self");
                                conn.close(VarInt::from_u32(CLOSE_CODE), b"peer restarted");
                                break conn.closed().await;
                            }
                        }
                    }
                };
                conn_tx.send_replace(None);
                // TLS 1.3 lets the dialer finish before the peer has checked its certificate:
                // a peer that refuses it closes the connection at once. Only a connection that
                // lasted counts as a success.
                if up.elapsed() >= CONNECTION_PROVEN {
                    attempt = 0;
                    debug!(?peer, %why, "connection closed");
                } else {
                    refusals.log(
                        addr.ip(),
                        &format!("{peer:?} closed the connection at once: {why}"),
                    );
                }
            }
            Err(reason) => {
                // Unreachable is the normal state of a peer that is down; anything else (its
                // certificate refused, ours refused) is worth a line.
                if !reason.contains("timed out") && !reason.contains("no handshake") {
                    refusals.log(addr.ip(), &reason);
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(&config, attempt)) => attempt = attempt.saturating_add(1),
            Ok(()) = back.changed() => attempt = 0,
        }
    }
}

/// Waits until `conn_rx` holds a connection.
async fn connection(conn_rx: &mut watch::Receiver<Option<Connection>>) -> Option<Connection> {
    let current = conn_rx.wait_for(Option::is_some).await.ok()?;
    current.clone()
}

/// Writes queued frames for (`peer`, `stream`) to a QUIC stream on the current connection,
/// opening a new one after each reset.
async fn write(
    config: Arc<QuicConfig>,
    peer: PeerId,
    stream: Stream,
    mut rx: mpsc::Receiver<Bytes>,
    reset: Arc<Notify>,
    mut conn_rx: watch::Receiver<Option<Connection>>,
    events: mpsc::Sender<Event>,
) {
    loop {
        let conn = tokio::select! {
            conn = connection(&mut conn_rx) => match conn {
                Some(conn) => conn,
                None => return,
            },
            () = reset.notified() => {
                if !drop_queue_and_report(&mut rx, &events, peer, stream).await {
                    return;
                }
                continue;
            }
        };
        if let Ok(mut send) = conn.open_uni().await {
            let mut hello = MAGIC.to_vec();
            hello.push(stream.code());
            if send.write_all(&hello).await.is_ok() {
                debug!(?peer, ?stream, "stream open");
                loop {
                    tokio::select! {
                        frame = rx.recv() => {
                            let Some(frame) = frame else {
                                return;
                            };
                            let len = (frame.len() as u32).to_be_bytes();
                            // A write blocked on a peer that reads nothing must not hold up a
                            // reset: the queue behind it is full, and the reset is the way out.
                            let outcome = {
                                let written = async {
                                    send.write_all(&len).await?;
                                    send.write_all(&frame).await
                                };
                                tokio::select! {
                                    written = written => if written.is_ok() { Write::Done } else { Write::Broken },
                                    () = reset.notified() => Write::Reset,
                                    _ = conn.closed() => Write::Broken,
                                }
                            };
                            match outcome {
                                Write::Done => {}
                                Write::Broken => break,
                                Write::Reset => {
                                    let _ = send.reset(VarInt::from_u32(CLOSE_CODE));
                                    break;
                                }
                            }
                        }
                        () = reset.notified() => {
                            let _ = send.reset(VarInt::from_u32(CLOSE_CODE));
                            break;
                        }
                        _ = conn.closed() => break,
                    }
                }
            }
        }
        if !drop_queue_and_report(&mut rx, &events, peer, stream).await {
            return;
        }
        // A stream that broke on a live connection is opened again at once; otherwise the
        // writer waits for the link to bring a new connection.
        if conn.close_reason().is_some() {
            let _ = conn_rx
                .wait_for(|c| c.as_ref().is_none_or(|c| c.stable_id() != conn.stable_id()))
                .await;
        } else {
            tokio::time::sleep(config.backoff_min).await;
        }
    }
}

/// How a frame's write ended.
enum Write {
    Done,
    Broken,
    Reset,
}

/// Accepts peers' connections: a connection is a member's if its (verified) client certificate
/// names exactly one of the peers; then its QUIC streams are read.
async fn accept(
    config: Arc<QuicConfig>,
    endpoint: Endpoint,
    inbound: Arc<InboundSlots>,
    back: Arc<BTreeMap<PeerId, watch::Sender<u64>>>,
    events: mpsc::Sender<Event>,
    refusals: Arc<Refusals>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_MAX));
    while let Some(incoming) = endpoint.accept().await {
        // An address that has not proved it receives our packets is sent a Retry first: a
        // spoofed source cannot make this member answer a stranger with its certificate chain.
        if !incoming.remote_address_validated() {
            let _ = incoming.retry();
            continue;
        }
        let Ok(permit) = handshakes.clone().try_acquire_owned() else {
            incoming.ignore();
            continue;
        };
        let (config, inbound, back, events, refusals) = (
            config.clone(),
            inbound.clone(),
            back.clone(),
            events.clone(),
            refusals.clone(),
        );
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let handshake = tokio::time::timeout(CONNECT_TIMEOUT, incoming).await;
            drop(permit);
            let conn = match handshake {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => {
                    refusals.log(remote.ip(), &e.to_string());
                    return;
                }
                // A stranger's half-open attempt: not worth a warning.
                Err(_) => {
                    debug!(%remote, "no handshake in time");
                    return;
                }
            };
            let certificate = conn
                .peer_identity()
                .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
                .and_then(|chain| chain.first().cloned());
            // The handshake checked it already; this reads who it is.
            let peer = certificate
                .and_then(|cert| tls::member_of(&cert, &config.ensemble))
                .filter(|peer| config.peers.contains_key(peer));
            let Some(peer) = peer else {
                refusals.log(
                    remote.ip(),
                    "its certificate names no member of this ensemble",
                );
                conn.close(VarInt::from_u32(CLOSE_CODE), b"not a member");
                return;
            };
            // It is up: the link towards it tries again now.
            if let Some(back) = back.get(&peer) {
                back.send_modify(|dialed_in| *dialed_in = dialed_in.wrapping_add(1));
            }
            while let Ok(recv) = conn.accept_uni().await {
                let (config, inbound, events) = (config.clone(), inbound.clone(), events.clone());
                tokio::spawn(async move {
                    if let Err(why) = serve_inbound(config, peer, recv, inbound, events).await {
                        debug!(?peer, why, "peer stream closed");
                    }
                });
            }
        });
    }
}

async fn serve_inbound(
    config: Arc<QuicConfig>,
    peer: PeerId,
    mut recv: RecvStream,
    inbound: Arc<InboundSlots>,
    events: mpsc::Sender<Event>,
) -> Result<(), &'static str> {
    let mut hello = [0u8; 5];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, recv.read_exact(&mut hello))
        .await
        .map_err(|_| "no stream header in time")?
        .map_err(|_| "stream header cut short")?;
    if hello[..4] != MAGIC {
        return Err("not a coord peer stream");
    }
    let stream = Stream::from_code(hello[4]).ok_or("unknown stream")?;
    let slot = inbound.get(&(peer, stream)).ok_or("not a member")?.clone();
    // A new stream means the old one is over: say so before its first frame.
    let serial = {
        let mut current = slot.lock().await;
        current.serial += 1;
        events
            .send(Event::Reset { peer, stream })
            .await
            .map_err(|_| "transport gone")?;
        current.serial
    };
    let mut buf = BytesMut::new();
    loop {
        let mut len = [0u8; 4];
        let frame = match recv.read_exact(&mut len).await {
            Ok(()) => {
                let len = u32::from_be_bytes(len) as usize;
                if len > config.frame_bytes_max {
                    warn!(
                        ?peer,
                        len,
                        max = config.frame_bytes_max,
                        "frame too long; closing the stream"
                    );
                    let _ = recv.stop(VarInt::from_u32(CLOSE_CODE));
                    None
                } else {
                    buf.resize(len, 0);
                    recv.read_exact(&mut buf)
                        .await
                        .ok()
                        .map(|()| buf.split().freeze())
                }
            }
            Err(_) => None,
        };
        let current = slot.lock().await;
        if current.serial != serial {
            return Ok(());
        }
        let event = match frame {
            Some(frame) => Event::Frame {
                from: peer,
                stream,
                frame,
            },
            None => Event::Reset { peer, stream },
        };
        let ended = matches!(event, Event::Reset { .. });
        events.send(event).await.map_err(|_| "transport gone")?;
        drop(current);
        if ended {
            return Err("stream ended");
        }
    }
}
