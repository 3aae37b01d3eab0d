//! One session: the connect handshake, then requests answered in order on one connection (the
//! server replies in request order, so replies are matched to a FIFO of pending requests).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use coord_proto::{
    decode_frame, write_frame, xid, Acl, ConnectRequest, ConnectResponse, CreateMode,
    CreateRequest, ErrorCode, EventType, MultiOp, MultiResult, OpCode, Reader, Record, ReplyHeader,
    Request, Response, Stat, WatcherEvent,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::{ConnectString, Error};

/// Requests queued for the connection at most; past it, callers wait for room.
const CALLS_QUEUED_MAX: usize = 1024;
/// The largest reply frame read; a longer one closes the connection. It matches the largest
/// reply a coord server may be configured to send (256 MiB).
const REPLY_FRAME_BYTES_MAX: usize = 256 << 20;

struct Call {
    request: Request,
    reply: oneshot::Sender<Result<Response, Error>>,
    /// A one-shot watch the request sets, armed when its reply arrives.
    watch: Option<(WatchKind, oneshot::Sender<WatchedEvent>)>,
}

/// What a one-shot watch waits for, as ZooKeeper's client tells data, exist and child watches
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WatchKind {
    /// Set by getData: fires on a change of the data, or the node's deletion.
    Data,
    /// Set by exists: also fires when the node is created.
    Exist,
    /// Set by getChildren: fires on a change of the children, or the node's deletion.
    Child,
}

impl WatchKind {
    fn fires_on(self, event: EventType) -> bool {
        match self {
            WatchKind::Data => matches!(event, EventType::NodeDataChanged | EventType::NodeDeleted),
            WatchKind::Exist => matches!(
                event,
                EventType::NodeCreated | EventType::NodeDataChanged | EventType::NodeDeleted
            ),
            WatchKind::Child => {
                matches!(
                    event,
                    EventType::NodeChildrenChanged | EventType::NodeDeleted
                )
            }
        }
    }
}

/// What a watch saw: the kind of change, and the node it happened to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

/// A one-shot watch: resolves once with the change it was set for, or with
/// [`Error::ConnectionLoss`] if the connection ends first (this step of the client does not
/// re-arm watches on another connection yet).
pub struct Watch {
    event: oneshot::Receiver<WatchedEvent>,
    chroot: ConnectString,
}

impl Future for Watch {
    type Output = Result<WatchedEvent, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.event).poll(cx).map(|event| {
            event
                .map(|mut event| {
                    event.path = this.chroot.client_path(&event.path);
                    event
                })
                .map_err(|_| Error::ConnectionLoss)
        })
    }
}

/// A session with a coord (or ZooKeeper) ensemble. Cheap to share by reference across tasks;
/// requests from all of them are answered in the order they were sent.
pub struct Client {
    calls: mpsc::Sender<Call>,
    connect: ConnectString,
    session_id: i64,
    timeout: Duration,
}

impl Client {
    /// Connects to the first server of `connect_string` that answers and opens a session
    /// with `session_timeout` (the server may clamp it; see [`Client::session_timeout`]).
    pub async fn connect(connect_string: &str, session_timeout: Duration) -> Result<Client, Error> {
        let connect = ConnectString::parse(connect_string)?;
        let mut failures = Vec::new();
        for server in &connect.servers {
            let attempt = tokio::time::timeout(session_timeout, handshake(server, session_timeout));
            let (stream, response) = match attempt.await {
                Ok(Ok(connected)) => connected,
                Ok(Err(e)) => {
                    failures.push(format!("{server}: {e}"));
                    continue;
                }
                Err(_) => {
                    failures.push(format!("{server}: no answer in time"));
                    continue;
                }
            };
            let timeout = Duration::from_millis(response.timeout_ms.max(0) as u64);
            let (calls, calls_rx) = mpsc::channel(CALLS_QUEUED_MAX);
            tokio::spawn(run(stream, calls_rx, timeout));
            return Ok(Client {
                calls,
                connect,
                session_id: response.session_id,
                timeout,
            });
        }
        Err(Error::Unreachable(failures.join("; ")))
    }

    /// The session's id, as the server named it.
    pub fn session_id(&self) -> i64 {
        self.session_id
    }

    /// The session timeout the server granted.
    pub fn session_timeout(&self) -> Duration {
        self.timeout
    }

    async fn call(&self, request: Request) -> Result<Response, Error> {
        self.send(request, None).await
    }

