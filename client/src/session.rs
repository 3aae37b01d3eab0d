//! The session's task: one connection at a time, and a new one (to the next server) when it
//! breaks, resuming the same session with its watches and credentials.
//!
//! On a connection the server answers requests in the order sent, so replies are matched to a
//! FIFO of pending requests. Auth replies (xid -4) have their own FIFO: ZooKeeper answers an
//! auth packet at once, ahead of earlier requests still in its pipeline.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use coord_proto::{
    decode_frame, write_frame, xid, AddWatchMode, AuthPacket, ConnectRequest, ConnectResponse,
    ErrorCode, EventType, KeeperState, OpCode, Reader, Record, ReplyHeader, Request, Response,
    WatcherEvent, WatcherType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::watches::{EventQueue, Rearm, Registry, WatchKind, WatchedEvent};
use crate::{ConnectString, Error};

/// Requests queued for the session at most; past it, callers wait for room. While the session
/// is between connections, requests wait here.
pub(crate) const CALLS_QUEUED_MAX: usize = 1024;
/// Requests sent on a connection and not answered yet, at most; past it the session stops
/// taking requests from its queue until replies come.
const IN_FLIGHT_MAX: usize = 4096;
/// Request bytes buffered for the socket at most; past it the session takes no more requests
/// until the socket drains.
const OUT_BUFFER_BYTES_MAX: usize = 1 << 20;
/// The largest reply frame read; a longer one closes the connection. It matches the largest
/// reply a coord server may be configured to send (256 MiB).
const REPLY_FRAME_BYTES_MAX: usize = 256 << 20;
/// Path bytes in one setWatches2 packet at most, as ZooKeeper's client splits it (its
/// `SET_WATCHES_MAX_LENGTH`), so that re-arming many watches never makes a frame a server
/// refuses.
const SET_WATCHES_BYTES_MAX: usize = 128 * 1024;
/// Session events kept for a slow [`SessionEvents`] reader; one further behind skips to the
/// current state.
const SESSION_EVENTS_QUEUED_MAX: usize = 64;
/// The longest pause between two rounds of connection attempts over every server.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Where a session stands, as kazoo and Curator report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected to a server; requests are served.
    Connected,
    /// The connection broke. Requests wait for the next one; those in flight failed with
    /// [`Error::ConnectionLoss`]. The session (its ephemerals, its watches) may still be alive:
    /// a lock holder should stop acting as one until it is `Connected` again.
    Suspended,
    /// The session is gone: the server expired it, or no server took it back within the session
    /// timeout. Its ephemerals are (or will be) gone; nothing more can be done with it.
    Lost,
    /// The session was closed by [`crate::Client::close`], or by dropping every handle.
    Closed,
}

impl SessionState {
    /// The error a request gets from a session that ended in this state.
    pub(crate) fn end_error(self) -> Error {
        match self {
            SessionState::Closed => Error::Closed,
            _ => Error::SessionExpired,
        }
    }
}

/// The session's changes of state, in order. See [`crate::Client::session_events`].
pub struct SessionEvents {
    events: broadcast::Receiver<SessionState>,
    status: watch::Receiver<Status>,
}

