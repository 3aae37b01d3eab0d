//! One client connection (`Conn`): the connect handshake, then requests answered in order.
//!
//! Each connection runs as one task that reads frames and one that writes them. Requests are
//! handled in arrival order: a write is prepared and proposed at once (so many writes of one
//! connection share a group commit), a read waits until the connection's earlier writes have been
//! answered (ZooKeeper's FIFO guarantee: a client sees its own writes), and every reply leaves in
//! request order. Watch events are pushed into the same outbox by the apply thread while it holds
//! the tree's write lock, so an event is always queued before any reply that reflects its change.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use coord_proto::{
    decode_frame, four_letter_word, ConnectRequest, ConnectResponse, DecodeError, ErrorCode, Id,
    OpCode, Request, RequestHeader,
};
use coord_znode::{Applied, Write};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit};
use tracing::{debug, info, warn};

use crate::auth::{authenticate, Auth, AUTH_IDS_MAX};
use crate::ids::{ConnId, SessionId};
use crate::ops::{self, Reply};
use crate::outbox::{Closing, Outbox, OUTBOX_PAUSE_BYTES};
use crate::shared::{write_budget_units, ConnInfo, Shared};
use crate::write::{Pending, WriteError};

/// Writes one connection may have proposed and not yet answered.
const INFLIGHT_WRITES_MAX: usize = 1024;

/// How long a paused connection may go without its client reading anything.
const OUTBOX_STALL: Duration = Duration::from_secs(10);

/// How long a new connection may take to send its ConnectRequest (or four-letter word), as
/// ZooKeeper's sessionlessCnxnTimeout.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct InFlight {
    xid: i32,
    op: OpCode,
    write: ops::WriteShape,
    proposal: Pending,
    /// The proposal's outcome, once it has been polled to completion.
    done: Option<Committed>,
    received: Instant,
    /// This write's share of the server-wide budget of writes proposed and not yet resolved;
    /// returned as soon as the proposal resolves, not when its reply is sent, so that a client
    /// that does not read its replies holds none of it.
    budget: Option<OwnedSemaphorePermit>,
}

impl InFlight {
    /// Records the proposal's outcome and returns the write's budget.
    fn resolve(&mut self, done: Committed) {
        self.done = Some(done);
        self.budget = None;
    }
}

type Committed = Result<(coord_engine::Zxid, Applied), WriteError>;

/// Why the request loop ended.
enum End {
    PeerClosed,
    Requested,
    Misbehaved,
    SessionClosed,
}

/// Serves one accepted client socket until it closes.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let Some(slot) = admit(&shared, peer) else {
        return;
    };
    let (reader, writer) = stream.into_split();
    serve_stream(shared, slot, reader, writer, peer, Vec::new()).await;
}

/// One of the connections `peer`'s address may hold, or None (logged) past the limit.
pub(crate) fn admit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<crate::shared::ConnSlot> {
    let slot = shared.conn_slot(peer);
    if slot.is_none() {
        warn!(%peer, max = shared.config.max_connections_per_ip, "too many connections from this address; closing");
    }
    slot
}

