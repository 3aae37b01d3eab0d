//! The ZooKeeper client wire protocol spoken by hand, for bad-input tests.
//!
//! Written from `zookeeper.jute` (records), `ZooDefs.OpCode` and `KeeperException.Code`, and
//! deliberately independent of the `coord-proto` crate: these tests referee it.
//!
//! Framing: every packet is an i32 big-endian length followed by that many payload bytes.
//! Jute: big-endian integers, `buffer`/`ustring` as i32 length + bytes (-1 = null), `vector` as
//! i32 count + items, `boolean` as one byte.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

/// The largest frame this helper accepts from a server (guards the test against a bad length).
pub const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// `ZooDefs.OpCode` values.
pub mod op {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CLOSE_SESSION: i32 = -11;
}

/// `KeeperException.Code` values.
pub mod err {
    pub const OK: i32 = 0;
    pub const SYSTEM_ERROR: i32 = -1;
    pub const MARSHALLING_ERROR: i32 = -5;
    pub const UNIMPLEMENTED: i32 = -6;
    pub const BAD_ARGUMENTS: i32 = -8;
    pub const NO_NODE: i32 = -101;
    pub const NO_AUTH: i32 = -102;
    pub const BAD_VERSION: i32 = -103;
    pub const NODE_EXISTS: i32 = -110;
    pub const NOT_EMPTY: i32 = -111;
    pub const SESSION_EXPIRED: i32 = -112;
    pub const INVALID_ACL: i32 = -114;
}

/// Reserved xids of server-initiated frames.
pub mod xid {
    /// A watch event (`WatcherEvent` body).
    pub const NOTIFICATION: i32 = -1;
    /// A ping reply.
    pub const PING: i32 = -2;
    /// An auth reply.
    pub const AUTH: i32 = -4;
}

/// A jute encoder.
#[derive(Clone, Debug, Default)]
pub struct Jute(pub Vec<u8>);

impl Jute {
    pub fn new() -> Jute {
        Jute(Vec::new())
    }