impl SessionEvents {
    /// The next change of state; None once the session has ended and its last state was read.
    /// A reader more than 64 changes behind skips to the current state.
    pub async fn next(&mut self) -> Option<SessionState> {
        match self.events.recv().await {
            Ok(state) => Some(state),
            Err(broadcast::error::RecvError::Lagged(_)) => {
                self.events = self.events.resubscribe();
                Some(self.status.borrow().state)
            }
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// What the session publishes about itself.
#[derive(Debug, Clone)]
pub(crate) struct Status {
    pub state: SessionState,
    /// The session timeout the server granted last.
    pub timeout: Duration,
    /// The server of the current connection; None between connections.
    pub server: Option<String>,
}

/// Where a request's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<Response, Error>>;

/// One request for the session's task.
pub(crate) struct Call {
    pub request: Request,
    pub reply: Reply,
    pub arm: Option<Arm>,
}

/// A watch a request sets, armed when its reply arrives (so before any later event is read).
pub(crate) enum Arm {
    OneShot(WatchKind, oneshot::Sender<Result<WatchedEvent, Error>>),
    Persistent(AddWatchMode, Arc<EventQueue>),
    /// Not a watch to arm but watches to forget: removeWatches succeeded.
    Remove(WatcherType),
}

/// The handles a [`crate::Client`] keeps on its session's task.
pub(crate) struct Handles {
    pub calls: mpsc::Sender<Call>,
    pub status: watch::Receiver<Status>,
    /// Kept only to subscribe from: a sender here would keep readers from ever seeing the end.
    pub events: broadcast::Receiver<SessionState>,
    pub session_id: i64,
}

impl Handles {
    pub fn subscribe(&self) -> SessionEvents {
        SessionEvents {
            events: self.events.resubscribe(),
            status: self.status.clone(),
        }
    }
}

/// Opens a session on the first server of `connect` that answers, and starts its task.
pub(crate) async fn open(connect: &ConnectString, timeout: Duration) -> Result<Handles, Error> {
    let mut servers = connect.servers.clone();
    // Spread clients over the servers, as ZooKeeper's clients shuffle the list.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as usize
        % servers.len();
    servers.rotate_left(start);
    let (calls, calls_rx) = mpsc::channel(CALLS_QUEUED_MAX);
    let (status, status_rx) = watch::channel(Status {
        state: SessionState::Connected,
        timeout,
        server: None,
    });
    let (events, events_rx) = broadcast::channel(SESSION_EVENTS_QUEUED_MAX);
    let mut task = Task {
        servers,
        next_server: 0,
        requested_timeout: timeout,
        session_id: 0,
        passwd: vec![0; 16],
        last_zxid: 0,
        auths: Vec::new(),
        watches: Registry::default(),
        calls: calls_rx,
        status,
        events,
        close_reply: None,
    };
    let attempt_timeout = (timeout / task.servers.len() as u32).max(Duration::from_secs(1));
    let mut failures = Vec::new();
    let stream = loop {
        if failures.len() == task.servers.len() {
            return Err(Error::Unreachable(failures.join("; ")));
        }
        let server = task.servers[task.next_server].clone();
        task.next_server = (task.next_server + 1) % task.servers.len();
        match tokio::time::timeout(attempt_timeout, task.handshake(&server)).await {
            Ok(Ok(stream)) => break stream,
            Ok(Err(e)) => failures.push(format!("{server}: {e}")),
            Err(_) => failures.push(format!("{server}: no answer in time")),
        }
    };
    let handles = Handles {
        calls,
        status: status_rx,
        events: events_rx,
        session_id: task.session_id,
    };
    tokio::spawn(task.run(stream));
    Ok(handles)
}

struct Task {
    /// The servers, in the order tried (rotated at random once).
    servers: Vec<String>,
    next_server: usize,
    requested_timeout: Duration,
    session_id: i64,
    passwd: Vec<u8>,
    /// The highest zxid a reply carried: a server behind it refuses the session, so the
    /// session never sees its past.
    last_zxid: i64,
    /// The credentials added so far, to present again on every new connection.
    auths: Vec<AuthPacket>,
    watches: Registry,
    calls: mpsc::Receiver<Call>,
    status: watch::Sender<Status>,
    events: broadcast::Sender<SessionState>,
    /// A CloseSession a broken connection did not finish, to send on the next one.
    close_reply: Option<Reply>,
}

/// Why a connection ended.
enum End {
    /// It broke; the session may live on.
    Broken,
    /// The server says the session is over.
    Expired,
    /// The session was closed.
    Closed,
}

impl Task {
    fn timeout(&self) -> Duration {
        self.status.borrow().timeout
    }

    fn publish(&self, state: SessionState) {
        self.status.send_modify(|status| {
            status.state = state;
            if state != SessionState::Connected {
                status.server = None;
            }
        });
        let _ = self.events.send(state);
    }

    async fn run(mut self, first: TcpStream) {
        let mut stream = first;
        let mut resumed = false;
        let end = loop {
            if resumed {
                self.publish(SessionState::Connected);
            }
            match self.serve(stream, resumed).await {
                End::Broken => {}
                End::Expired => break SessionState::Lost,
                End::Closed => break SessionState::Closed,
            }
            tracing::debug!(session = self.session_id, "connection lost; reconnecting");
            self.publish(SessionState::Suspended);
            match self.reconnect().await {
                Some(next) => stream = next,
                None => break SessionState::Lost,
            }
            resumed = true;
        };
        self.publish(end);
        let why = end.end_error();
        if let Some(reply) = self.close_reply.take() {
            let _ = reply.send(Err(why.clone()));
        }
        self.watches.end(&why);
        self.calls.close();
        while let Ok(call) = self.calls.try_recv() {
            let _ = call.reply.send(Err(why.clone()));
        }
    }

    /// Connects to `server` and opens the session there (a new one, or this one again).
    async fn handshake(&mut self, server: &str) -> Result<TcpStream, Error> {
        let mut stream = TcpStream::connect(server)
            .await
            .map_err(|e| Error::Unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let request = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout_ms: i32::try_from(self.requested_timeout.as_millis()).unwrap_or(i32::MAX),
            session_id: self.session_id,
            passwd: self.passwd.clone(),
            read_only: false,
        };
        let mut out = BytesMut::new();
        write_frame(&mut out, |b| request.write(b));
        stream
            .write_all(&out)
            .await
            .map_err(|_| Error::ConnectionLoss)?;
        let mut buf = BytesMut::with_capacity(256);
        let frame = loop {
            if let Some(frame) = decode_frame(&mut buf, REPLY_FRAME_BYTES_MAX)
                .map_err(|e| Error::Malformed(e.to_string()))?
            {
                break frame;
            }
            // A server that refuses the session (say, it is behind the zxid this session has
            // seen) closes without answering: try another.
            if stream
                .read_buf(&mut buf)
                .await
                .map_err(|_| Error::ConnectionLoss)?
                == 0
            {
                return Err(Error::ConnectionLoss);
            }
        };
        let response = ConnectResponse::read(&mut Reader::new(&frame))
            .map_err(|e| Error::Malformed(e.to_string()))?;
        let resuming = self.session_id != 0;
        if response.timeout_ms <= 0
            || response.session_id == 0
            || (resuming && response.session_id != self.session_id)
        {
            return Err(Error::SessionExpired);
        }
        self.session_id = response.session_id;
        self.passwd = response.passwd;
        let timeout = Duration::from_millis(response.timeout_ms as u64);
        self.status.send_modify(|status| {
            status.timeout = timeout;
            status.server = Some(server.to_owned());
        });
        Ok(stream)
    }

    /// Tries the servers in turn until one takes the session back. None if the session is
    /// over: a server said it expired, or the session timeout passed without a server (as
    /// Curator does, so a partitioned client does not go on believing it holds ephemerals the
    /// ensemble has dropped), or every client handle went meanwhile.
    async fn reconnect(&mut self) -> Option<TcpStream> {
        let deadline = Instant::now() + self.timeout();
        let attempt_timeout = self.timeout() / self.servers.len() as u32;
        let mut backoff = Duration::from_millis(10);
        loop {
            for _ in 0..self.servers.len() {
                let now = Instant::now();
                // Every handle gone is no reason to stop: the session is closed once back.
                if now >= deadline {
                    return None;
                }
                let server = self.servers[self.next_server].clone();
                self.next_server = (self.next_server + 1) % self.servers.len();
                let attempt = attempt_timeout.min(deadline - now);
                match tokio::time::timeout(attempt, self.handshake(&server)).await {
                    Ok(Ok(stream)) => return Some(stream),
                    Ok(Err(Error::SessionExpired)) => return None,
                    Ok(Err(e)) => tracing::debug!(%server, %e, "reconnect attempt failed"),
                    Err(_) => tracing::debug!(%server, "reconnect attempt timed out"),
                }
            }
            let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
        }
    }

    /// Serves requests on one connection until it ends. On a resumed session, first sets the
    /// watches again and presents the credentials again.
    async fn serve(&mut self, stream: TcpStream, resumed: bool) -> End {
        let (mut reader, mut writer) = stream.into_split();
        let mut conn = Connection {
            pending: VecDeque::new(),
            auths: VecDeque::new(),
            next_xid: 1,
            closing: false,
        };
        let mut input = BytesMut::with_capacity(64 * 1024);
        let mut out = BytesMut::new();
        if resumed {
            self.prime(&mut out, &mut conn);
        }
        let timeout = self.timeout();
        // As ZooKeeper's clients: ping after a third of the timeout without sending, give up
        // on the server after two thirds without hearing from it.
        let ping_every = (timeout / 3).max(Duration::from_millis(10));
        let silence_max = timeout * 2 / 3;
        let mut last_sent = Instant::now();
        let mut last_heard = Instant::now();
        let wake = tokio::time::sleep(ping_every);
        tokio::pin!(wake);
        loop {
            let room = out.len() < OUT_BUFFER_BYTES_MAX && conn.pending.len() < IN_FLIGHT_MAX;
            tokio::select! {
                read = reader.read_buf(&mut input) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        return self.ended(conn, End::Broken);
                    }
                    last_heard = Instant::now();
                    match self.deliver(&mut input, &mut conn, &mut out) {
                        Ok(None) => {}
                        Ok(Some(end)) => return self.ended(conn, end),
                        Err(reason) => {
                            tracing::warn!(%reason, "closing the connection");
                            return self.ended(conn, End::Broken);
                        }
                    }
                }
                written = writer.write_buf(&mut out), if out.has_remaining() => {
                    if !matches!(written, Ok(n) if n > 0) {
                        return self.ended(conn, End::Broken);
                    }
                    last_sent = Instant::now();
                }
                call = self.calls.recv(), if room && !conn.closing => {
                    let Some(call) = call else {
                        // Every handle is gone: close the session so its ephemerals go now
                        // rather than at its timeout.
                        conn.send(&mut out, Request::CloseSession, oneshot::channel().0, None);
                        conn.closing = true;
                        continue;
                    };
                    conn.take(&mut out, call);
                    // Take what else is queued, so it leaves in one write.
                    while out.len() < OUT_BUFFER_BYTES_MAX && conn.pending.len() < IN_FLIGHT_MAX {
                        match self.calls.try_recv() {
                            Ok(call) => conn.take(&mut out, call),
                            Err(_) => break,
                        }
                    }
                }
                () = &mut wake => {
                    let now = Instant::now();
                    if now >= last_heard + silence_max {
                        tracing::debug!(session = self.session_id, "server silent; reconnecting");
                        return self.ended(conn, End::Broken);
                    }
                    if now >= last_sent + ping_every && out.is_empty() {
                        write_request(&mut out, xid::PING, &Request::Ping);
                    }
                    // With bytes waiting for the socket a ping could not go anyway: only the
                    // silence deadline matters then.
                    let next = if out.is_empty() {
                        (last_sent + ping_every).min(last_heard + silence_max)
                    } else {
                        last_heard + silence_max
                    };
                    wake.as_mut().reset(next.max(now + Duration::from_millis(1)));
                }
            }
        }
    }

    /// Ends a connection. A CloseSession it could not finish is kept, to be sent again on the
    /// next connection: the session is not closed until a server says so.
    fn ended(&mut self, mut conn: Connection, end: End) -> End {
        if matches!(end, End::Broken) && conn.closing {
            self.close_reply = conn.take_close();
        }
        conn.broken(end)
    }

    /// What a resumed session sends first: its watches (setWatches2, in packets of bounded
    /// size) and its credentials. Their replies are not waited for; requests follow at once,
    /// as the server handles them in order.
    fn prime(&mut self, out: &mut BytesMut, conn: &mut Connection) {
        let Rearm {
            data,
            exist,
            child,
            persistent,
            recursive,
        } = self.watches.rearm();
        let mut lists: [Vec<String>; 5] = Default::default();
        let mut bytes = 0;
        let flush = |lists: &mut [Vec<String>; 5], out: &mut BytesMut, relative_zxid| {
            let [data, exist, child, persistent, persistent_recursive] = std::mem::take(lists);
            let request = Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive,
            };
            write_request(out, xid::SET_WATCHES, &request);
        };
        for (list, paths) in [data, exist, child, persistent, recursive]
            .into_iter()
            .enumerate()
        {
            for path in paths {
                if bytes + path.len() > SET_WATCHES_BYTES_MAX && bytes > 0 {
                    flush(&mut lists, out, self.last_zxid);
                    bytes = 0;
                }
                bytes += path.len();
                lists[list].push(path);
            }
        }
        if bytes > 0 {
            flush(&mut lists, out, self.last_zxid);
        }
        for auth in &self.auths {
            write_request(out, xid::AUTH, &Request::Auth(auth.clone()));
            conn.auths.push_back(None);
        }
        self.watches.reconnected();
        if let Some(reply) = self.close_reply.take() {
            conn.send(out, Request::CloseSession, reply, None);
            conn.closing = true;
        }
    }

