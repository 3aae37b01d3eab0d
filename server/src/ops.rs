//! What each request does: reads run against the committed tree here, writes are converted into
//! the znode write path's `Write` and their results shaped into the reply ZooKeeper sends.

use bytes::{Bytes, BytesMut};
use coord_proto::{
    AddWatchMode, ClientInfo, CreateRequest, ErrorCode, EventType, MultiOp, MultiResult, OpCode,
    Record, ReplyHeader, Request, Response, WatcherType,
};
use coord_znode::{Applied, Caller, OpResult, Rejection, Tree, TxnResult, Write};

use crate::auth::Auth;
use crate::ids::{ConnId, SessionId};
use crate::outbox::Outbox;
use crate::shared::Shared;
use crate::watch::Kind;

/// A reply body (None for ops that answer with the header alone), or an error code.
pub type Reply = Result<Option<Response>, ErrorCode>;

/// How the reply to a write is shaped: the op decides between CreateResponse and Create2Response,
/// and a multi's results follow its ops.
#[derive(Debug, Clone)]
pub enum WriteShape {
    Single(OpCode),
    Multi(Vec<OpCode>),
}

/// A request that reads the tree or this server's watches.
#[derive(Debug)]
pub enum Read {
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    GetAcl {
        path: String,
    },
    GetChildren {
        path: String,
        watch: bool,
        with_stat: bool,
    },
    GetAllChildrenNumber {
        path: String,
    },
    GetEphemerals {
        prefix: String,
    },
    Sync {
        path: String,
    },
    MultiRead(Vec<MultiOp>),
    CheckWatches {
        path: String,
        watcher_type: WatcherType,
    },
    RemoveWatches {
        path: String,
        watcher_type: WatcherType,
    },
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    AddWatch {
        path: String,
        mode: AddWatchMode,
    },
    WhoAmI,
}

pub enum Classified {
    Write(Write, WriteShape),
    Read(Read),
    Unsupported,
}

fn create_write(request: CreateRequest, container: bool) -> Write {
    Write::Create {
        path: request.path,
        data: request.data.into(),
        acl: request.acl,
        mode: request.flags,
        ttl: request.ttl,
        container,
    }
}

fn multi_write(op: MultiOp) -> Option<Write> {
    Some(match op {
        MultiOp::Create(c) | MultiOp::Create2(c) | MultiOp::CreateTtl(c) => create_write(c, false),
        MultiOp::CreateContainer(c) => create_write(c, true),
        MultiOp::Delete { path, version } => Write::Delete { path, version },
        MultiOp::SetData {
            path,
            data,
            version,
        } => Write::SetData {
            path,
            data: data.into(),
            version,
        },
        MultiOp::Check { path, version } => Write::Check { path, version },
        MultiOp::GetChildren { .. } | MultiOp::GetData { .. } => return None,
    })
}