    pub fn i32(mut self, v: i32) -> Jute {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn i64(mut self, v: i64) -> Jute {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bool(mut self, v: bool) -> Jute {
        self.0.push(u8::from(v));
        self
    }

    /// A `buffer`: length + bytes.
    pub fn buffer(self, v: &[u8]) -> Jute {
        let len = i32::try_from(v.len()).unwrap_or(i32::MAX);
        self.i32(len).raw(v)
    }

    /// A `ustring`: length + UTF-8 bytes (no validation: tests send bad strings on purpose).
    pub fn string(self, v: &str) -> Jute {
        self.buffer(v.as_bytes())
    }

    /// Bytes as they are, with no length.
    pub fn raw(mut self, v: &[u8]) -> Jute {
        self.0.extend_from_slice(v);
        self
    }

    /// A `vector<ACL>`: count, then (perms, scheme, id) per entry.
    pub fn acls(self, acls: &[(i32, &str, &str)]) -> Jute {
        let count = i32::try_from(acls.len()).unwrap_or(i32::MAX);
        acls.iter()
            .fold(self.i32(count), |jute, (perms, scheme, id)| {
                jute.i32(*perms).string(scheme).string(id)
            })
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// One ACL entry as sent on the wire: (perms, scheme, id).
pub type AclEntry<'a> = (i32, &'a str, &'a str);

/// `world:anyone` with all permissions (`ZooDefs.Ids.OPEN_ACL_UNSAFE`).
pub const OPEN_ACL: &[(i32, &str, &str)] = &[(31, "world", "anyone")];

/// A jute decoder over a received payload; every read is bounds-checked.
#[derive(Clone, Debug)]
pub struct JuteReader<'a> {
    buf: &'a [u8],
}

impl<'a> JuteReader<'a> {
    pub fn new(buf: &'a [u8]) -> JuteReader<'a> {
        JuteReader { buf }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("need {n} bytes, have {}", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn i32(&mut self) -> io::Result<i32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(i32::from_be_bytes(b))
    }

    pub fn i64(&mut self) -> io::Result<i64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(i64::from_be_bytes(b))
    }

    pub fn bool(&mut self) -> io::Result<bool> {
        Ok(self.take(1)?[0] != 0)
    }

    /// A `buffer`; `None` for the null buffer (length -1).
    pub fn buffer(&mut self) -> io::Result<Option<Vec<u8>>> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(io::Error::other)?;
        Ok(Some(self.take(len)?.to_vec()))
    }

    pub fn string(&mut self) -> io::Result<String> {
        let bytes = self.buffer()?.unwrap_or_default();
        String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The `ConnectRequest` payload (without the frame length).
pub fn connect_request(timeout_ms: i32, session_id: i64, passwd: &[u8]) -> Vec<u8> {
    Jute::new()
        .i32(0) // protocolVersion
        .i64(0) // lastZxidSeen
        .i32(timeout_ms)
        .i64(session_id)
        .buffer(passwd)
        .bool(false) // readOnly
        .into_bytes()
}

/// A request payload: `RequestHeader` (xid, type) followed by the body.
pub fn request(xid: i32, op: i32, body: &[u8]) -> Vec<u8> {
    Jute::new().i32(xid).i32(op).raw(body).into_bytes()
}

/// Body of exists/getData/getChildren: path + watch.
pub fn path_watch_body(path: &str, watch: bool) -> Vec<u8> {
    Jute::new().string(path).bool(watch).into_bytes()
}

/// Body of create/create2/createContainer: path, data, acl, flags.
pub fn create_body(path: &str, data: &[u8], acl: &[(i32, &str, &str)], flags: i32) -> Vec<u8> {
    Jute::new()
        .string(path)
        .buffer(data)
        .acls(acl)
        .i32(flags)
        .into_bytes()
}

/// Body of createTTL: path, data, acl, flags, ttl.
pub fn create_ttl_body(
    path: &str,
    data: &[u8],
    acl: &[(i32, &str, &str)],
    flags: i32,
    ttl: i64,
) -> Vec<u8> {
    Jute::new()
        .raw(&create_body(path, data, acl, flags))
        .i64(ttl)
        .into_bytes()
}

/// A decoded `ConnectResponse`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// Absent when the server sends the short (pre-3.4) form.
    pub read_only: Option<bool>,
}

impl ConnectResponse {
    pub fn decode(payload: &[u8]) -> io::Result<ConnectResponse> {
        let mut r = JuteReader::new(payload);
        let protocol_version = r.i32()?;
        let timeout_ms = r.i32()?;
        let session_id = r.i64()?;
        let passwd = r.buffer()?.unwrap_or_default();
        let read_only = if r.remaining() > 0 {
            Some(r.bool()?)
        } else {
            None
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}

/// A decoded reply: `ReplyHeader` (xid, zxid, err) and the raw body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn decode(payload: &[u8]) -> io::Result<Reply> {
        let mut r = JuteReader::new(payload);
        let xid = r.i32()?;
        let zxid = r.i64()?;
        let err = r.i32()?;
        Ok(Reply {
            xid,
            zxid,
            err,
            body: payload[16..].to_vec(),
        })
    }
}

/// One raw client connection.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
}

/// What a read saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    Frame(Vec<u8>),
    /// The server closed the connection (EOF or reset).
    Closed,
    /// Nothing arrived before the timeout.
    TimedOut,
}

impl RawConn {
    /// Opens a TCP connection (no handshake).
    pub async fn connect(addr: SocketAddr) -> io::Result<RawConn> {
        let stream = timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        // Best effort: the server may already have closed (e.g. over a connection limit).
        let _ = stream.set_nodelay(true);
        Ok(RawConn { stream })
    }

    /// Opens a TCP connection whose receive buffer is `bytes` (no handshake): a client that stops
    /// reading then holds little in the kernel, and the server's queue for it grows sooner.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> io::Result<RawConn> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_recv_buffer_size(bytes)?;
        let stream = timeout(Duration::from_secs(5), socket.connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(RawConn { stream })
    }

    /// Opens a connection and establishes a new session.
    pub async fn connect_session(addr: SocketAddr) -> io::Result<(RawConn, ConnectResponse)> {
        let mut conn = RawConn::connect(addr).await?;
        let response = conn.handshake(10_000, 0, &[0u8; 16]).await?;
        if response.session_id == 0 || response.timeout_ms <= 0 {
            return Err(io::Error::other(format!("session refused: {response:?}")));
        }
        Ok((conn, response))
    }

    /// Sends a `ConnectRequest` and reads the `ConnectResponse`.
    pub async fn handshake(
        &mut self,
        timeout_ms: i32,
        session_id: i64,
        passwd: &[u8],
    ) -> io::Result<ConnectResponse> {
        self.send_frame(&connect_request(timeout_ms, session_id, passwd))
            .await?;
        match self.read(Duration::from_secs(10)).await? {
            Read::Frame(payload) => ConnectResponse::decode(&payload),
            Read::Closed => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed during handshake",
            )),
            Read::TimedOut => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no ConnectResponse",
            )),
        }
    }

    /// Sends one frame: length prefix + payload.
    pub async fn send_frame(&mut self, payload: &[u8]) -> io::Result<()> {
        let len = i32::try_from(payload.len()).map_err(io::Error::other)?;
        let mut frame = Vec::with_capacity(payload.len() + 4);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(payload);
        self.send_raw(&frame).await
    }

    /// Sends bytes exactly as given.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        timeout(Duration::from_secs(10), self.stream.write_all(bytes))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "write timed out"))?
    }

    /// Like [`RawConn::send_raw`] with a caller-chosen deadline; `Ok(false)` when it stalled.
    pub async fn try_send_raw(&mut self, bytes: &[u8], limit: Duration) -> io::Result<bool> {
        match timeout(limit, self.stream.write_all(bytes)).await {
            Ok(result) => result.map(|()| true),
            Err(_) => Ok(false),
        }
    }

    /// Closes the sending half (the server sees EOF).
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// Reads one frame, or reports EOF/reset, or a timeout.
    pub async fn read(&mut self, limit: Duration) -> io::Result<Read> {
        match timeout(limit, self.read_frame()).await {
            Err(_) => Ok(Read::TimedOut),
            Ok(Ok(Some(frame))) => Ok(Read::Frame(frame)),
            Ok(Ok(None)) => Ok(Read::Closed),
            Ok(Err(e)) if is_disconnect(&e) => Ok(Read::Closed),
            Ok(Err(e)) => Err(e),
        }
    }

    async fn read_frame(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n <= FRAME_BYTES_MAX)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("bad frame length {len}"),
                )
            })?;
        let mut payload = vec![0u8; len];
        match self.stream.read_exact(&mut payload).await {
            Ok(_) => Ok(Some(payload)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads the next reply that is not a watch event or ping; `None` if the server closed.
    pub async fn read_reply(&mut self, limit: Duration) -> io::Result<Option<Reply>> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await? {
                Read::Frame(payload) => {
                    let reply = Reply::decode(&payload)?;
                    if reply.xid != xid::NOTIFICATION && reply.xid != xid::PING {
                        return Ok(Some(reply));
                    }
                }
                Read::Closed => return Ok(None),
                Read::TimedOut => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "no reply"));
                }
            }
        }
    }

    /// Sends one request and reads its reply; `None` if the server closed instead.
    pub async fn call(&mut self, xid: i32, op: i32, body: &[u8]) -> io::Result<Option<Reply>> {
        self.send_frame(&request(xid, op, body)).await?;
        self.read_reply(Duration::from_secs(10)).await
    }

    /// A ping round trip; true when the server answered it.
    pub async fn ping(&mut self) -> io::Result<bool> {
        self.send_frame(&request(xid::PING, op::PING, &[])).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read(left).await? {
                Read::Frame(payload) => {
                    if Reply::decode(&payload)?.xid == xid::PING {
                        return Ok(true);
                    }
                }
                Read::Closed | Read::TimedOut => return Ok(false),
            }
        }
    }

    /// Keeps writing pings *without reading* until a write fails because the server closed
    /// the connection (true), or `limit` passes (false). Unlike [`RawConn::closed_within`] this
    /// does not drain replies, so it cannot relieve a server that is waiting for the client.
    pub async fn closed_by_peer_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let ping = {
            let payload = request(xid::PING, op::PING, &[]);
            let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&payload);
            frame
        };
        while Instant::now() < deadline {
            if self
                .try_send_raw(&ping, Duration::from_millis(500))
                .await
                .is_err()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Discards whatever arrives until the server closes the connection (true) or `limit`
    /// passes (false).
    pub async fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut scratch = vec![0u8; 64 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.stream.read(&mut scratch)).await {
                Err(_) => return false,
                Ok(Ok(0)) => return true,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return true,
            }
        }
    }
}

fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}
