//! Client requests: the body that follows a [`RequestHeader`], one variant per op code, laid out
//! as the matching `*Request` record of `zookeeper.jute` (and `MultiOperationRecord` for multi).

use bytes::{BufMut, BytesMut};

use crate::frame::write_frame;
use crate::jute::{
    read_acl_vec, write_bool, write_buffer, write_i32, write_i64, write_record_vec, write_string,
    write_string_vec, DecodeError, Reader, Record,
};
use crate::records::{MultiHeader, RequestHeader};
use crate::types::{Acl, AddWatchMode, CreateMode, OpCode, WatcherType};

/// jute `CreateRequest`, or `CreateTTLRequest` when `ttl` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// The raw path; the znode crate validates it.
    pub path: String,
    /// The node's data; a null buffer reads as empty.
    pub data: Vec<u8>,
    /// A null vector reads as empty (ZooKeeper rejects both with `InvalidACL`).
    pub acl: Vec<Acl>,
    /// The `CreateMode` flag, raw: ZooKeeper answers an unknown flag with an error, not a
    /// disconnect, so the caller decides (see [`CreateRequest::mode`]).
    pub flags: i32,
    /// The TTL in milliseconds: `Some` exactly for createTTL (`CreateTTLRequest`).
    pub ttl: Option<i64>,
}

impl CreateRequest {
    /// The create mode the flags name, if they name one.
    pub fn mode(&self) -> Option<CreateMode> {
        CreateMode::from_code(self.flags)
    }

    fn read(r: &mut Reader<'_>, with_ttl: bool) -> Result<Self, DecodeError> {
        Ok(CreateRequest {
            path: r.read_string_required("path")?,
            data: r.read_buffer_or_empty()?,
            acl: read_acl_vec(r)?,
            flags: r.read_i32()?,
            ttl: if with_ttl { Some(r.read_i64()?) } else { None },
        })
    }

    /// Writes `CreateTTLRequest` (with `ttl`, 0 if unset) when `with_ttl`, else `CreateRequest`
    /// (ignoring `ttl`).
    fn write(&self, buf: &mut impl BufMut, with_ttl: bool) {
        write_string(buf, &self.path);
        write_buffer(buf, &self.data);
        write_record_vec(buf, &self.acl);
        write_i32(buf, self.flags);
        if with_ttl {
            write_i64(buf, self.ttl.unwrap_or(0));
        }
    }
}

/// jute `AuthPacket` (op 100, xid -4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPacket {
    /// Unused by ZooKeeper; clients send 0.
    pub auth_type: i32,
    pub scheme: String,
    /// Scheme-specific credentials, e.g. `user:password` for digest. Null reads as empty.
    pub auth: Vec<u8>,
}

impl Record for AuthPacket {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AuthPacket {
            auth_type: r.read_i32()?,
            scheme: r.read_string_required("AuthPacket.scheme")?,
            auth: r.read_buffer_or_empty()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.auth_type);
        write_string(buf, &self.scheme);
        write_buffer(buf, &self.auth);
    }
}

/// One operation inside a multi (writes) or multiRead (reads), as `MultiOperationRecord` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    /// op 1, `CreateRequest`.
    Create(CreateRequest),
    /// op 15, `CreateRequest`.
    Create2(CreateRequest),
    /// op 19, `CreateRequest`.
    CreateContainer(CreateRequest),
    /// op 21, `CreateTTLRequest`.
    CreateTtl(CreateRequest),
    /// op 2, `DeleteRequest`.
    Delete { path: String, version: i32 },
    /// op 5, `SetDataRequest`.
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// op 13, `CheckVersionRequest`.
    Check { path: String, version: i32 },
    /// op 8, `GetChildrenRequest` (multiRead only). ZooKeeper ignores its `watch` flag; it is
    /// written as false.
    GetChildren { path: String },
    /// op 4, `GetDataRequest` (multiRead only). ZooKeeper ignores its `watch` flag; it is written
    /// as false.
    GetData { path: String },
}