/// Sorts a decoded request into a write, a read, or an op this server does not implement.
/// Ping, auth and closeSession are handled by the connection itself.
pub fn classify(request: Request) -> Classified {
    use Classified::{Read as R, Write as W};
    let single = |op| WriteShape::Single(op);
    match request {
        Request::Create(c) => W(create_write(c, false), single(OpCode::Create)),
        Request::Create2(c) => W(create_write(c, false), single(OpCode::Create2)),
        Request::CreateTtl(c) => W(create_write(c, false), single(OpCode::CreateTtl)),
        Request::CreateContainer(c) => W(create_write(c, true), single(OpCode::CreateContainer)),
        Request::Delete { path, version } => {
            W(Write::Delete { path, version }, single(OpCode::Delete))
        }
        Request::SetData {
            path,
            data,
            version,
        } => W(
            Write::SetData {
                path,
                data: data.into(),
                version,
            },
            single(OpCode::SetData),
        ),
        Request::SetAcl { path, acl, version } => {
            W(Write::SetAcl { path, acl, version }, single(OpCode::SetAcl))
        }
        Request::Multi(ops) => {
            let shape: Vec<OpCode> = ops.iter().map(MultiOp::op).collect();
            let writes: Option<Vec<Write>> = ops.into_iter().map(multi_write).collect();
            match writes {
                Some(writes) => W(Write::Multi(writes), WriteShape::Multi(shape)),
                None => Classified::Unsupported,
            }
        }
        Request::Exists { path, watch } => R(Read::Exists { path, watch }),
        Request::GetData { path, watch } => R(Read::GetData { path, watch }),
        Request::GetAcl { path } => R(Read::GetAcl { path }),
        Request::GetChildren { path, watch } => R(Read::GetChildren {
            path,
            watch,
            with_stat: false,
        }),
        Request::GetChildren2 { path, watch } => R(Read::GetChildren {
            path,
            watch,
            with_stat: true,
        }),
        Request::GetAllChildrenNumber { path } => R(Read::GetAllChildrenNumber { path }),
        Request::GetEphemerals { prefix } => R(Read::GetEphemerals { prefix }),
        Request::Sync { path } => R(Read::Sync { path }),
        Request::MultiRead(ops) => R(Read::MultiRead(ops)),
        Request::CheckWatches { path, watcher_type } => {
            R(Read::CheckWatches { path, watcher_type })
        }
        Request::RemoveWatches { path, watcher_type } => {
            R(Read::RemoveWatches { path, watcher_type })
        }
        Request::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
        } => R(Read::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent: Vec::new(),
            persistent_recursive: Vec::new(),
        }),
        Request::SetWatches2 {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            persistent_recursive,
        } => R(Read::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            persistent_recursive,
        }),
        Request::AddWatch { path, mode } => R(Read::AddWatch { path, mode }),
        Request::WhoAmI => R(Read::WhoAmI),
        _ => Classified::Unsupported,
    }
}

/// Runs a read against the committed tree and queues its reply, all under the tree's read lock:
/// the watches it arms cannot miss a change, and no event they fire can overtake the reply (a
/// client registers its watcher only when the reply arrives). The reply header carries the zxid
/// of the state the read saw.
pub fn read_and_reply(
    shared: &Shared,
    conn: ConnId,
    auth: &Auth,
    session_id: SessionId,
    xid: i32,
    read: Read,
    outbox: &Outbox,
) {
    let tree = shared.tree.read();
    let reply = execute(shared, &tree, conn, auth, session_id, read);
    let zxid = tree.last_zxid().as_i64();
    let mut frame = match reply {
        Ok(body) => reply_frame(xid, zxid, ErrorCode::Ok, body.as_ref()),
        Err(err) => reply_frame(xid, zxid, err, None),
    };
    // The reads whose replies can grow without bound are bounded while they are built; this
    // catches the rest (a node's data and ACL are bounded by the request that wrote them).
    if frame.len() > shared.config.max_reply_bytes {
        frame = reply_frame(xid, zxid, ErrorCode::MarshallingError, None);
    }
    outbox.send(frame);
}

/// The bytes of a reply frame around its body: the length prefix and the `ReplyHeader`.
const REPLY_FRAME_OVERHEAD: usize = 4 + 16;
/// The encoded `Stat`.
const STAT_BYTES: usize = 68;
/// A `MultiHeader` (type, done, err).
const MULTI_HEADER_BYTES: usize = 9;
/// A multiRead result that failed: its header and the `ErrorResponse`.
const MULTI_ERROR_BYTES: usize = MULTI_HEADER_BYTES + 4;

