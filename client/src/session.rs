//! One session: the connect handshake, then requests answered in order on one connection (the
//! server replies in request order, so replies are matched to a FIFO of pending requests).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::BytesMut;
use coord_proto::{
    decode_frame, write_frame, xid, Acl, ConnectRequest, ConnectResponse, CreateMode,
    CreateRequest, ErrorCode, OpCode, Reader, Record, ReplyHeader, Request, Response, Stat,
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
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call { request, reply })
            .await
            .map_err(|_| Error::ConnectionLoss)?;
        answer.await.map_err(|_| Error::ConnectionLoss)?
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

    /// Ends the session: its ephemeral nodes go at once.
    pub async fn close(self) -> Result<(), Error> {
        match self.call(Request::CloseSession).await {
            Ok(_) | Err(Error::ConnectionLoss) => Ok(()),
            Err(e) => Err(e),
        }
    }
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
    let mut next_xid: i32 = 1;
    let mut input = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    // A third of the timeout, as ZooKeeper's clients ping an idle session.
    let ping_every = (timeout / 3).max(Duration::from_millis(10));
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(Call { request, reply }) = call else {
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
                pending.push_back((xid, request.op(), reply));
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
                if let Err(reason) = deliver(&mut input, &mut pending) {
                    tracing::warn!(%reason, "closing the connection");
                    break;
                }
            }
        }
    }
    for (_, _, reply) in pending {
        let _ = reply.send(Err(Error::ConnectionLoss));
    }
}

/// The requests sent and not answered yet, in the order sent: (xid, op, who waits).
type Pending = VecDeque<(i32, OpCode, oneshot::Sender<Result<Response, Error>>)>;

/// Answers the pending requests whose replies are whole in `input`.
fn deliver(input: &mut BytesMut, pending: &mut Pending) -> Result<(), String> {
    while let Some(frame) = decode_frame(input, REPLY_FRAME_BYTES_MAX).map_err(|e| e.to_string())? {
        let (header, body) = ReplyHeader::split(&frame).map_err(|e| e.to_string())?;
        match header.xid {
            // Watches come with the next step.
            xid::PING | xid::NOTIFICATION => continue,
            _ => {}
        }
        let Some((expected, op, reply)) = pending.pop_front() else {
            return Err(format!("a reply to xid {} nobody asked for", header.xid));
        };
        if header.xid != expected {
            let _ = reply.send(Err(Error::ConnectionLoss));
            return Err(format!(
                "reply to xid {} where {expected} was due",
                header.xid
            ));
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