    /// Handles the replies and events whose frames are whole in `input`.
    fn deliver(
        &mut self,
        input: &mut BytesMut,
        conn: &mut Connection,
        out: &mut BytesMut,
    ) -> Result<Option<End>, String> {
        while let Some(frame) =
            decode_frame(input, REPLY_FRAME_BYTES_MAX).map_err(|e| e.to_string())?
        {
            let (header, body) = ReplyHeader::split(&frame).map_err(|e| e.to_string())?;
            match header.xid {
                xid::PING | xid::SET_WATCHES => continue,
                xid::NOTIFICATION => {
                    let event =
                        WatcherEvent::read(&mut Reader::new(body)).map_err(|e| e.to_string())?;
                    if event.event_type == EventType::None {
                        if event.state == KeeperState::Expired {
                            return Ok(Some(End::Expired));
                        }
                        continue;
                    }
                    for (path, mode) in self.watches.fire(&event) {
                        // A new reader's addWatch for the path is on its way: the server's
                        // watch is wanted again.
                        if conn.adding(&path, mode) {
                            continue;
                        }
                        let watcher_type = match mode {
                            AddWatchMode::Persistent => WatcherType::Persistent,
                            AddWatchMode::PersistentRecursive => WatcherType::PersistentRecursive,
                        };
                        let request = Request::RemoveWatches { path, watcher_type };
                        conn.send(out, request, oneshot::channel().0, None);
                    }
                    continue;
                }
                xid::AUTH => {
                    let Some(waiter) = conn.auths.pop_front() else {
                        return Err("an auth reply nobody asked for".into());
                    };
                    if let Some((packet, reply)) = waiter {
                        let result = if header.err == 0 {
                            self.auths.push(packet);
                            Ok(Response::Empty)
                        } else {
                            Err(reply_error(header.err))
                        };
                        let _ = reply.send(result);
                    }
                    continue;
                }
                _ => {}
            }
            let Some(sent) = conn.pending.pop_front() else {
                return Err(format!("a reply to xid {} nobody asked for", header.xid));
            };
            if header.xid != sent.xid {
                let _ = sent.reply.send(Err(Error::ConnectionLoss));
                return Err(format!(
                    "reply to xid {} where {} was due",
                    header.xid, sent.xid
                ));
            }
            if header.zxid > 0 {
                self.last_zxid = self.last_zxid.max(header.zxid);
            }
            // The server armed the watch when it answered: so does the session, before it
            // reads any later event. exists arms it on a missing node too.
            match sent.arm {
                Some(Arm::OneShot(kind, fire))
                    if header.err == 0
                        || (header.err == ErrorCode::NoNode.code() && kind == WatchKind::Exist) =>
                {
                    // An exists watch on a node that exists is a data watch, as the Java
                    // client registers it: set again as an exist watch after a reconnect,
                    // the server would answer it at once with NodeCreated.
                    let kind = match kind {
                        WatchKind::Exist if header.err == 0 => WatchKind::Data,
                        kind => kind,
                    };
                    if let Some(path) = sent.path {
                        self.watches.arm(kind, path, fire);
                    }
                }
                Some(Arm::Persistent(mode, queue)) if header.err == 0 => {
                    if let Some(path) = sent.path {
                        self.watches.add_persistent(mode, path, queue);
                    }
                }
                Some(Arm::Remove(watcher_type)) if header.err == 0 => {
                    if let Some(path) = sent.path {
                        self.watches.remove(&path, watcher_type);
                    }
                }
                _ => {}
            }
            let result = if header.err != 0 {
                Err(reply_error(header.err))
            } else {
                Response::decode(sent.op.code(), body).map_err(|e| Error::Malformed(e.to_string()))
            };
            let expired = matches!(result, Err(Error::SessionExpired));
            let _ = sent.reply.send(result);
            if expired {
                return Ok(Some(End::Expired));
            }
            if sent.op == OpCode::CloseSession {
                return Ok(Some(End::Closed));
            }
        }
        Ok(None)
    }
}