/// The results of a multiRead, built within `bytes_max` bytes of reply body: the op whose
/// result would cross the bound, and every op after it, are answered with MarshallingError
/// (ZooKeeper sends any size, and a client whose jute.maxbuffer it exceeds drops the
/// connection). Room for an error result of every op is kept, and always exists: an op in the
/// request takes more bytes than its error result, and the reply bound exceeds the request
/// bound.
fn multi_read(tree: &Tree, caller: &Caller<'_>, ops: Vec<MultiOp>, bytes_max: usize) -> Response {
    let mut results = Vec::with_capacity(ops.len());
    // The closing MultiHeader, and an error result for every op.
    let mut used = MULTI_HEADER_BYTES + MULTI_ERROR_BYTES * ops.len();
    let mut exhausted = false;
    let too_large = MultiResult::Error(ErrorCode::MarshallingError.code());
    for op in ops {
        if exhausted {
            results.push(too_large.clone());
            continue;
        }
        // What this op may add beyond the error result already counted.
        let room = bytes_max.saturating_sub(used) + MULTI_ERROR_BYTES;
        let result = match op {
            MultiOp::GetChildren { path } => {
                match tree.get_children_bounded(&path, caller, room - MULTI_HEADER_BYTES) {
                    Ok((children, _)) => MultiResult::GetChildren { children },
                    Err(e) => MultiResult::Error(e.code().code()),
                }
            }
            MultiOp::GetData { path } => match tree.get_data(&path, caller) {
                Ok((data, stat)) => MultiResult::GetData { data, stat },
                Err(e) => MultiResult::Error(e.code().code()),
            },
            _ => MultiResult::Error(ErrorCode::BadArguments.code()),
        };
        let bytes = MULTI_HEADER_BYTES
            + match &result {
                MultiResult::GetChildren { children } => {
                    4 + children.iter().map(|c| 4 + c.len()).sum::<usize>()
                }
                MultiResult::GetData { data, .. } => 4 + data.len() + STAT_BYTES,
                _ => 4,
            };
        if bytes > room || result == too_large {
            exhausted = true;
            results.push(too_large.clone());
            continue;
        }
        used += bytes - MULTI_ERROR_BYTES;
        results.push(result);
    }
    Response::Multi(results)
}