impl MultiOp {
    /// The op code in this op's `MultiHeader`.
    pub fn op(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete { .. } => OpCode::Delete,
            MultiOp::SetData { .. } => OpCode::SetData,
            MultiOp::Check { .. } => OpCode::Check,
            MultiOp::GetChildren { .. } => OpCode::GetChildren,
            MultiOp::GetData { .. } => OpCode::GetData,
        }
    }

    /// Whether this op belongs in a multiRead rather than a multi.
    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren { .. } | MultiOp::GetData { .. })
    }

    /// The path the op acts on.
    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(c)
            | MultiOp::Create2(c)
            | MultiOp::CreateContainer(c)
            | MultiOp::CreateTtl(c) => &c.path,
            MultiOp::Delete { path, .. }
            | MultiOp::SetData { path, .. }
            | MultiOp::Check { path, .. }
            | MultiOp::GetChildren { path }
            | MultiOp::GetData { path } => path,
        }
    }

    fn read(r: &mut Reader<'_>, op: i32, reads: bool) -> Result<Self, DecodeError> {
        let within = if reads { "multiRead" } else { "multi" };
        let bad = DecodeError::BadMultiOp { op, within };
        let Some(code) = OpCode::from_code(op) else {
            return Err(bad);
        };
        let parsed = match code {
            OpCode::Create => MultiOp::Create(CreateRequest::read(r, false)?),
            OpCode::Create2 => MultiOp::Create2(CreateRequest::read(r, false)?),
            OpCode::CreateContainer => MultiOp::CreateContainer(CreateRequest::read(r, false)?),
            OpCode::CreateTtl => MultiOp::CreateTtl(CreateRequest::read(r, true)?),
            OpCode::Delete => MultiOp::Delete {
                path: r.read_string_required("path")?,
                version: r.read_i32()?,
            },
            OpCode::SetData => MultiOp::SetData {
                path: r.read_string_required("path")?,
                data: r.read_buffer_or_empty()?,
                version: r.read_i32()?,
            },
            OpCode::Check => MultiOp::Check {
                path: r.read_string_required("path")?,
                version: r.read_i32()?,
            },
            OpCode::GetChildren => {
                let path = r.read_string_required("path")?;
                let _watch = r.read_bool()?;
                MultiOp::GetChildren { path }
            }
            OpCode::GetData => {
                let path = r.read_string_required("path")?;
                let _watch = r.read_bool()?;
                MultiOp::GetData { path }
            }
            _ => return Err(bad),
        };
        // MultiOperationRecord refuses to mix reads and writes; the op code picks which kind.
        if parsed.is_read() != reads {
            return Err(bad);
        }
        Ok(parsed)
    }

    fn write(&self, buf: &mut impl BufMut) {
        MultiHeader {
            op: self.op().code(),
            done: false,
            err: -1,
        }
        .write(buf);
        match self {
            MultiOp::Create(c) | MultiOp::Create2(c) | MultiOp::CreateContainer(c) => {
                c.write(buf, false)
            }
            MultiOp::CreateTtl(c) => c.write(buf, true),
            MultiOp::Delete { path, version } | MultiOp::Check { path, version } => {
                write_string(buf, path);
                write_i32(buf, *version);
            }
            MultiOp::SetData {
                path,
                data,
                version,
            } => {
                write_string(buf, path);
                write_buffer(buf, data);
                write_i32(buf, *version);
            }
            MultiOp::GetChildren { path } | MultiOp::GetData { path } => {
                write_string(buf, path);
                write_bool(buf, false);
            }
        }
    }
}

/// Reads a `MultiOperationRecord`: headers and ops until a header with `done` set. The loop is
/// bounded by the input: every iteration consumes at least one 9-byte header.
fn read_multi(r: &mut Reader<'_>, reads: bool) -> Result<Vec<MultiOp>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let header = MultiHeader::read(r)?;
        if header.done {
            return Ok(ops);
        }
        ops.push(MultiOp::read(r, header.op, reads)?);
    }
}

fn write_multi(buf: &mut impl BufMut, ops: &[MultiOp]) {
    for op in ops {
        op.write(buf);
    }
    MultiHeader::DONE.write(buf);
}

/// A decoded client request (the body after the [`RequestHeader`]).
///
/// Strings are raw: paths are not validated here. Null buffers and vectors read as empty, null
/// paths are a [`DecodeError::UnexpectedNull`]. As in ZooKeeper, bytes after the record are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// op 11, no body. Clients send it with xid -2.
    Ping,
    /// op 100, `AuthPacket`. Clients send it with xid -4.
    Auth(AuthPacket),
    /// op 1, `CreateRequest`; replied with [`crate::Response::Create`].
    Create(CreateRequest),
    /// op 15, `CreateRequest`; replied with [`crate::Response::Create2`].
    Create2(CreateRequest),
    /// op 19, `CreateRequest`.
    CreateContainer(CreateRequest),
    /// op 21, `CreateTTLRequest`: `ttl` is `Some`.
    CreateTtl(CreateRequest),
    /// op 2, `DeleteRequest`.
    Delete { path: String, version: i32 },
    /// op 3, `ExistsRequest`.
    Exists { path: String, watch: bool },
    /// op 4, `GetDataRequest`.
    GetData { path: String, watch: bool },
    /// op 5, `SetDataRequest`.
    SetData {
        path: String,
        data: Vec<u8>,
        version: i32,
    },
    /// op 6, `GetACLRequest`.
    GetAcl { path: String },
    /// op 7, `SetACLRequest`.
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    /// op 8, `GetChildrenRequest`.
    GetChildren { path: String, watch: bool },
    /// op 12, `GetChildren2Request`.
    GetChildren2 { path: String, watch: bool },
    /// op 9, `SyncRequest`.
    Sync { path: String },
    /// op 13, `CheckVersionRequest` outside a multi. ZooKeeper 3.9 does not accept it at top
    /// level (`Request.isValid` is false): it answers `Unimplemented` and closes the session.
    Check { path: String, version: i32 },
    /// op 14, `MultiOperationRecord` of write ops (create*, delete, setData, check).
    Multi(Vec<MultiOp>),
    /// op 22, `MultiOperationRecord` of read ops (getChildren, getData).
    MultiRead(Vec<MultiOp>),
    /// op 17, `CheckWatchesRequest`.
    CheckWatches {
        path: String,
        watcher_type: WatcherType,
    },
    /// op 18, `RemoveWatchesRequest`.
    RemoveWatches {
        path: String,
        watcher_type: WatcherType,
    },
    /// op 101, `SetWatches`; clients send it with xid -8 on reconnect.
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    /// op 105, `SetWatches2`: `SetWatches` plus persistent and persistent-recursive watches.
    SetWatches2 {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    /// op 106, `AddWatchRequest`.
    AddWatch { path: String, mode: AddWatchMode },
    /// op 103, `GetEphemeralsRequest`. A null prefix reads as empty; ZooKeeper treats null, empty
    /// and "/" alike (every ephemeral of the session).
    GetEphemerals { prefix: String },
    /// op 104, `GetAllChildrenNumberRequest`.
    GetAllChildrenNumber { path: String },
    /// op 107, no body.
    WhoAmI,
    /// op -11, no body.
    CloseSession,
}