fn reply_error(err: i32) -> Error {
    match ErrorCode::from_code(err) {
        Some(ErrorCode::SessionExpired) => Error::SessionExpired,
        Some(code) => Error::Server(code),
        None => Error::Malformed(format!("unknown error code {err}")),
    }
}

fn write_request(out: &mut BytesMut, xid: i32, request: &Request) {
    request.write_frame(xid, out);
}

/// The state of one connection of the session.
struct Connection {
    /// The requests sent and not answered yet, in the order sent.
    pending: VecDeque<Sent>,
    /// The auth packets sent and not answered yet; None for those presented again on a new
    /// connection, which nobody waits for.
    auths: VecDeque<Option<(AuthPacket, Reply)>>,
    next_xid: i32,
    /// CloseSession was sent: take no more requests, and a closed connection ends the session.
    closing: bool,
}

/// A request sent and not answered yet.
struct Sent {
    xid: i32,
    op: OpCode,
    reply: Reply,
    /// The node its watch is on, as the server names it.
    path: Option<String>,
    arm: Option<Arm>,
}

impl Connection {
    /// Whether an addWatch of `mode` on `path` is in flight.
    fn adding(&self, path: &str, mode: AddWatchMode) -> bool {
        self.pending.iter().any(|sent| {
            matches!(&sent.arm, Some(Arm::Persistent(m, _)) if *m == mode)
                && sent.path.as_deref() == Some(path)
        })
    }