    async fn send(
        &self,
        request: Request,
        watch: Option<(WatchKind, oneshot::Sender<WatchedEvent>)>,
    ) -> Result<Response, Error> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call {
                request,
                reply,
                watch,
            })
            .await
            .map_err(|_| Error::ConnectionLoss)?;
        answer.await.map_err(|_| Error::ConnectionLoss)?
    }

    /// Sends `request` with a one-shot watch of `kind` on its node.
    async fn watched(&self, request: Request, kind: WatchKind) -> (Result<Response, Error>, Watch) {
        let (fire, event) = oneshot::channel();
        let result = self.send(request, Some((kind, fire))).await;
        let watch = Watch {
            event,
            chroot: self.connect.clone(),
        };
        (result, watch)
    }

    /// A node's data and Stat, and a watch that fires when the data changes or the node goes.
    pub async fn get_data_watch(&self, path: &str) -> Result<(Vec<u8>, Stat, Watch), Error> {
        let path = self.connect.server_path(path);
        match self
            .watched(Request::GetData { path, watch: true }, WatchKind::Data)
            .await
        {
            (Ok(Response::GetData { data, stat }), watch) => Ok((data.to_vec(), stat, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// A node's Stat (None if it does not exist), and a watch that fires when it is created,
    /// changed or deleted.
    pub async fn exists_watch(&self, path: &str) -> Result<(Option<Stat>, Watch), Error> {
        let path = self.connect.server_path(path);
        match self
            .watched(Request::Exists { path, watch: true }, WatchKind::Exist)
            .await
        {
            (Ok(Response::Stat(stat)), watch) => Ok((Some(stat), watch)),
            (Err(Error::Server(ErrorCode::NoNode)), watch) => Ok((None, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// A node's children's names, and a watch that fires when they change or the node goes.
    pub async fn get_children_watch(&self, path: &str) -> Result<(Vec<String>, Watch), Error> {
        let path = self.connect.server_path(path);
        match self
            .watched(Request::GetChildren { path, watch: true }, WatchKind::Child)
            .await
        {
            (Ok(Response::GetChildren { children }), watch) => Ok((children, watch)),
            (Ok(other), _) => Err(unexpected(other)),
            (Err(e), _) => Err(e),
        }
    }

    /// Creates a node; returns its path (with its sequence number, for a sequential mode).
    pub async fn create(
        &self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        mode: CreateMode,
    ) -> Result<String, Error> {
        let request = CreateRequest {
            path: self.connect.server_path(path),
            data: data.to_vec(),
            acl: acl.to_vec(),
            flags: mode.code(),
            ttl: None,
        };
        let request = if mode.is_container() {
            Request::CreateContainer(request)
        } else {
            Request::Create(request)
        };
        match self.call(request).await? {
            Response::Create { path } | Response::Create2 { path, .. } => {
                Ok(self.connect.client_path(&path))
            }
            other => Err(unexpected(other)),
        }
    }

    /// A node's data and Stat.
    pub async fn get_data(&self, path: &str) -> Result<(Vec<u8>, Stat), Error> {
        let path = self.connect.server_path(path);
        match self.call(Request::GetData { path, watch: false }).await? {
            Response::GetData { data, stat } => Ok((data.to_vec(), stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces a node's data if its version is `version` (-1: any); returns the new Stat.
    pub async fn set_data(&self, path: &str, data: &[u8], version: i32) -> Result<Stat, Error> {
        let request = Request::SetData {
            path: self.connect.server_path(path),
            data: data.to_vec(),
            version,
        };
        match self.call(request).await? {
            Response::Stat(stat) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Deletes a node if its version is `version` (-1: any).
    pub async fn delete(&self, path: &str, version: i32) -> Result<(), Error> {
        let path = self.connect.server_path(path);
        match self.call(Request::Delete { path, version }).await? {
            Response::Empty => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// A node's Stat, or None if it does not exist.
    pub async fn exists(&self, path: &str) -> Result<Option<Stat>, Error> {
        let path = self.connect.server_path(path);
        match self.call(Request::Exists { path, watch: false }).await {
            Ok(Response::Stat(stat)) => Ok(Some(stat)),
            Err(Error::Server(ErrorCode::NoNode)) => Ok(None),
            Ok(other) => Err(unexpected(other)),
            Err(e) => Err(e),
        }
    }

    /// A node's children's names.
    pub async fn get_children(&self, path: &str) -> Result<Vec<String>, Error> {
        let path = self.connect.server_path(path);
        match self
            .call(Request::GetChildren { path, watch: false })
            .await?
        {
            Response::GetChildren { children } => Ok(children),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the server this session is connected to has applied every write that was
    /// committed before (so the next read here sees them); returns the path.
    pub async fn sync(&self, path: &str) -> Result<String, Error> {
        let path = self.connect.server_path(path);
        match self.call(Request::Sync { path }).await? {
            Response::Sync { path } => Ok(self.connect.client_path(&path)),
            other => Err(unexpected(other)),
        }
    }

    /// A node's ACL and Stat.
    pub async fn get_acl(&self, path: &str) -> Result<(Vec<Acl>, Stat), Error> {
        let path = self.connect.server_path(path);
        match self.call(Request::GetAcl { path }).await? {
            Response::GetAcl { acl, stat } => Ok((acl, stat)),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces a node's ACL if its ACL version is `version` (-1: any); returns the new Stat.
    pub async fn set_acl(&self, path: &str, acl: &[Acl], version: i32) -> Result<Stat, Error> {
        let request = Request::SetAcl {
            path: self.connect.server_path(path),
            acl: acl.to_vec(),
            version,
        };
        match self.call(request).await? {
            Response::Stat(stat) => Ok(stat),
            other => Err(unexpected(other)),
        }
    }

    /// Runs `ops` as one transaction: all of them, or (with the first failure's error) none.
    pub async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>, Error> {
        let ops = ops.iter().map(|op| op.to_wire(&self.connect)).collect();
        let results = match self.call(Request::Multi(ops)).await? {
            Response::Multi(results) => results,
            other => return Err(unexpected(other)),
        };
        // In a failed multi every result is an error: Ok for the ops before the culprit, its
        // own code, RuntimeInconsistency for the ops after it.
        if let Some(code) = results
            .iter()
            .filter_map(|r| match r {
                MultiResult::Error(code) => Some(*code),
                _ => None,
            })
            .find(|code| *code != 0 && *code != ErrorCode::RuntimeInconsistency.code())
        {
            return Err(ErrorCode::from_code(code).map_or_else(
                || Error::Malformed(format!("error code {code}")),
                Error::Server,
            ));
        }
        results
            .into_iter()
            .map(|result| match result {
                MultiResult::Create { path } | MultiResult::Create2 { path, .. } => {
                    Ok(OpResult::Create {
                        path: self.connect.client_path(&path),
                    })
                }
                MultiResult::Delete => Ok(OpResult::Delete),
                MultiResult::SetData { stat } => Ok(OpResult::SetData { stat }),
                MultiResult::Check => Ok(OpResult::Check),
                other => Err(Error::Malformed(format!(
                    "unexpected multi result {other:?}"
                ))),
            })
            .collect()
    }

    /// Ends the session: its ephemeral nodes go at once.
    pub async fn close(self) -> Result<(), Error> {
        match self.call(Request::CloseSession).await {
            Ok(_) | Err(Error::ConnectionLoss) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// One operation of a [`Client::multi`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create {
        path: String,
        data: Vec<u8>,
        acl: Vec<Acl>,
        mode: CreateMode,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// Fails the transaction unless the node's version is `version`.
    Check {
        path: String,
        version: i32,
    },
}

impl Op {
    fn to_wire(&self, connect: &ConnectString) -> MultiOp {
        match self {
            Op::Create {
                path,
                data,
                acl,
                mode,
            } => {
                let request = CreateRequest {
                    path: connect.server_path(path),
                    data: data.clone(),
                    acl: acl.clone(),
                    flags: mode.code(),
                    ttl: None,
                };
                if mode.is_container() {
                    MultiOp::CreateContainer(request)
                } else {
                    MultiOp::Create(request)
                }
            }
            Op::Delete { path, version } => MultiOp::Delete {
                path: connect.server_path(path),
                version: *version,
            },
            Op::SetData {
                path,
                data,
                version,
            } => MultiOp::SetData {
                path: connect.server_path(path),
                data: data.clone(),
                version: *version,
            },
            Op::Check { path, version } => MultiOp::Check {
                path: connect.server_path(path),
                version: *version,
            },
        }
    }
}

/// What one operation of a successful [`Client::multi`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create { path: String },
    Delete,
    SetData { stat: Stat },
    Check,
}

fn unexpected(response: Response) -> Error {
    Error::Malformed(format!("unexpected reply {response:?}"))
}

/// Connects to `server` and opens a new session.
async fn handshake(server: &str, timeout: Duration) -> Result<(TcpStream, ConnectResponse), Error> {
    let mut stream = TcpStream::connect(server)
        .await
        .map_err(|e| Error::Unreachable(e.to_string()))?;
    let _ = stream.set_nodelay(true);
    let request = ConnectRequest {
        protocol_version: 0,
        last_zxid_seen: 0,
        timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
        session_id: 0,
        passwd: vec![0; 16],
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
    if response.session_id == 0 || response.timeout_ms <= 0 {
        return Err(Error::SessionExpired);
    }
    Ok((stream, response))
}

/// The connection's task: writes requests and pings, reads replies, until the connection or
/// the client goes. Then every request still waiting gets `ConnectionLoss`.
async fn run(stream: TcpStream, mut calls: mpsc::Receiver<Call>, timeout: Duration) {
    let (mut reader, mut writer) = stream.into_split();
    let mut pending = Pending::new();
    let mut watches = Watches::new();
    let mut next_xid: i32 = 1;
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    // A third of the timeout, as ZooKeeper's clients ping an idle session.
    let ping_every = (timeout / 3).max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(Call { request, reply, watch }) = call else {
                    break;
                };
                let xid = next_xid;
                next_xid = if next_xid == i32::MAX { 1 } else { next_xid + 1 };
                out.clear();
                request.write_frame(xid, &mut out);
                if writer.write_all(&out).await.is_err() {
                    let _ = reply.send(Err(Error::ConnectionLoss));
                    break;
                }
                let watch = watch.and_then(|(kind, fire)| {
                    request_path(&request).map(|path| (kind, path.to_owned(), fire))
                });
                pending.push_back(Sent {
                    xid,
                    op: request.op(),
                    reply,
                    watch,
                });
                ping.reset();
            }
            _ = ping.tick() => {
                out.clear();
                Request::Ping.write_frame(xid::PING, &mut out);
                if writer.write_all(&out).await.is_err() {
                    break;
                }
            }
            read = reader.read_buf(&mut input) => {
                if !matches!(read, Ok(n) if n > 0) {
                    break;
                }
                if let Err(reason) = deliver(&mut input, &mut pending, &mut watches) {
                    tracing::warn!(%reason, "closing the connection");
                    break;
                }
            }
        }
    }
    for sent in pending {
        let _ = sent.reply.send(Err(Error::ConnectionLoss));
    }
    // Dropping the armed watches tells their futures the connection is gone.
}

/// A request sent and not answered yet.
struct Sent {
    xid: i32,
    op: OpCode,
    reply: oneshot::Sender<Result<Response, Error>>,
    /// The watch to arm on its node (as the server names it) when the reply comes.
    watch: Option<(WatchKind, String, oneshot::Sender<WatchedEvent>)>,
}

/// The requests sent and not answered yet, in the order sent.
type Pending = VecDeque<Sent>;

/// The armed one-shot watches, by node (as the server names it). Bounded by the requests that
/// set them: each fires once, or goes with the connection.
type Watches = HashMap<String, Vec<(WatchKind, oneshot::Sender<WatchedEvent>)>>;

/// The node a watching request is about.
fn request_path(request: &Request) -> Option<&str> {
    match request {
        Request::GetData { path, .. }
        | Request::Exists { path, .. }
        | Request::GetChildren { path, .. } => Some(path),
        _ => None,
    }
}

/// Fires, and disarms, the watches an event concerns.
fn fire(watches: &mut Watches, event: WatcherEvent) {
    let Some(armed) = watches.get_mut(&event.path) else {
        return;
    };
    let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(armed)
        .into_iter()
        .partition(|(kind, _)| kind.fires_on(event.event_type));
    *armed = keep;
    if armed.is_empty() {
        watches.remove(&event.path);
    }
    for (_, fire) in due {
        let _ = fire.send(WatchedEvent {
            event_type: event.event_type,
            path: event.path.clone(),
        });
    }
}

/// Answers the pending requests whose replies are whole in `input`.
fn deliver(
    input: &mut BytesMut,
    pending: &mut Pending,
    watches: &mut Watches,
) -> Result<(), String> {
    while let Some(frame) = decode_frame(input, REPLY_FRAME_BYTES_MAX).map_err(|e| e.to_string())? {
        let (header, body) = ReplyHeader::split(&frame).map_err(|e| e.to_string())?;
        match header.xid {
            xid::PING => continue,
            xid::NOTIFICATION => {
                let event =
                    WatcherEvent::read(&mut Reader::new(body)).map_err(|e| e.to_string())?;
                fire(watches, event);
                continue;
            }
            _ => {}
        }
        let Some(Sent {
            xid: expected,
            op,
            reply,
            watch,
        }) = pending.pop_front()
        else {
            return Err(format!("a reply to xid {} nobody asked for", header.xid));
        };
        if header.xid != expected {
            let _ = reply.send(Err(Error::ConnectionLoss));
            return Err(format!(
                "reply to xid {} where {expected} was due",
                header.xid
            ));
        }
        // The server armed the watch when it answered: so does the client, before any later
        // event is read. exists arms it on a node that does not exist too.
        let armed = header.err == 0
            || (header.err == ErrorCode::NoNode.code()
                && matches!(watch, Some((WatchKind::Exist, _, _))));
        if let (true, Some((kind, path, fire))) = (armed, watch) {
            watches.entry(path).or_default().push((kind, fire));
        }
        let result = if header.err != 0 {
            Err(match ErrorCode::from_code(header.err) {
                Some(ErrorCode::SessionExpired) => Error::SessionExpired,
                Some(code) => Error::Server(code),
                None => Error::Malformed(format!("unknown error code {}", header.err)),
            })
        } else {
            Response::decode(op.code(), body).map_err(|e| Error::Malformed(e.to_string()))
        };
        let _ = reply.send(result);
    }
    Ok(())
}