impl Request {
    /// Decodes the body of a request whose header carried op code `op`.
    ///
    /// Op codes ZooKeeper does not define give [`DecodeError::UnknownOpCode`]; defined ones that
    /// are not client requests we serve (reconfig, sasl, ...) give [`DecodeError::Unsupported`].
    /// ZooKeeper answers both with `Unimplemented`; any other error with `MarshallingError`.
    pub fn decode(op: i32, body: &[u8]) -> Result<Request, DecodeError> {
        let Some(code) = OpCode::from_code(op) else {
            return Err(DecodeError::UnknownOpCode(op));
        };
        let r = &mut Reader::new(body);
        let path = |r: &mut Reader<'_>| r.read_string_required("path");
        Ok(match code {
            OpCode::Ping => Request::Ping,
            OpCode::Auth => Request::Auth(AuthPacket::read(r)?),
            OpCode::Create => Request::Create(CreateRequest::read(r, false)?),
            OpCode::Create2 => Request::Create2(CreateRequest::read(r, false)?),
            OpCode::CreateContainer => Request::CreateContainer(CreateRequest::read(r, false)?),
            OpCode::CreateTtl => Request::CreateTtl(CreateRequest::read(r, true)?),
            OpCode::Delete => Request::Delete {
                path: path(r)?,
                version: r.read_i32()?,
            },
            OpCode::Exists => Request::Exists {
                path: path(r)?,
                watch: r.read_bool()?,
            },
            OpCode::GetData => Request::GetData {
                path: path(r)?,
                watch: r.read_bool()?,
            },
            OpCode::SetData => Request::SetData {
                path: path(r)?,
                data: r.read_buffer_or_empty()?,
                version: r.read_i32()?,
            },
            OpCode::GetAcl => Request::GetAcl { path: path(r)? },
            OpCode::SetAcl => Request::SetAcl {
                path: path(r)?,
                acl: read_acl_vec(r)?,
                version: r.read_i32()?,
            },
            OpCode::GetChildren => Request::GetChildren {
                path: path(r)?,
                watch: r.read_bool()?,
            },
            OpCode::GetChildren2 => Request::GetChildren2 {
                path: path(r)?,
                watch: r.read_bool()?,
            },
            OpCode::Sync => Request::Sync { path: path(r)? },
            OpCode::Check => Request::Check {
                path: path(r)?,
                version: r.read_i32()?,
            },
            OpCode::Multi => Request::Multi(read_multi(r, false)?),
            OpCode::MultiRead => Request::MultiRead(read_multi(r, true)?),
            OpCode::CheckWatches => Request::CheckWatches {
                path: path(r)?,
                watcher_type: read_watcher_type(r)?,
            },
            OpCode::RemoveWatches => Request::RemoveWatches {
                path: path(r)?,
                watcher_type: read_watcher_type(r)?,
            },
            OpCode::SetWatches => Request::SetWatches {
                relative_zxid: r.read_i64()?,
                data: r.read_string_vec()?,
                exist: r.read_string_vec()?,
                child: r.read_string_vec()?,
            },
            OpCode::SetWatches2 => Request::SetWatches2 {
                relative_zxid: r.read_i64()?,
                data: r.read_string_vec()?,
                exist: r.read_string_vec()?,
                child: r.read_string_vec()?,
                persistent: r.read_string_vec()?,
                persistent_recursive: r.read_string_vec()?,
            },
            OpCode::AddWatch => {
                let path = path(r)?;
                let mode = r.read_i32()?;
                let mode = AddWatchMode::from_code(mode).ok_or(DecodeError::BadEnum {
                    field: "AddWatchRequest.mode",
                    value: mode,
                })?;
                Request::AddWatch { path, mode }
            }
            OpCode::GetEphemerals => Request::GetEphemerals {
                prefix: r.read_string_or_empty()?,
            },
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber { path: path(r)? },
            OpCode::WhoAmI => Request::WhoAmI,
            OpCode::CloseSession => Request::CloseSession,
            OpCode::Notification
            | OpCode::Reconfig
            | OpCode::DeleteContainer
            | OpCode::Sasl
            | OpCode::CreateSession
            | OpCode::Error => return Err(DecodeError::Unsupported(code)),
        })
    }