/// Serves a connection, plain or TLS, until it closes; `proven` are the identities its
/// transport proved (a client certificate's), which it holds from the start.
pub(crate) async fn serve_stream<R, W>(
    shared: Arc<Shared>,
    mut slot: crate::shared::ConnSlot,
    mut reader: R,
    writer: W,
    peer: SocketAddr,
    proven: Vec<Id>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let conn_id = ConnId(shared.next_conn_id.fetch_add(1, Ordering::Relaxed));
    debug!(%peer, %conn_id, "connection accepted");
    // Unbounded as a channel, bounded in bytes: the `Outbox` counts what it queues and stops
    // queueing past `outbox_bytes_max` (see outbox.rs).
    let (tx, rx) = mpsc::unbounded_channel();
    let closing = Arc::new(Closing::new(conn_id));
    let outbox = Outbox::new(tx, shared.config.outbox_bytes_max(), closing.clone());
    let info = Arc::new(ConnInfo {
        peer,
        session_id: AtomicI64::new(0),
        received: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        established: Instant::now(),
        outbox_queued: outbox.queued_bytes.clone(),
        closing: closing.clone(),
    });
    slot.register(conn_id, info.clone());
    let mut writer = WriterTask(Some(tokio::spawn(write_loop(
        writer,
        rx,
        outbox.queued_bytes.clone(),
        outbox.drained.clone(),
        info.clone(),
    ))));

    let mut buf = BytesMut::with_capacity(4096);
    let mut conn = Conn {
        shared: shared.clone(),
        id: conn_id,
        peer,
        outbox,
        info: info.clone(),
        session_id: SessionId::NONE,
        auth: Auth {
            is_super: proven.iter().any(|id| id.scheme == "super"),
            ids: std::iter::once(Id::new("ip", peer.ip().to_string()))
                .chain(proven)
                .collect(),
        },
        inflight: VecDeque::new(),
        session_closed: false,
    };
    let end = conn.run(&mut reader, &mut buf).await;
    debug!(%peer, %conn_id, session = %conn.session_id, "connection closed");
    let session_closed = matches!(end, End::SessionClosed);
    conn.session_closed = session_closed;
    drop(conn);
    // The writer drains what is queued (say, the reply to closeSession) and then ends, unless the
    // client stopped reading, in which case it is cut off. A session this client closed also
    // asks for its connection to close (when its txn applies, which may be before the reply is
    // out): the reply still goes, within the same bound.
    if let Some(mut handle) = writer.0.take() {
        let drained = (session_closed || !closing.is_requested())
            && tokio::time::timeout(Duration::from_secs(2), &mut handle)
                .await
                .is_ok();
        if !drained {
            handle.abort();
        }
    }
}

/// The writer task of a connection, aborted if the connection task ends without draining it
/// (it panicked): the socket then closes instead of staying open for a dead connection.
struct WriterTask(Option<tokio::task::JoinHandle<()>>);

impl Drop for WriterTask {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Writes queued frames in batches until every `Outbox` of the connection is dropped.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    queued_bytes: Arc<AtomicUsize>,
    drained: Arc<Notify>,
    info: Arc<ConnInfo>,
) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Bounded so that one batch does not hold a large copy of the queue.
    const BATCH_BYTES_MAX: usize = 1 << 20;
    while let Some(frame) = rx.recv().await {
        batch.clear();
        let mut frames = 1u64;
        batch.extend_from_slice(&frame);
        while batch.len() < BATCH_BYTES_MAX {
            match rx.try_recv() {
                Ok(frame) => {
                    batch.extend_from_slice(&frame);
                    frames += 1;
                }
                Err(_) => break,
            }
        }
        // The flush matters over TLS: the TLS layer may keep encrypted bytes it could not
        // write yet, and without a flush they would wait for the next frame.
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            info.closing.request();
            return;
        }
        queued_bytes.fetch_sub(batch.len(), Ordering::AcqRel);
        info.sent.fetch_add(frames, Ordering::Relaxed);
        drained.notify_one();
    }
    let _ = writer.shutdown().await;
}

struct Conn {
    shared: Arc<Shared>,
    id: ConnId,
    peer: SocketAddr,
    outbox: Outbox,
    info: Arc<ConnInfo>,
    session_id: SessionId,
    auth: Auth,
    inflight: VecDeque<InFlight>,
    /// The client closed its session (closeSession): there is nothing to detach on the way out.
    session_closed: bool,
}

/// Clean-up runs on every way out of a connection task, a panic included: its watches (which
/// hold its outbox, and so keep its writer and socket alive) go, and its session is detached so
/// that it expires unless the client comes back.
impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.watches.lock().remove_conn(self.id);
        if !self.session_closed {
            self.shared
                .sessions
                .detach(self.session_id, &self.info.closing);
        }
    }
}