    /// Takes the reply of the CloseSession in flight, to send it again on the next connection.
    fn take_close(&mut self) -> Option<Reply> {
        let at = self
            .pending
            .iter()
            .position(|sent| sent.op == OpCode::CloseSession)?;
        self.pending.remove(at).map(|sent| sent.reply)
    }

    /// Takes one call from the queue onto the wire.
    fn take(&mut self, out: &mut BytesMut, call: Call) {
        let Call {
            request,
            reply,
            arm,
        } = call;
        match request {
            Request::Auth(packet) => {
                write_request(out, xid::AUTH, &Request::Auth(packet.clone()));
                self.auths.push_back(Some((packet, reply)));
            }
            Request::CloseSession => {
                self.closing = true;
                self.send(out, request, reply, arm);
            }
            request => self.send(out, request, reply, arm),
        }
    }

    fn send(&mut self, out: &mut BytesMut, request: Request, reply: Reply, arm: Option<Arm>) {
        let xid = self.next_xid;
        self.next_xid = if xid == i32::MAX { 1 } else { xid + 1 };
        write_request(out, xid, &request);
        let path = arm
            .as_ref()
            .and_then(|_| watched_path(&request).map(str::to_owned));
        self.pending.push_back(Sent {
            xid,
            op: request.op(),
            reply,
            path,
            arm,
        });
    }

    /// The connection is over: every request still waiting on it failed, for all the caller
    /// knows; the watches stay with the session.
    fn broken(self, end: End) -> End {
        let error = match end {
            End::Closed => Error::Closed,
            End::Expired => Error::SessionExpired,
            End::Broken => Error::ConnectionLoss,
        };
        for sent in self.pending {
            let _ = sent.reply.send(Err(error.clone()));
        }
        for (_, reply) in self.auths.into_iter().flatten() {
            let _ = reply.send(Err(error.clone()));
        }
        end
    }
}

/// The node a watching request is about.
fn watched_path(request: &Request) -> Option<&str> {
    match request {
        Request::GetData { path, .. }
        | Request::Exists { path, .. }
        | Request::GetChildren { path, .. }
        | Request::GetChildren2 { path, .. }
        | Request::AddWatch { path, .. }
        | Request::RemoveWatches { path, .. } => Some(path),
        _ => None,
    }
}