    /// Splits a whole request frame (after the length prefix) into header and request. A body
    /// that fails to decode still needs the header's xid for the error reply, so the header
    /// comes back on its own in that case.
    pub fn decode_frame(frame: &[u8]) -> Result<(RequestHeader, Request), RequestFrameError> {
        let (header, body) = RequestHeader::split(frame).map_err(RequestFrameError::Header)?;
        let request = Request::decode(header.op, body)
            .map_err(|error| RequestFrameError::Body { header, error })?;
        Ok((header, request))
    }

    /// The op code this request travels under.
    pub fn op(&self) -> OpCode {
        match self {
            Request::Ping => OpCode::Ping,
            Request::Auth(_) => OpCode::Auth,
            Request::Create(_) => OpCode::Create,
            Request::Create2(_) => OpCode::Create2,
            Request::CreateContainer(_) => OpCode::CreateContainer,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete { .. } => OpCode::Delete,
            Request::Exists { .. } => OpCode::Exists,
            Request::GetData { .. } => OpCode::GetData,
            Request::SetData { .. } => OpCode::SetData,
            Request::GetAcl { .. } => OpCode::GetAcl,
            Request::SetAcl { .. } => OpCode::SetAcl,
            Request::GetChildren { .. } => OpCode::GetChildren,
            Request::GetChildren2 { .. } => OpCode::GetChildren2,
            Request::Sync { .. } => OpCode::Sync,
            Request::Check { .. } => OpCode::Check,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::CheckWatches { .. } => OpCode::CheckWatches,
            Request::RemoveWatches { .. } => OpCode::RemoveWatches,
            Request::SetWatches { .. } => OpCode::SetWatches,
            Request::SetWatches2 { .. } => OpCode::SetWatches2,
            Request::AddWatch { .. } => OpCode::AddWatch,
            Request::GetEphemerals { .. } => OpCode::GetEphemerals,
            Request::GetAllChildrenNumber { .. } => OpCode::GetAllChildrenNumber,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// The path the request names, if it names one (the prefix for getEphemerals; none for
    /// multi, whose ops each carry their own).
    pub fn path(&self) -> Option<&str> {
        match self {
            Request::Create(c)
            | Request::Create2(c)
            | Request::CreateContainer(c)
            | Request::CreateTtl(c) => Some(&c.path),
            Request::Delete { path, .. }
            | Request::Exists { path, .. }
            | Request::GetData { path, .. }
            | Request::SetData { path, .. }
            | Request::GetAcl { path }
            | Request::SetAcl { path, .. }
            | Request::GetChildren { path, .. }
            | Request::GetChildren2 { path, .. }
            | Request::Sync { path }
            | Request::Check { path, .. }
            | Request::CheckWatches { path, .. }
            | Request::RemoveWatches { path, .. }
            | Request::AddWatch { path, .. }
            | Request::GetEphemerals { prefix: path }
            | Request::GetAllChildrenNumber { path } => Some(path),
            Request::Ping
            | Request::Auth(_)
            | Request::Multi(_)
            | Request::MultiRead(_)
            | Request::SetWatches { .. }
            | Request::SetWatches2 { .. }
            | Request::WhoAmI
            | Request::CloseSession => None,
        }
    }

    /// Appends the body only (no header).
    pub fn encode_body(&self, buf: &mut impl BufMut) {
        match self {
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
            Request::Auth(a) => a.write(buf),
            Request::Create(c) | Request::Create2(c) | Request::CreateContainer(c) => {
                c.write(buf, false)
            }
            Request::CreateTtl(c) => c.write(buf, true),
            Request::Delete { path, version } | Request::Check { path, version } => {
                write_string(buf, path);
                write_i32(buf, *version);
            }
            Request::Exists { path, watch }
            | Request::GetData { path, watch }
            | Request::GetChildren { path, watch }
            | Request::GetChildren2 { path, watch } => {
                write_string(buf, path);
                write_bool(buf, *watch);
            }
            Request::SetData {
                path,
                data,
                version,
            } => {
                write_string(buf, path);
                write_buffer(buf, data);
                write_i32(buf, *version);
            }
            Request::GetAcl { path }
            | Request::Sync { path }
            | Request::GetAllChildrenNumber { path }
            | Request::GetEphemerals { prefix: path } => write_string(buf, path),
            Request::SetAcl { path, acl, version } => {
                write_string(buf, path);
                write_record_vec(buf, acl);
                write_i32(buf, *version);
            }
            Request::Multi(ops) | Request::MultiRead(ops) => write_multi(buf, ops),
            Request::CheckWatches { path, watcher_type }
            | Request::RemoveWatches { path, watcher_type } => {
                write_string(buf, path);
                write_i32(buf, watcher_type.code());
            }
            Request::SetWatches {
                relative_zxid,
                data,
                exist,
                child,
            } => {
                write_i64(buf, *relative_zxid);
                write_string_vec(buf, data);
                write_string_vec(buf, exist);
                write_string_vec(buf, child);
            }
            Request::SetWatches2 {
                relative_zxid,
                data,
                exist,
                child,
                persistent,
                persistent_recursive,
            } => {
                write_i64(buf, *relative_zxid);
                write_string_vec(buf, data);
                write_string_vec(buf, exist);
                write_string_vec(buf, child);
                write_string_vec(buf, persistent);
                write_string_vec(buf, persistent_recursive);
            }
            Request::AddWatch { path, mode } => {
                write_string(buf, path);
                write_i32(buf, mode.code());
            }
        }
    }

    /// Appends `RequestHeader{xid, op}` and the body (no length prefix). Ping, auth and
    /// setWatches use the reserved xids of [`crate::xid`].
    pub fn encode(&self, xid: i32, buf: &mut impl BufMut) {
        RequestHeader {
            xid,
            op: self.op().code(),
        }
        .write(buf);
        self.encode_body(buf);
    }

    /// Appends a whole request frame: length prefix, header, body.
    pub fn write_frame(&self, xid: i32, buf: &mut BytesMut) {
        write_frame(buf, |b| self.encode(xid, b));
    }
}

/// Why [`Request::decode_frame`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestFrameError {
    /// The frame is too short for a `RequestHeader`; there is no xid to answer.
    #[error("bad request header: {0}")]
    Header(DecodeError),
    /// The header decoded but the body did not; answer `header.xid` with an error code.
    #[error("bad body for op {} (xid {}): {error}", header.op, header.xid)]
    Body {
        header: RequestHeader,
        error: DecodeError,
    },
}

fn read_watcher_type(r: &mut Reader<'_>) -> Result<WatcherType, DecodeError> {
    let value = r.read_i32()?;
    WatcherType::from_code(value).ok_or(DecodeError::BadEnum {
        field: "WatcherType",
        value,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frame::decode_frame;
    use crate::types::Id;
    use proptest::prelude::*;

    fn roundtrip(req: &Request) {
        let mut body = Vec::new();
        req.encode_body(&mut body);
        assert_eq!(
            Request::decode(req.op().code(), &body).as_ref(),
            Ok(req),
            "{req:?}"
        );
        // Every strict prefix is an error, never a panic, for requests with a body.
        for n in 0..body.len() {
            assert!(
                Request::decode(req.op().code(), &body[..n]).is_err(),
                "prefix {n} of {req:?} decoded"
            );
        }
    }

    fn create(path: &str, ttl: Option<i64>) -> CreateRequest {
        CreateRequest {
            path: path.into(),
            data: b"x".to_vec(),
            acl: Acl::open_unsafe(),
            flags: if ttl.is_some() { 5 } else { 1 },
            ttl,
        }
    }

    /// One request of every kind.
    pub(crate) fn every_request() -> Vec<Request> {
        vec![
            Request::Ping,
            Request::Auth(AuthPacket {
                auth_type: 0,
                scheme: "digest".into(),
                auth: b"u:p".to_vec(),
            }),
            Request::Create(create("/c", None)),
            Request::Create2(create("/c2", None)),
            Request::CreateContainer(create("/cc", None)),
            Request::CreateTtl(create("/ct", Some(60_000))),
            Request::Delete {
                path: "/d".into(),
                version: -1,
            },
            Request::Exists {
                path: "/e".into(),
                watch: true,
            },
            Request::GetData {
                path: "/g".into(),
                watch: false,
            },
            Request::SetData {
                path: "/s".into(),
                data: vec![1, 2, 3],
                version: 4,
            },
            Request::GetAcl { path: "/ga".into() },
            Request::SetAcl {
                path: "/sa".into(),
                acl: vec![Acl {
                    perms: 3,
                    id: Id::new("ip", "10.0.0.1"),
                }],
                version: 2,
            },
            Request::GetChildren {
                path: "/".into(),
                watch: true,
            },
            Request::GetChildren2 {
                path: "/".into(),
                watch: false,
            },
            Request::Sync { path: "/".into() },
            Request::Check {
                path: "/k".into(),
                version: 9,
            },
            Request::Multi(vec![
                MultiOp::Create(create("/m1", None)),
                MultiOp::Create2(create("/m2", None)),
                MultiOp::CreateContainer(create("/m3", None)),
                MultiOp::CreateTtl(create("/m4", Some(1))),
                MultiOp::Delete {
                    path: "/m5".into(),
                    version: 0,
                },
                MultiOp::SetData {
                    path: "/m6".into(),
                    data: vec![],
                    version: -1,
                },
                MultiOp::Check {
                    path: "/m7".into(),
                    version: 3,
                },
            ]),
            Request::Multi(vec![]),
            Request::MultiRead(vec![
                MultiOp::GetChildren { path: "/r1".into() },
                MultiOp::GetData { path: "/r2".into() },
            ]),
            Request::CheckWatches {
                path: "/w".into(),
                watcher_type: WatcherType::Data,
            },
            Request::RemoveWatches {
                path: "/w".into(),
                watcher_type: WatcherType::Any,
            },
            Request::SetWatches {
                relative_zxid: 77,
                data: vec!["/a".into()],
                exist: vec![],
                child: vec!["/b".into(), "/c".into()],
            },
            Request::SetWatches2 {
                relative_zxid: 78,
                data: vec![],
                exist: vec!["/x".into()],
                child: vec![],
                persistent: vec!["/p".into()],
                persistent_recursive: vec!["/pr".into()],
            },
            Request::AddWatch {
                path: "/aw".into(),
                mode: AddWatchMode::PersistentRecursive,
            },
            Request::GetEphemerals {
                prefix: "/eph".into(),
            },
            Request::GetAllChildrenNumber { path: "/n".into() },
            Request::WhoAmI,
            Request::CloseSession,
        ]
    }

    #[test]
    fn every_request_roundtrips_and_every_prefix_fails() {
        for req in every_request() {
            roundtrip(&req);
        }
    }

    #[test]
    fn path_names_the_target() {
        for req in every_request() {
            let expect_path = !matches!(
                req,
                Request::Ping
                    | Request::Auth(_)
                    | Request::Multi(_)
                    | Request::MultiRead(_)
                    | Request::SetWatches { .. }
                    | Request::SetWatches2 { .. }
                    | Request::WhoAmI
                    | Request::CloseSession
            );
            assert_eq!(req.path().is_some(), expect_path, "{req:?}");
        }
        let req = Request::Exists {
            path: "/e".into(),
            watch: true,
        };
        assert_eq!(req.path(), Some("/e"));
    }

    #[test]
    fn get_data_matches_hand_encoding() {
        let req = Request::GetData {
            path: "/foo".into(),
            watch: true,
        };
        let mut buf = BytesMut::new();
        req.write_frame(5, &mut buf);
        let expected = [
            0, 0, 0, 17, // frame length
            0, 0, 0, 5, // xid
            0, 0, 0, 4, // type getData
            0, 0, 0, 4, b'/', b'f', b'o', b'o', // path
            1,    // watch
        ];
        assert_eq!(&buf[..], &expected[..]);
        let frame = decode_frame(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(
            Request::decode_frame(&frame),
            Ok((RequestHeader { xid: 5, op: 4 }, req))
        );
    }

    #[test]
    fn create_ttl_matches_hand_encoding() {
        let req = Request::CreateTtl(CreateRequest {
            path: "/t".into(),
            data: vec![],
            acl: vec![],
            flags: 5,
            ttl: Some(1000),
        });
        let mut v = Vec::new();
        req.encode(1, &mut v);
        let expected = [
            0, 0, 0, 1, // xid
            0, 0, 0, 21, // createTTL
            0, 0, 0, 2, b'/', b't', // path
            0, 0, 0, 0, // data: empty
            0, 0, 0, 0, // acl: empty vector
            0, 0, 0, 5, // flags PERSISTENT_WITH_TTL
            0, 0, 0, 0, 0, 0, 0x03, 0xe8, // ttl
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn multi_matches_hand_encoding() {
        let req = Request::Multi(vec![
            MultiOp::Check {
                path: "/a".into(),
                version: 1,
            },
            MultiOp::Delete {
                path: "/a".into(),
                version: -1,
            },
        ]);
        let mut v = Vec::new();
        req.encode_body(&mut v);
        let expected = [
            0, 0, 0, 13, 0, 0xff, 0xff, 0xff, 0xff, // MultiHeader{check, false, -1}
            0, 0, 0, 2, b'/', b'a', 0, 0, 0, 1, // CheckVersionRequest
            0, 0, 0, 2, 0, 0xff, 0xff, 0xff, 0xff, // MultiHeader{delete, false, -1}
            0, 0, 0, 2, b'/', b'a', 0xff, 0xff, 0xff, 0xff, // DeleteRequest
            0xff, 0xff, 0xff, 0xff, 1, 0xff, 0xff, 0xff, 0xff, // MultiHeader{-1, true, -1}
        ];
        assert_eq!(v, expected);
    }

    #[test]
    fn bodiless_requests_ignore_trailing_bytes() {
        assert_eq!(Request::decode(11, &[1, 2, 3]), Ok(Request::Ping));
        assert_eq!(
            Request::decode(9, &[0, 0, 0, 1, b'/', 0xee]),
            Ok(Request::Sync { path: "/".into() })
        );
    }

    #[test]
    fn unknown_and_unsupported_ops_are_told_apart() {
        assert_eq!(
            Request::decode(10, &[]),
            Err(DecodeError::UnknownOpCode(10))
        );
        assert_eq!(
            Request::decode(999, &[]),
            Err(DecodeError::UnknownOpCode(999))
        );
        assert_eq!(
            Request::decode(16, &[]),
            Err(DecodeError::Unsupported(OpCode::Reconfig))
        );
        assert_eq!(
            Request::decode(102, &[]),
            Err(DecodeError::Unsupported(OpCode::Sasl))
        );
        assert_eq!(
            Request::decode(20, &[]),
            Err(DecodeError::Unsupported(OpCode::DeleteContainer))
        );
    }

    #[test]
    fn body_error_keeps_the_header() {
        let frame = [0, 0, 0, 9, 0, 0, 0, 4, 0, 0];
        assert_eq!(
            Request::decode_frame(&frame),
            Err(RequestFrameError::Body {
                header: RequestHeader { xid: 9, op: 4 },
                error: DecodeError::Truncated {
                    needed: 4,
                    remaining: 2
                },
            })
        );
        assert!(matches!(
            Request::decode_frame(&frame[..5]),
            Err(RequestFrameError::Header(_))
        ));
    }

    #[test]
    fn null_path_is_an_error_and_null_data_reads_empty() {
        let body = [0xff, 0xff, 0xff, 0xff, 0];
        assert_eq!(
            Request::decode(4, &body),
            Err(DecodeError::UnexpectedNull("path"))
        );
        let mut body = vec![0, 0, 0, 1, b'/'];
        body.extend_from_slice(&[0xff; 4]); // null data
        body.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            Request::decode(5, &body),
            Ok(Request::SetData {
                path: "/".into(),
                data: vec![],
                version: 0
            })
        );
    }

    #[test]
    fn null_ephemerals_prefix_reads_empty() {
        assert_eq!(
            Request::decode(103, &[0xff; 4]),
            Ok(Request::GetEphemerals {
                prefix: String::new()
            })
        );
    }

    #[test]
    fn multi_refuses_read_ops_and_multiread_refuses_writes() {
        let mut write_in_read = Vec::new();
        Request::Multi(vec![MultiOp::Delete {
            path: "/a".into(),
            version: 0,
        }])
        .encode_body(&mut write_in_read);
        assert_eq!(
            Request::decode(22, &write_in_read),
            Err(DecodeError::BadMultiOp {
                op: 2,
                within: "multiRead"
            })
        );
        let mut read_in_write = Vec::new();
        Request::MultiRead(vec![MultiOp::GetData { path: "/a".into() }])
            .encode_body(&mut read_in_write);
        assert_eq!(
            Request::decode(14, &read_in_write),
            Err(DecodeError::BadMultiOp {
                op: 4,
                within: "multi"
            })
        );
        // An op that never appears in a multi (exists).
        let mut v = Vec::new();
        MultiHeader {
            op: 3,
            done: false,
            err: -1,
        }
        .write(&mut v);
        v.extend_from_slice(&[0, 0, 0, 1, b'/', 0]);
        assert!(matches!(
            Request::decode(14, &v),
            Err(DecodeError::BadMultiOp { op: 3, .. })
        ));
    }

    #[test]
    fn multiread_ignores_the_watch_flag() {
        let mut v = Vec::new();
        MultiHeader {
            op: 4,
            done: false,
            err: -1,
        }
        .write(&mut v);
        v.extend_from_slice(&[0, 0, 0, 1, b'/', 1]);
        MultiHeader::DONE.write(&mut v);
        assert_eq!(
            Request::decode(22, &v),
            Ok(Request::MultiRead(vec![MultiOp::GetData {
                path: "/".into()
            }]))
        );
    }

    #[test]
    fn lying_acl_count_is_an_error_without_allocation() {
        let mut body = vec![0, 0, 0, 1, b'/'];
        body.extend_from_slice(&i32::MAX.to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            Request::decode(7, &body),
            Err(DecodeError::LengthTooLarge { len: i32::MAX, .. })
        ));
    }

    #[test]
    fn lying_set_watches_count_is_an_error() {
        let mut body = 0i64.to_be_bytes().to_vec();
        body.extend_from_slice(&(i32::MAX).to_be_bytes());
        body.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            Request::decode(101, &body),
            Err(DecodeError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn bad_enums_are_errors() {
        let body = [0, 0, 0, 1, b'/', 0, 0, 0, 9];
        assert!(matches!(
            Request::decode(106, &body),
            Err(DecodeError::BadEnum { value: 9, .. })
        ));
        assert!(matches!(
            Request::decode(17, &body),
            Err(DecodeError::BadEnum { value: 9, .. })
        ));
    }

    #[test]
    fn create_mode_is_read_from_flags() {
        assert_eq!(create("/x", None).mode(), Some(CreateMode::Ephemeral));
        let mut c = create("/x", None);
        c.flags = 42;
        assert_eq!(c.mode(), None);
        // An unknown flag still decodes: the server answers it, it does not disconnect.
        let mut body = Vec::new();
        Request::Create(c.clone()).encode_body(&mut body);
        assert_eq!(Request::decode(1, &body), Ok(Request::Create(c)));
    }

    // ---- property tests ----

    fn path() -> impl Strategy<Value = String> {
        "/[a-z0-9/]{0,12}|\\PC{0,6}"
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..24)
    }

    fn strings() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(path(), 0..4)
    }

    pub(crate) fn acl() -> impl Strategy<Value = Vec<Acl>> {
        proptest::collection::vec(
            (any::<i32>(), "[a-z]{0,6}", "\\PC{0,8}").prop_map(|(perms, scheme, id)| Acl {
                perms,
                id: Id { scheme, id },
            }),
            0..3,
        )
    }

    fn create_request(ttl: bool) -> impl Strategy<Value = CreateRequest> {
        (path(), bytes(), acl(), any::<i32>(), any::<i64>()).prop_map(
            move |(path, data, acl, flags, t)| CreateRequest {
                path,
                data,
                acl,
                flags,
                ttl: ttl.then_some(t),
            },
        )
    }

    fn write_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            create_request(false).prop_map(MultiOp::Create),
            create_request(false).prop_map(MultiOp::Create2),
            create_request(false).prop_map(MultiOp::CreateContainer),
            create_request(true).prop_map(MultiOp::CreateTtl),
            (path(), any::<i32>()).prop_map(|(path, version)| MultiOp::Delete { path, version }),
            (path(), bytes(), any::<i32>()).prop_map(|(path, data, version)| MultiOp::SetData {
                path,
                data,
                version
            }),
            (path(), any::<i32>()).prop_map(|(path, version)| MultiOp::Check { path, version }),
        ]
    }

    fn read_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            path().prop_map(|path| MultiOp::GetChildren { path }),
            path().prop_map(|path| MultiOp::GetData { path }),
        ]
    }