impl Conn {
    async fn run(&mut self, reader: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> End {
        let request =
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.handshake(reader, buf)).await {
                Ok(Ok(request)) => request,
                Ok(Err(end)) => return end,
                Err(_) => {
                    debug!(peer = %self.peer, "no handshake in time; closing");
                    return End::Misbehaved;
                }
            };
        let (request, read_only_sent) = request;
        if !self.connect(request, read_only_sent).await {
            return End::SessionClosed;
        }
        self.serve_requests(reader, buf).await
    }

    /// Reads a four-letter word (answering it) or the ConnectRequest.
    async fn handshake(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        buf: &mut BytesMut,
    ) -> Result<(ConnectRequest, bool), End> {
        // The first four bytes are either a four-letter word or the length of a ConnectRequest.
        while buf.len() < 4 {
            if !self.read_more(reader, buf).await? {
                return Err(End::PeerClosed);
            }
        }
        let first4 = [buf[0], buf[1], buf[2], buf[3]];
        if let Some(word) = four_letter_word(first4) {
            let text = crate::fourlw::answer(&self.shared, word.as_str());
            self.outbox.send(Bytes::from(text));
            return Err(End::PeerClosed);
        }
        let frame = self.next_frame(reader, buf).await?;
        ConnectRequest::decode_detailed(&frame).map_err(|e| {
            warn!(peer = %self.peer, error = %e, "malformed connect request; closing");
            End::Misbehaved
        })
    }

    async fn serve_requests(
        &mut self,
        reader: &mut (impl AsyncRead + Unpin),
        buf: &mut BytesMut,
    ) -> End {
        loop {
            if self.info.closing.is_requested() {
                return End::Requested;
            }
            if let Err(end) = self.wait_for_reader().await {
                return end;
            }
            // Answer finished writes first, then take whatever the socket has.
            poll_front(&mut self.inflight).await;
            // Back-pressure: a client that pipelines writes faster than the disk takes them waits
            // here, instead of queueing without bound.
            while self.inflight.len() >= INFLIGHT_WRITES_MAX
                || self.inflight.front().is_some_and(|f| f.done.is_some())
            {
                if let Err(end) = self.finish_front().await {
                    return end;
                }
            }
            match decode_frame(buf, self.shared.config.max_frame_bytes) {
                Ok(Some(frame)) => {
                    if let Err(end) = self.handle_frame(frame).await {
                        return end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "bad frame; closing");
                    return End::Misbehaved;
                }
            }
            if self.inflight.is_empty() {
                match self.read_more(reader, buf).await {
                    Ok(true) => {}
                    Ok(false) => return End::PeerClosed,
                    Err(end) => return end,
                }
            } else {
                tokio::select! {
                    biased;
                    read = read_more(&self.info.closing, self.peer, reader, buf) => match read {
                        Ok(true) => {}
                        Ok(false) => return End::PeerClosed,
                        Err(end) => return end,
                    },
                    () = resolve_next(&mut self.inflight) => {}
                }
            }
        }
    }

    async fn read_more(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        buf: &mut BytesMut,
    ) -> Result<bool, End> {
        read_more(&self.info.closing, self.peer, reader, buf).await
    }

    /// Holds back new requests while the client has many replies unread; disconnects it if it
    /// reads nothing for `OUTBOX_STALL`. Writes in flight keep being answered meanwhile, so
    /// their budget goes back to other writers as soon as they commit.
    async fn wait_for_reader(&mut self) -> Result<(), End> {
        let stall = tokio::time::sleep(OUTBOX_STALL);
        tokio::pin!(stall);
        while self.outbox.queued() > OUTBOX_PAUSE_BYTES {
            tokio::select! {
                () = self.outbox.drained.notified() => {
                    stall.as_mut().reset(tokio::time::Instant::now() + OUTBOX_STALL);
                }
                () = self.info.closing.notify.notified() => return Err(End::Requested),
                () = resolve_next(&mut self.inflight) => {
                    // Answered at once: the reply waits in the outbox, under its hard bound,
                    // instead of as an outcome held here after its budget went back.
                    while self.inflight.front().is_some_and(|f| f.done.is_some()) {
                        self.finish_front().await?;
                    }
                }
                () = &mut stall => {
                    warn!(
                        peer = %self.peer,
                        queued = self.outbox.queued(),
                        "client is not reading its replies; closing the connection"
                    );
                    self.info.closing.request();
                    return Err(End::Requested);
                }
            }
        }
        Ok(())
    }

