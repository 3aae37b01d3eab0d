//! What each request does: reads run against the committed tree here, writes are converted into
//! the znode write path's `Write` and their results shaped into the reply ZooKeeper sends.

use bytes::{Bytes, BytesMut};
use coord_proto::{
    AddWatchMode, ClientInfo, CreateRequest, ErrorCode, EventType, Id, KeeperState, MultiOp,
    MultiResult, OpCode, Record, ReplyHeader, Request, Response, WatcherEvent, WatcherType,
};
use coord_znode::{Applied, Caller, OpResult, Rejection, Tree, TxnResult, Write, ZPath};

use crate::conn::{Auth, ConnId, Outbox};
use crate::server::Shared;
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
    Check {
        path: String,
        version: i32,
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
        // ZooKeeper 3.9 answers a lone check from the committed tree (FinalRequestProcessor).
        Request::Check { path, version } => R(Read::Check { path, version }),
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

fn valid_path(path: &str) -> Result<(), ErrorCode> {
    ZPath::parse(path).map(|_| ()).map_err(|e| e.code())
}

/// Runs a read against the committed tree and queues its reply, all under the tree's read lock:
/// the watches it arms cannot miss a change, and no event they fire can overtake the reply (a
/// client registers its watcher only when the reply arrives). The reply header carries the zxid
/// of the state the read saw.
pub fn read_and_reply(
    shared: &Shared,
    conn: ConnId,
    auth: &Auth,
    session_id: i64,
    xid: i32,
    read: Read,
    outbox: &Outbox,
) {
    let tree = shared.tree.read();
    let reply = execute(shared, &tree, conn, auth, session_id, read);
    let zxid = tree.last_zxid().as_i64();
    outbox.send(match reply {
        Ok(body) => reply_frame(xid, zxid, ErrorCode::Ok, body.as_ref()),
        Err(err) => reply_frame(xid, zxid, err, None),
    });
}

fn execute(
    shared: &Shared,
    tree: &Tree,
    conn: ConnId,
    auth: &Auth,
    session_id: i64,
    read: Read,
) -> Reply {
    let caller = Caller {
        session_id,
        ids: &auth.ids,
        is_super: auth.is_super,
    };
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
            let (children, stat) = tree.get_children(&path, &caller).map_err(|e| e.code())?;
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
            let paths = tree.get_ephemerals(session_id, &prefix);
            Ok(Some(Response::GetEphemerals { paths }))
        }
        Read::Check { path, version } => {
            let (_, stat) = tree.get_data(&path, &caller).map_err(|e| e.code())?;
            if version != -1 && version != stat.version {
                return Err(ErrorCode::BadVersion);
            }
            Ok(None)
        }
        Read::Sync { path } => Ok(Some(Response::Sync { path })),
        Read::MultiRead(ops) => {
            let mut results = Vec::with_capacity(ops.len());
            for op in ops {
                let result = match op {
                    MultiOp::GetChildren { path } => match tree.get_children(&path, &caller) {
                        Ok((children, _)) => MultiResult::GetChildren { children },
                        Err(e) => MultiResult::Error(e.code().code()),
                    },
                    MultiOp::GetData { path } => match tree.get_data(&path, &caller) {
                        Ok((data, stat)) => MultiResult::GetData { data, stat },
                        Err(e) => MultiResult::Error(e.code().code()),
                    },
                    _ => MultiResult::Error(ErrorCode::BadArguments.code()),
                };
                results.push(result);
            }
            Ok(Some(Response::Multi(results)))
        }
        Read::CheckWatches { path, watcher_type } => {
            valid_path(&path)?;
            if shared.watches.lock().contains(&path, conn, watcher_type) {
                Ok(None)
            } else {
                Err(ErrorCode::NoWatcher)
            }
        }
        Read::RemoveWatches { path, watcher_type } => {
            valid_path(&path)?;
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
            // As DataTree.setWatches: fire what changed since the client's last zxid, arm the rest.
            let last = tree.last_zxid().as_i64();
            let mut watches = shared.watches.lock();
            for path in data {
                match tree.stat(&path) {
                    None => watches.fire_one(conn, EventType::NodeDeleted, &path, last),
                    Some(stat) if stat.mzxid > relative_zxid => {
                        watches.fire_one(conn, EventType::NodeDataChanged, &path, last)
                    }
                    Some(_) => watches.add(Kind::Data, &path, conn),
                }
            }
            for path in exist {
                match tree.stat(&path) {
                    Some(_) => watches.fire_one(conn, EventType::NodeCreated, &path, last),
                    None => watches.add(Kind::Data, &path, conn),
                }
            }
            for path in child {
                match tree.stat(&path) {
                    None => watches.fire_one(conn, EventType::NodeDeleted, &path, last),
                    Some(stat) if stat.pzxid > relative_zxid => {
                        watches.fire_one(conn, EventType::NodeChildrenChanged, &path, last)
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
            valid_path(&path)?;
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
            | TxnResult::SessionCreated
            | TxnResult::SessionClosed,
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

/// Frames a watch notification.
pub fn notification(event_type: EventType, path: &str, zxid: i64) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + path.len());
    WatcherEvent {
        event_type,
        state: KeeperState::SyncConnected,
        path: path.to_owned(),
    }
    .write_notification(&mut buf, zxid);
    buf.freeze()
}

/// The identity an auth packet proves, or None if the scheme is not supported here.
pub fn authenticate(auth: &coord_proto::AuthPacket) -> Option<Id> {
    match auth.scheme.as_str() {
        "digest" => {
            let text = std::str::from_utf8(&auth.auth).ok()?;
            Some(Id::new("digest", coord_znode::digest_id(text)))
        }
        _ => None,
    }
}
