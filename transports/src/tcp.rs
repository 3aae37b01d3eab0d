//! The TCP transport: per peer and stream, one outbound connection this member dials and one
//! inbound connection the peer dials, each carrying frames one way.
//!
//! A connection starts with a handshake: the magic `b"CRD1"`, the dialer's id (`u64`) and the
//! stream (`u8`). Then frames: a `u32` length and that many bytes.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Mutex, Notify};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::queues::{self, drop_queue_and_report, Outbound, Outbounds};
use crate::{Event, PeerId, SendError, Stream, Transport};

/// The most bytes of queued frames one write carries (a frame bigger than that goes alone).
const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;
const MAGIC: [u8; 4] = *b"CRD1";
const HANDSHAKE_LEN: usize = 4 + 8 + 1;
/// How long a new inbound connection may take to name itself.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Events waiting for the engine; past it, readers wait (and TCP pushes back on the peers).
const EVENTS_MAX: usize = 1024;

/// How a [`TcpTransport`] is set up.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    pub id: PeerId,
    /// Where this member accepts its peers' connections.
    pub listen: SocketAddr,
    /// Every other member and where it listens.
    pub peers: BTreeMap<PeerId, SocketAddr>,
    /// The largest frame sent or accepted.
    pub frame_bytes_max: usize,
    /// Frames queued per peer and stream before the stream is reset.
    pub queue_frames_max: usize,
    /// The first and the largest wait between dials of an unreachable peer.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl TcpConfig {
    /// Defaults for the bounds and backoff.
    pub fn new(id: PeerId, listen: SocketAddr, peers: BTreeMap<PeerId, SocketAddr>) -> Self {
        TcpConfig {
            id,
            listen,
            peers,
            frame_bytes_max: 64 << 20,
            queue_frames_max: 4096,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// The inbound side of one (peer, stream): which connection is current. Held while an event
/// is handed over, so an old connection's frame can never follow the new one's reset.
#[derive(Default)]
struct Inbound {
    serial: u64,
}

/// The inbound slot of every (peer, stream).
type InboundSlots = BTreeMap<(PeerId, Stream), Arc<Mutex<Inbound>>>;

/// Peer streams over TCP. See the crate docs for what it promises.
pub struct TcpTransport {
    config: Arc<TcpConfig>,
    local_addr: SocketAddr,
    outbound: Outbounds,
    events: mpsc::Receiver<Event>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TcpTransport {
    /// Listens on `config.listen` and starts dialing every peer.
    pub async fn bind(config: TcpConfig) -> io::Result<TcpTransport> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let config = Arc::new(config);
        let (events_tx, events) = mpsc::channel(EVENTS_MAX);
        let mut tasks = Vec::new();
        let mut outbound = BTreeMap::new();
        let mut inbound = BTreeMap::new();
        let mut back = BTreeMap::new();
        for peer in config.peers.keys() {
            let (peer_back, back_rx) = watch::channel(0u64);
            back.insert(*peer, peer_back);
            for stream in [Stream::Election, Stream::Replication] {
                let (tx, rx) = mpsc::channel(config.queue_frames_max.max(1));
                let reset = Arc::new(Notify::new());
                tasks.push(tokio::spawn(dial(
                    config.clone(),
                    *peer,
                    stream,
                    rx,
                    reset.clone(),
                    back_rx.clone(),
                    events_tx.clone(),
                )));
                outbound.insert((*peer, stream), Outbound { tx, reset });
                inbound.insert((*peer, stream), Arc::new(Mutex::new(Inbound::default())));
            }
        }
        tasks.push(tokio::spawn(accept(
            config.clone(),
            listener,
            Arc::new(inbound),
            Arc::new(back),
            events_tx,
        )));
        Ok(TcpTransport {
            config,
            local_addr,
            outbound,
            events,
            tasks,
        })
    }

    /// The address peers dial.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Transport for TcpTransport {
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

fn backoff(config: &TcpConfig, attempt: u32) -> Duration {
    queues::backoff(config.backoff_min, config.backoff_max, attempt)
}

/// Keeps one outbound connection to `peer` for `stream`, writing queued frames to it. Between
/// attempts it waits out its backoff, unless `back` says the peer dialed in (it is up again):
/// then it tries at once, so a restarted member hears from this one without waiting seconds.
async fn dial(
    config: Arc<TcpConfig>,
    peer: PeerId,
    stream: Stream,
    mut rx: mpsc::Receiver<Bytes>,
    reset: Arc<Notify>,
    mut back: watch::Receiver<u64>,
    events: mpsc::Sender<Event>,
) {
    let Some(addr) = config.peers.get(&peer).copied() else {
        return;
    };
    let mut attempt = 0;
    loop {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
        let conn = tokio::select! {
            conn = connect => conn,
            () = reset.notified() => {
                // Reset while unreachable: what is queued is dropped all the same.
                if !drop_queue_and_report(&mut rx, &events, peer, stream).await {
                    return;
                }
                continue;
            }
        };
        let mut conn = match conn {
            Ok(Ok(conn)) => conn,
            Ok(Err(_)) | Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(backoff(&config, attempt)) => {
                        attempt = attempt.saturating_add(1);
                    }
                    () = reset.notified() => {
                        if !drop_queue_and_report(&mut rx, &events, peer, stream).await {
                            return;
                        }
                        attempt = attempt.saturating_add(1);
                    }
                    Ok(()) = back.changed() => attempt = 0,
                }
                continue;
            }
        };
        // Whoever dialed in before this connection is no news.
        back.borrow_and_update();
        let _ = conn.set_nodelay(true);
        let mut hello = Vec::with_capacity(HANDSHAKE_LEN);
        hello.extend_from_slice(&MAGIC);
        hello.extend_from_slice(&config.id.0.to_be_bytes());
        hello.push(stream.code());
        if conn.write_all(&hello).await.is_ok() {
            attempt = 0;
            debug!(?peer, ?stream, "stream connected");
            let (mut reader, mut writer) = conn.split();
            // The peer never writes on a stream it accepted: anything read, the end of the
            // stream included, means it is gone. Noticed at once, not at a later write whose
            // frames (an election's notifications, say) would be lost with the connection.
            let mut probe = [0u8; 1];
            let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
            loop {
                tokio::select! {
                    frame = rx.recv() => {
                        let Some(frame) = frame else {
                            return;
                        };
                        // Whatever else is queued goes in the same write (one system call for
                        // many small frames under load), up to a bound so that a batch does
                        // not copy the whole queue.
                        let len = (frame.len() as u32).to_be_bytes();
                        if frame.len() >= WRITE_BATCH_BYTES_MAX {
                            // Not worth a copy.
                            let written = async {
                                writer.write_all(&len).await?;
                                writer.write_all(&frame).await
                            };
                            // A write blocked on a peer that reads nothing must not hold up a
                            // reset: the queue behind it is full, and the reset is the way out.
                            let done = tokio::select! {
                                written = written => written.is_ok(),
                                () = reset.notified() => false,
                                _ = reader.read(&mut probe) => false,
                            };
                            if !done {
                                break;
                            }
                            continue;
                        }
                        batch.clear();
                        batch.extend_from_slice(&len);
                        batch.extend_from_slice(&frame);
                        while batch.len() < WRITE_BATCH_BYTES_MAX {
                            let Ok(frame) = rx.try_recv() else {
                                break;
                            };
                            batch.extend_from_slice(&(frame.len() as u32).to_be_bytes());
                            batch.extend_from_slice(&frame);
                        }
                        let done = tokio::select! {
                            written = writer.write_all(&batch) => written.is_ok(),
                            () = reset.notified() => false,
                            _ = reader.read(&mut probe) => false,
                        };
                        if !done {
                            break;
                        }
                        if batch.capacity() > 2 * WRITE_BATCH_BYTES_MAX {
                            // One big frame in the batch made it grow: give the memory back.
                            batch = Vec::with_capacity(64 * 1024);
                        }
                    }
                    () = reset.notified() => break,
                    _ = reader.read(&mut probe) => {
                        debug!(?peer, ?stream, "the peer closed the stream");
                        break;
                    }
                }
            }
        }
        drop(conn);
        if !drop_queue_and_report(&mut rx, &events, peer, stream).await {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff(&config, attempt)) => {
                attempt = attempt.saturating_add(1);
            }
            Ok(()) = back.changed() => attempt = 0,
        }
    }
}