    async fn next_frame(
        &self,
        reader: &mut (impl AsyncRead + Unpin),
        buf: &mut BytesMut,
    ) -> Result<Bytes, End> {
        loop {
            match decode_frame(buf, self.shared.config.max_frame_bytes) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => {
                    warn!(peer = %self.peer, error = %e, "bad frame; closing");
                    return Err(End::Misbehaved);
                }
            }
            match self.read_more(reader, buf).await {
                Ok(true) => {}
                Ok(false) => return Err(End::PeerClosed),
                Err(end) => return Err(end),
            }
        }
    }

    /// Completes the handshake: a new session, or the resumption of a live one. False if the
    /// connection must close (a session that is gone or a wrong password).
    async fn connect(&mut self, request: ConnectRequest, read_only_sent: bool) -> bool {
        let shared = self.shared.clone();
        // ZooKeeper closes connections while it has no quorum ("not running"); the client
        // tries another server.
        if !shared.mode().serves() {
            debug!(peer = %self.peer, "not serving (no quorum); closing");
            return false;
        }
        // ZooKeeperServer.processConnectRequest: a server behind what the client has seen would
        // answer it from the past; it closes without a response, and the client tries another.
        // The tree's zxid, which read replies carry (the engine's counter follows it).
        let last_zxid = shared.tree.read().last_zxid().as_i64();
        if request.last_zxid_seen > last_zxid {
            info!(
                peer = %self.peer,
                client_zxid = format_args!("0x{:x}", request.last_zxid_seen),
                last_zxid = format_args!("0x{last_zxid:x}"),
                "refusing a client that has seen a newer zxid than this server; it must try another"
            );
            return false;
        }
        let timeout_ms = shared.negotiate_timeout(request.timeout_ms);
        let requested = SessionId(request.session_id);
        let (session_id, passwd) = if requested.is_none() {
            // Tracked before it exists, so that it expires even if this connection dies first.
            let (session_id, passwd) = shared
                .sessions
                .create(timeout_ms, self.info.closing.clone());
            let write = Write::CreateSession {
                session_id: session_id.0,
                // Config bounds the timeout to 32 bits.
                timeout_ms: timeout_ms as i32,
                passwd: passwd.clone(),
            };
            // Its owner is this connection: on the leader of an ensemble, writes through any
            // other connection get SessionMoved.
            let owner = Some(&self.info.closing);
            let committed = match shared.propose(
                &self.auth.ids,
                self.auth.is_super,
                SessionId::NONE,
                owner,
                write,
            ) {
                Ok(proposal) => proposal.await.is_ok(),
                Err(_) => false,
            };
            if !committed {
                warn!(peer = %self.peer, "could not persist a new session; closing");
                shared.sessions.detach_closing(session_id);
                return false;
            }
            (session_id, passwd)
        } else {
            let known = shared.tree.read().session(requested.0);
            // A session being expired or closed is gone, though its txn may still be in flight:
            // resume only one still tracked (by the leader, in an ensemble), in one step with
            // the check.
            let resumed = shared
                .resume_anywhere(requested, &request.passwd, timeout_ms, &self.info.closing)
                .await;
            let password_ok = known
                .as_ref()
                .is_some_and(|info| info.passwd == request.passwd);
            let resumed = match resumed {
                Ok(resumed) => resumed,
                Err(()) => {
                    // No leader could say: the session is not known to be gone. The client
                    // tries again, here or elsewhere, with its session.
                    debug!(peer = %self.peer, "no leader to resume the session with; closing");
                    return false;
                }
            };
            match resumed {
                Some(last_proposed) => {
                    // Read-your-writes across connections: what the session's earlier
                    // connection proposed is visible before this one answers anything.
                    let caught_up = tokio::select! {
                        () = shared.applied(last_proposed) => true,
                        () = self.info.closing.notify.notified() => false,
                        () = tokio::time::sleep(HANDSHAKE_TIMEOUT) => false,
                    };
                    if !caught_up {
                        warn!(peer = %self.peer, "earlier writes of the session never applied; closing");
                        shared.sessions.detach(requested, &self.info.closing);
                        return false;
                    }
                    (requested, request.passwd)
                }
                None => {
                    debug!(
                        peer = %self.peer,
                        session = %requested,
                        known = known.is_some(),
                        password_ok,
                        "session expired or wrong password"
                    );
                    // ZooKeeper answers an invalid session with a zero timeout and id, then closes.
                    let response = ConnectResponse {
                        protocol_version: 0,
                        timeout_ms: 0,
                        session_id: 0,
                        passwd: vec![0; 16],
                        read_only: false,
                    };
                    let mut frame = BytesMut::new();
                    response.write_frame(&mut frame, read_only_sent);
                    self.outbox.send(frame.freeze());
                    return false;
                }
            }
        };
        self.session_id = session_id;
        self.info.session_id.store(session_id.0, Ordering::Relaxed);
        shared.watches.lock().register_conn(
            self.id,
            session_id,
            self.outbox.clone(),
            self.auth.ids.clone(),
            self.auth.is_super,
        );
        let response = ConnectResponse {
            protocol_version: 0,
            timeout_ms: timeout_ms as i32,
            session_id: session_id.0,
            passwd,
            read_only: false,
        };
        let mut frame = BytesMut::new();
        response.write_frame(&mut frame, read_only_sent);
        self.outbox.send(frame.freeze());
        debug!(
            peer = %self.peer,
            session = %session_id,
            timeout_ms,
            resumed = !requested.is_none(),
            "session established"
        );
        true
    }

    async fn handle_frame(&mut self, frame: Bytes) -> Result<(), End> {
        // Lets a test make a connection task panic (only with the `failpoints` feature of fail).
        fail::fail_point!("conn::handle_frame");
        self.info.received.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.received.fetch_add(1, Ordering::Relaxed);
        self.shared.sessions.touch(self.session_id);
        let (header, body) = match RequestHeader::split(&frame) {
            Ok(split) => split,
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "malformed request header; closing");
                return Err(End::Misbehaved);
            }
        };
        let Some(op) = OpCode::from_code(header.op) else {
            warn!(peer = %self.peer, op = header.op, "unknown opcode; closing");
            return self.unimplemented(header.xid).await;
        };
        // ZooKeeper 3.9.3+ serves check only inside a multi (ZOOKEEPER-2623): a lone one is
        // an unknown request.
        if op == OpCode::Check {
            debug!(peer = %self.peer, "check outside a multi; closing");
            return self.unimplemented(header.xid).await;
        }
        let request = match Request::decode(header.op, body) {
            Ok(request) => request,
            Err(DecodeError::Unsupported(OpCode::Reconfig)) => {
                // PrepRequestProcessor refuses reconfig first when it is disabled, whatever
                // the body; the session goes on. (coord has no dynamic reconfiguration.)
                self.drain_inflight().await?;
                self.reply_error(header.xid, ErrorCode::ReconfigDisabled);
                return Ok(());
            }
            Err(e @ (DecodeError::UnknownOpCode(_) | DecodeError::Unsupported(_))) => {
                warn!(peer = %self.peer, ?op, error = %e, "unsupported request; closing");
                return self.unimplemented(header.xid).await;
            }
            Err(e) => {
                warn!(peer = %self.peer, ?op, error = %e, "malformed request");
                // As ZooKeeper's PrepRequestProcessor: a body that does not parse is a
                // marshalling error for that request, not the end of the session.
                self.drain_inflight().await?;
                self.reply_error(header.xid, ErrorCode::MarshallingError);
                return Ok(());
            }
        };
        let started = Instant::now();
        let frame_len = frame.len();
        let mut proposed = false;
        match request {
            Request::Ping => {
                self.outbox.send(ops::reply_frame(
                    coord_proto::xid::PING,
                    self.shared.last_zxid(),
                    ErrorCode::Ok,
                    None,
                ));
            }
            Request::Auth(auth) => {
                // Clients other than kazoo and Java's number auth like any request, so its reply
                // must not overtake earlier ones.
                self.drain_inflight().await?;
                if !self.authenticate(header.xid, auth) {
                    return Err(End::Misbehaved);
                }
            }
            Request::CloseSession => {
                self.drain_inflight().await?;
                let write = Write::CloseSession {
                    session_id: self.session_id.0,
                };
                let proposal = match self.shared.propose(
                    &[],
                    true,
                    self.session_id,
                    Some(&self.info.closing),
                    write,
                ) {
                    Ok(p) => p,
                    Err(_) => return Err(End::Misbehaved),
                };
                self.shared.sessions.detach_closing(self.session_id);
                let zxid = match proposal.await {
                    Ok((zxid, _)) => zxid.as_i64(),
                    Err(_) => return Err(End::Misbehaved),
                };
                self.outbox
                    .send(ops::reply_frame(header.xid, zxid, ErrorCode::Ok, None));
                return Err(End::SessionClosed);
            }
            request => match ops::classify(request) {
                ops::Classified::Write(write, shape) => {
                    let budget = self.write_budget(frame_len).await?;
                    let proposal = self.shared.propose(
                        &self.auth.ids,
                        self.auth.is_super,
                        self.session_id,
                        Some(&self.info.closing),
                        write,
                    );
                    match proposal {
                        Ok(proposal) => {
                            proposed = true;
                            self.inflight.push_back(InFlight {
                                xid: header.xid,
                                op,
                                write: shape,
                                proposal,
                                done: None,
                                received: started,
                                budget: Some(budget),
                            });
                        }
                        Err(refused) => {
                            self.drain_inflight().await?;
                            self.shared.applied(refused.after).await;
                            let reply = ops::rejected(shape, refused.rejection);
                            self.send_reply(header.xid, self.shared.last_zxid(), reply);
                        }
                    }
                }
                ops::Classified::Read(read) => {
                    self.drain_inflight().await?;
                    if matches!(read, ops::Read::Sync { .. }) && !self.shared.sync().await {
                        warn!(peer = %self.peer, "sync found no leader; closing");
                        return Err(End::Misbehaved);
                    }
                    ops::read_and_reply(
                        &self.shared,
                        self.id,
                        &self.auth,
                        self.session_id,
                        header.xid,
                        read,
                        &self.outbox,
                    );
                }
                ops::Classified::Unsupported => {
                    self.drain_inflight().await?;
                    self.reply_error(header.xid, ErrorCode::Unimplemented);
                }
            },
        }
        // A write's latency is recorded when it is answered.
        if !proposed {
            self.shared.stats.record_latency(started.elapsed());
        }
        Ok(())
    }

    /// Adds the identity an auth packet proves; the reply echoes the request's xid (the Java
    /// client and kazoo send -4, others their next xid). False if the connection must close.
    fn authenticate(&mut self, xid: i32, auth: coord_proto::AuthPacket) -> bool {
        // X509AuthenticationProvider: the identity is the TLS certificate's, proven at connect;
        // asked again, it is OK where there is one, and fails (closing) where there is not.
        if auth.scheme == "x509" && self.auth.ids.iter().any(|id| id.scheme == "x509") {
            self.outbox
                .send(ops::reply_frame(xid, 0, ErrorCode::Ok, None));
            return true;
        }
        if auth.scheme == "ip" {
            // IPAuthenticationProvider: the connection's address, which it already holds.
            self.outbox
                .send(ops::reply_frame(xid, 0, ErrorCode::Ok, None));
            return true;
        }
        let Some(id) = authenticate(&auth) else {
            warn!(peer = %self.peer, scheme = %auth.scheme, "authentication failed; closing");
            // As ZooKeeper: AuthFailed, then the connection is closed.
            self.outbox
                .send(ops::reply_frame(xid, 0, ErrorCode::AuthFailed, None));
            return false;
        };
        if !self.auth.ids.contains(&id) {
            if self.auth.ids.len() >= AUTH_IDS_MAX {
                warn!(
                    peer = %self.peer,
                    max = AUTH_IDS_MAX,
                    "too many identities on one connection; closing"
                );
                self.outbox
                    .send(ops::reply_frame(xid, 0, ErrorCode::AuthFailed, None));
                return false;
            }
            if let Some(super_digest) = &self.shared.config.superuser_digest {
                if id.scheme == "digest" && &id.id == super_digest {
                    self.auth.is_super = true;
                }
            }
            let mut ids = self.auth.ids.to_vec();
            ids.push(id);
            self.auth.ids = ids.into();
            // The new list is built outside the watch lock; only the pointer moves under it.
            self.shared.watches.lock().set_identity(
                self.id,
                self.auth.ids.clone(),
                self.auth.is_super,
            );
        }
        self.outbox
            .send(ops::reply_frame(xid, 0, ErrorCode::Ok, None));
        true
    }

    /// As ZooKeeper's UnimplementedRequestProcessor: Unimplemented with zxid -1 (the request
    /// never got one), after the replies owed before it, then the connection closes.
    async fn unimplemented(&mut self, xid: i32) -> Result<(), End> {
        self.drain_inflight().await?;
        self.outbox
            .send(ops::reply_frame(xid, -1, ErrorCode::Unimplemented, None));
        Err(End::Misbehaved)
    }

    fn reply_error(&self, xid: i32, err: ErrorCode) {
        self.outbox
            .send(ops::reply_frame(xid, self.shared.last_zxid(), err, None));
    }

    fn send_reply(&self, xid: i32, zxid: i64, reply: Reply) {
        let frame = match reply {
            Ok(body) => ops::reply_frame(xid, zxid, ErrorCode::Ok, body.as_ref()),
            Err(err) => ops::reply_frame(xid, zxid, err, None),
        };
        self.outbox.send(frame);
    }

    /// Takes a write's share of the server-wide budget of bytes proposed and not yet answered
    /// (ZooKeeper's globalOutstandingLimit), waiting, and so reading no more requests, while the
    /// disk is behind. This connection's own writes are answered first, so that it never waits on
    /// budget it holds itself.
    async fn write_budget(&mut self, frame_len: usize) -> Result<OwnedSemaphorePermit, End> {
        let budget = self.shared.write_budget.clone();
        let units = write_budget_units(frame_len, self.shared.config.write_budget_units());
        if let Ok(permit) = budget.clone().try_acquire_many_owned(units) {
            return Ok(permit);
        }
        self.drain_inflight().await?;
        budget
            .acquire_many_owned(units)
            .await
            .map_err(|_| End::Requested)
    }

    /// Answers the oldest in-flight write once it is durable and applied.
    async fn finish_front(&mut self) -> Result<(), End> {
        let Some(front) = self.inflight.pop_front() else {
            return Ok(());
        };
        let committed = match front.done {
            Some(done) => done,
            None => front.proposal.await,
        };
        match committed {
            Ok((zxid, applied)) => {
                let reply = ops::applied(front.write, front.op, applied);
                self.send_reply(front.xid, zxid.as_i64(), reply);
                self.shared.stats.record_latency(front.received.elapsed());
                Ok(())
            }
            // The leader refused a forwarded write: answered once what it rested on is here.
            Err(WriteError::Refused(refused)) => {
                self.shared.applied(refused.after).await;
                let reply = ops::rejected(front.write, refused.rejection);
                self.send_reply(front.xid, self.shared.last_zxid(), reply);
                self.shared.stats.record_latency(front.received.elapsed());
                Ok(())
            }
            Err(e) => {
                warn!(peer = %self.peer, error = %e, "write failed to commit; closing");
                Err(End::Misbehaved)
            }
        }
    }

    async fn drain_inflight(&mut self) -> Result<(), End> {
        while !self.inflight.is_empty() {
            self.finish_front().await?;
        }
        Ok(())
    }
}