    fn watcher_type() -> impl Strategy<Value = WatcherType> {
        (1i32..=5).prop_map(|c| WatcherType::from_code(c).unwrap())
    }

    pub(crate) fn request() -> impl Strategy<Value = Request> {
        prop_oneof![
            Just(Request::Ping),
            Just(Request::WhoAmI),
            Just(Request::CloseSession),
            (any::<i32>(), "[a-z]{0,8}", bytes()).prop_map(|(auth_type, scheme, auth)| {
                Request::Auth(AuthPacket {
                    auth_type,
                    scheme,
                    auth,
                })
            }),
            create_request(false).prop_map(Request::Create),
            create_request(false).prop_map(Request::Create2),
            create_request(false).prop_map(Request::CreateContainer),
            create_request(true).prop_map(Request::CreateTtl),
            (path(), any::<i32>()).prop_map(|(path, version)| Request::Delete { path, version }),
            (path(), any::<bool>()).prop_map(|(path, watch)| Request::Exists { path, watch }),
            (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetData { path, watch }),
            (path(), bytes(), any::<i32>()).prop_map(|(path, data, version)| Request::SetData {
                path,
                data,
                version
            }),
            path().prop_map(|path| Request::GetAcl { path }),
            (path(), acl(), any::<i32>()).prop_map(|(path, acl, version)| Request::SetAcl {
                path,
                acl,
                version
            }),
            (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetChildren { path, watch }),
            (path(), any::<bool>()).prop_map(|(path, watch)| Request::GetChildren2 { path, watch }),
            path().prop_map(|path| Request::Sync { path }),
            (path(), any::<i32>()).prop_map(|(path, version)| Request::Check { path, version }),
            proptest::collection::vec(write_op(), 0..4).prop_map(Request::Multi),
            proptest::collection::vec(read_op(), 0..4).prop_map(Request::MultiRead),
            (path(), watcher_type())
                .prop_map(|(path, watcher_type)| Request::CheckWatches { path, watcher_type }),
            (path(), watcher_type())
                .prop_map(|(path, watcher_type)| Request::RemoveWatches { path, watcher_type }),
            (any::<i64>(), strings(), strings(), strings()).prop_map(
                |(relative_zxid, data, exist, child)| Request::SetWatches {
                    relative_zxid,
                    data,
                    exist,
                    child
                }
            ),
            (
                any::<i64>(),
                strings(),
                strings(),
                strings(),
                strings(),
                strings()
            )
                .prop_map(
                    |(relative_zxid, data, exist, child, persistent, persistent_recursive)| {
                        Request::SetWatches2 {
                            relative_zxid,
                            data,
                            exist,
                            child,
                            persistent,
                            persistent_recursive,
                        }
                    }
                ),
            (
                path(),
                prop_oneof![
                    Just(AddWatchMode::Persistent),
                    Just(AddWatchMode::PersistentRecursive)
                ]
            )
                .prop_map(|(path, mode)| Request::AddWatch { path, mode }),
            path().prop_map(|prefix| Request::GetEphemerals { prefix }),
            path().prop_map(|path| Request::GetAllChildrenNumber { path }),
        ]
    }

    proptest! {
        #[test]
        fn requests_roundtrip_through_frames(req in request(), xid in any::<i32>()) {
            let mut buf = BytesMut::new();
            req.write_frame(xid, &mut buf);
            let frame = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
            prop_assert!(buf.is_empty());
            let (header, decoded) = Request::decode_frame(&frame).unwrap();
            prop_assert_eq!(header, RequestHeader { xid, op: req.op().code() });
            prop_assert_eq!(&decoded, &req);
            // Every strict prefix of a non-empty body fails.
            let body = &frame[8..];
            for n in 0..body.len() {
                prop_assert!(Request::decode(header.op, &body[..n]).is_err());
            }
        }

        #[test]
        fn arbitrary_bodies_never_panic(op in prop_oneof![-12i32..=23, 99i32..=108], body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Request::decode(op, &body);
        }

        #[test]
        fn arbitrary_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..160)) {
            let _ = Request::decode_frame(&frame);
        }

        #[test]
        fn mutated_requests_never_panic(req in request(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let mut v = Vec::new();
            req.encode(1, &mut v);
            for (i, b) in flips {
                let i = i.index(v.len());
                v[i] = b;
            }
            let _ = Request::decode_frame(&v);
        }
    }
}