/// Accepts peers' connections; each names itself and its stream, then its frames are read.
async fn accept(
    config: Arc<TcpConfig>,
    listener: TcpListener,
    inbound: Arc<InboundSlots>,
    back: Arc<BTreeMap<PeerId, watch::Sender<u64>>>,
    events: mpsc::Sender<Event>,
) {
    loop {
        let (conn, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "peer accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = config.clone();
        let inbound = inbound.clone();
        let back = back.clone();
        let events = events.clone();
        tokio::spawn(async move {
            if let Err(why) = serve_inbound(config, conn, inbound, &back, events).await {
                debug!(%addr, why, "peer connection closed");
            }
        });
    }
}

async fn serve_inbound(
    config: Arc<TcpConfig>,
    mut conn: TcpStream,
    inbound: Arc<InboundSlots>,
    back: &BTreeMap<PeerId, watch::Sender<u64>>,
    events: mpsc::Sender<Event>,
) -> Result<(), &'static str> {
    let _ = conn.set_nodelay(true);
    let mut hello = [0u8; HANDSHAKE_LEN];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.read_exact(&mut hello))
        .await
        .map_err(|_| "no handshake in time")?
        .map_err(|_| "handshake cut short")?;
    if hello[..4] != MAGIC {
        return Err("not a coord peer");
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&hello[4..12]);
    let peer = PeerId(u64::from_be_bytes(id));
    let stream = Stream::from_code(hello[12]).ok_or("unknown stream")?;
    let slot = inbound.get(&(peer, stream)).ok_or("not a member")?.clone();
    // It is up: dialers waiting out a backoff towards it try again now.
    if let Some(back) = back.get(&peer) {
        back.send_modify(|dialed_in| *dialed_in = dialed_in.wrapping_add(1));
    }
    // A new connection means the old one is over: say so before its first frame.
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
        let read = conn.read_exact(&mut len).await;
        let frame = match read {
            Ok(_) => {
                let len = u32::from_be_bytes(len) as usize;
                if len > config.frame_bytes_max {
                    warn!(
                        ?peer,
                        len,
                        max = config.frame_bytes_max,
                        "frame too long; closing the stream"
                    );
                    None
                } else {
                    buf.resize(len, 0);
                    conn.read_exact(&mut buf)
                        .await
                        .ok()
                        .map(|_| buf.split().freeze())
                }
            }
            Err(_) => None,
        };
        let current = slot.lock().await;
        if current.serial != serial {
            // A newer connection took over and reported the reset.
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