/// Reads more bytes into `buf`; false at end of stream.
async fn read_more(
    closing: &Closing,
    peer: SocketAddr,
    reader: &mut (impl AsyncRead + Unpin),
    buf: &mut BytesMut,
) -> Result<bool, End> {
    if closing.is_requested() {
        return Err(End::Requested);
    }
    buf.reserve(4096);
    tokio::select! {
        read = reader.read_buf(buf) => match read {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => {
                debug!(%peer, error = %e, "read failed");
                Ok(false)
            }
        },
        () = closing.notify.notified() => Err(End::Requested),
    }
}

/// Records the outcome of the oldest in-flight writes that are already done, without waiting.
async fn poll_front(inflight: &mut VecDeque<InFlight>) {
    poll_fn(|cx| {
        for front in inflight.iter_mut() {
            if front.done.is_some() {
                continue;
            }
            match Pin::new(&mut front.proposal).poll(cx) {
                Poll::Ready(done) => front.resolve(done),
                Poll::Pending => break,
            }
        }
        Poll::Ready(())
    })
    .await
}

/// Resolves once one more in-flight write has resolved (recording it and returning its budget);
/// never, if every write has. Proposals resolve in zxid order, so only the oldest unresolved one
/// needs polling.
async fn resolve_next(inflight: &mut VecDeque<InFlight>) {
    poll_fn(|cx| match inflight.iter_mut().find(|f| f.done.is_none()) {
        Some(next) => match Pin::new(&mut next.proposal).poll(cx) {
            Poll::Ready(done) => {
                next.resolve(done);
                Poll::Ready(())
            }
            Poll::Pending => Poll::Pending,
        },
        None => Poll::Pending,
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// A writer that keeps what it is given until flushed (a `BufWriter`, as the TLS layer
    /// keeps encrypted bytes the socket did not take): a frame with nothing after it must
    /// still reach the client.
    #[tokio::test]
    async fn a_frame_with_nothing_after_it_is_flushed() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let writer = tokio::io::BufWriter::new(server);
        let (tx, rx) = mpsc::unbounded_channel();
        let closing = Arc::new(Closing::new(ConnId(1)));
        let queued = Arc::new(AtomicUsize::new(0));
        let info = Arc::new(ConnInfo {
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            session_id: AtomicI64::new(0),
            received: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            established: Instant::now(),
            outbox_queued: queued.clone(),
            closing,
        });
        let frame = Bytes::from_static(b"\0\0\0\x05hello");
        queued.fetch_add(frame.len(), Ordering::AcqRel);
        tx.send(frame.clone()).unwrap();
        let task = tokio::spawn(write_loop(
            writer,
            rx,
            queued,
            Arc::new(Notify::new()),
            info,
        ));
        let mut client = client;
        let mut got = vec![0u8; frame.len()];
        tokio::time::timeout(Duration::from_secs(10), client.read_exact(&mut got))
            .await
            .expect("the frame stayed in the writer's buffer")
            .unwrap();
        assert_eq!(got, frame);
        drop(tx);
        task.await.unwrap();
    }
}