fn execute(
    shared: &Shared,
    tree: &Tree,
    conn: ConnId,
    auth: &Auth,
    session_id: SessionId,
    read: Read,
) -> Reply {
    let caller = Caller {
        session_id: session_id.0,
        ids: &auth.ids,
        is_super: auth.is_super,
    };
    let body_bytes_max = shared
        .config
        .max_reply_bytes
        .saturating_sub(REPLY_FRAME_OVERHEAD);
    let arms = match &read {
        Read::Exists { watch, .. }
        | Read::GetData { watch, .. }
        | Read::GetChildren { watch, .. } => usize::from(*watch),
        Read::AddWatch { .. } => 1,
        Read::SetWatches {
            data,
            exist,
            child,
            persistent,
            persistent_recursive,
            ..
        } => data.len() + exist.len() + child.len() + persistent.len() + persistent_recursive.len(),
        _ => 0,
    };
    if arms > 0 && !shared.watches.lock().has_room(conn, arms) {
        return Err(ErrorCode::ThrottledOp);
    }
    match read {
        Read::Exists { path, watch } => {
            let result = tree.exists(&path, &caller).map_err(|e| e.code());
            if watch && matches!(result, Ok(_) | Err(ErrorCode::NoNode)) {
                shared.watches.lock().add(Kind::Data, &path, conn);
            }
            result.map(|stat| Some(Response::Stat(stat)))
        }
        Read::GetData { path, watch } => {
            let (data, stat) = tree.get_data(&path, &caller).map_err(|e| e.code())?;
            if data.len() + 4 + STAT_BYTES > body_bytes_max {
                // Written when the request bound was larger: refused before a watch is armed.
                return Err(ErrorCode::MarshallingError);
            }
            if watch {
                shared.watches.lock().add(Kind::Data, &path, conn);
            }
            Ok(Some(Response::GetData { data, stat }))
        }
        Read::GetAcl { path } => {
            let (acl, stat) = tree.get_acl(&path, &caller).map_err(|e| e.code())?;
            Ok(Some(Response::GetAcl { acl, stat }))
        }
        Read::GetChildren {
            path,
            watch,
            with_stat,
        } => {
            let names_max = body_bytes_max - if with_stat { STAT_BYTES } else { 0 };
            let (children, stat) = tree
                .get_children_bounded(&path, &caller, names_max)
                .map_err(|e| e.code())?;
            if watch {
                shared.watches.lock().add(Kind::Child, &path, conn);
            }
            Ok(Some(if with_stat {
                Response::GetChildren2 { children, stat }
            } else {
                Response::GetChildren { children }
            }))
        }
        Read::GetAllChildrenNumber { path } => {
            let total = tree
                .get_all_children_number(&path, &caller)
                .map_err(|e| e.code())?;
            Ok(Some(Response::GetAllChildrenNumber { total }))
        }
        Read::GetEphemerals { prefix } => {
            let paths = tree
                .get_ephemerals_bounded(session_id.0, &prefix, body_bytes_max)
                .map_err(|e| e.code())?;
            Ok(Some(Response::GetEphemerals { paths }))
        }
        Read::Sync { path } => Ok(Some(Response::Sync { path })),
        Read::MultiRead(ops) => Ok(Some(multi_read(tree, &caller, ops, body_bytes_max))),
        // checkWatches, removeWatches and addWatch take any string as ZooKeeper's
        // FinalRequestProcessor does: a watch on a path that cannot exist never fires.
        Read::CheckWatches { path, watcher_type } => {
            if shared.watches.lock().contains(&path, conn, watcher_type) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Read::RemoveWatches { path, watcher_type } => {
            if shared.watches.lock().remove(&path, conn, watcher_type) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Read::SetWatches {
            relative_zxid,
            data,
            exist,
            child,
            persistent,
            persistent_recursive,
        } => {
            // As DataTree.setWatches: fire what changed since the client's last zxid, arm the
            // rest. Paths are not validated (a watch on a path that cannot exist never fires).
            let mut watches = shared.watches.lock();
            for path in data {
                match tree.stat_and_acl(&path) {
                    None => watches.fire_one(conn, EventType::NodeDeleted, &path, None),
                    Some((stat, acl)) if stat.mzxid > relative_zxid => {
                        watches.fire_one(conn, EventType::NodeDataChanged, &path, Some(&acl))
                    }
                    Some(_) => watches.add(Kind::Data, &path, conn),
                }
            }
            for path in exist {
                match tree.stat_and_acl(&path) {
                    Some((_, acl)) => {
                        watches.fire_one(conn, EventType::NodeCreated, &path, Some(&acl))
                    }
                    None => watches.add(Kind::Data, &path, conn),
                }
            }
            for path in child {
                match tree.stat_and_acl(&path) {
                    None => watches.fire_one(conn, EventType::NodeDeleted, &path, None),
                    Some((stat, acl)) if stat.pzxid > relative_zxid => {
                        watches.fire_one(conn, EventType::NodeChildrenChanged, &path, Some(&acl))
                    }
                    Some(_) => watches.add(Kind::Child, &path, conn),
                }
            }
            for path in persistent {
                watches.add(Kind::Persistent, &path, conn);
            }
            for path in persistent_recursive {
                watches.add(Kind::PersistentRecursive, &path, conn);
            }
            Ok(None)
        }
        Read::AddWatch { path, mode } => {
            let kind = match mode {
                AddWatchMode::Persistent => Kind::Persistent,
                AddWatchMode::PersistentRecursive => Kind::PersistentRecursive,
            };
            shared.watches.lock().add(kind, &path, conn);
            Ok(Some(Response::AddWatch))
        }
        Read::WhoAmI => Ok(Some(Response::WhoAmI {
            client_info: auth
                .ids
                .iter()
                .map(|id| ClientInfo {
                    auth_scheme: id.scheme.clone(),
                    // As AuthUtil.getClientInfos: a digest identity shows its user name.
                    user: match id.scheme.as_str() {
                        "digest" => id.id.split(':').next().unwrap_or_default().to_owned(),
                        _ => id.id.clone(),
                    },
                })
                .collect(),
        })),
    }
}

fn op_result(op: OpCode, result: OpResult) -> MultiResult {
    match result {
        OpResult::Created { path, stat } => match op {
            OpCode::Create => MultiResult::Create { path },
            _ => MultiResult::Create2 { path, stat },
        },
        OpResult::Deleted => MultiResult::Delete,
        OpResult::SetData(stat) => MultiResult::SetData { stat },
        OpResult::Checked => MultiResult::Check,
        OpResult::Error(code) => MultiResult::Error(code.code()),
    }
}

fn multi_response(shape: &[OpCode], results: Vec<OpResult>) -> Response {
    Response::Multi(
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| op_result(shape.get(i).copied().unwrap_or(OpCode::Create2), r))
            .collect(),
    )
}

/// The reply to a write that was committed and applied.
pub fn applied(shape: WriteShape, _op: OpCode, applied: Applied) -> Reply {
    let result = applied.result?;
    Ok(match (result, shape) {
        (TxnResult::Created { path, .. }, WriteShape::Single(OpCode::Create)) => {
            Some(Response::Create { path })
        }
        (TxnResult::Created { path, stat }, _) => Some(Response::Create2 { path, stat }),
        (TxnResult::SetData(stat) | TxnResult::SetAcl(stat), _) => Some(Response::Stat(stat)),
        (TxnResult::Multi(results), WriteShape::Multi(ops)) => Some(multi_response(&ops, results)),
        (TxnResult::Multi(results), WriteShape::Single(_)) => Some(multi_response(&[], results)),
        (
            TxnResult::Deleted
            | TxnResult::Checked
            | TxnResult::SessionCreated { .. }
            | TxnResult::SessionClosed { .. },
            _,
        ) => None,
    })
}

/// The reply to a write the write path refused (it was never logged).
pub fn rejected(shape: WriteShape, rejection: Rejection) -> Reply {
    match (rejection, shape) {
        // A failed multi is answered with err 0 and the per-op results (FinalRequestProcessor).
        (Rejection::Multi(results), WriteShape::Multi(ops)) => {
            Ok(Some(multi_response(&ops, results)))
        }
        (Rejection::Multi(results), WriteShape::Single(_)) => {
            Ok(Some(multi_response(&[], results)))
        }
        (Rejection::Error(code), _) => Err(code),
    }
}

/// Frames a reply: header, and the body only when `err` is Ok (as ZooKeeper sends errors).
pub fn reply_frame(xid: i32, zxid: i64, err: ErrorCode, body: Option<&Response>) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    coord_proto::frame::write_frame(&mut buf, |buf| {
        Record::write(
            &ReplyHeader {
                xid,
                zxid,
                err: err.code(),
            },
            buf,
        );
        if err == ErrorCode::Ok {
            if let Some(body) = body {
                body.encode(buf);
            }
        }
    });
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_proto::Stat;

    /// The sizes multiRead bounds its reply with are the sizes the encoder writes.
    #[test]
    fn reply_size_constants_match_the_encoding() {
        let mut buf = BytesMut::new();
        Stat::default().write(&mut buf);
        assert_eq!(buf.len(), STAT_BYTES);
        let data = Bytes::from_static(b"abc");
        let results = vec![
            MultiResult::GetData {
                data: data.clone(),
                stat: Stat::default(),
            },
            MultiResult::GetChildren {
                children: vec!["x".into(), "yz".into()],
            },
            MultiResult::Error(ErrorCode::NoNode.code()),
        ];
        let mut buf = BytesMut::new();
        Response::Multi(results).encode(&mut buf);
        let expected = (MULTI_HEADER_BYTES + 4 + data.len() + STAT_BYTES)
            + (MULTI_HEADER_BYTES + 4 + (4 + 1) + (4 + 2))
            + MULTI_ERROR_BYTES
            + MULTI_HEADER_BYTES;
        assert_eq!(buf.len(), expected);
        let frame = reply_frame(1, 2, ErrorCode::Ok, None);
        assert_eq!(frame.len(), REPLY_FRAME_OVERHEAD);
    }
}
