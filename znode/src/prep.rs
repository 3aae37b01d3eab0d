//! The leader's write path (ZooKeeper's `PrepRequestProcessor` with its `outstandingChanges`):
//! decides each client write against the committed tree *plus* the changes of txns proposed
//! but not yet applied, and turns it into a deterministic [`Txn`].
//!
//! # Design note: a refused write uses no zxid
//!
//! ZooKeeper logs an error txn for a write its PrepRequestProcessor refuses (NoNode, BadVersion,
//! a failed multi, ...), and so spends a zxid and an fsync on it. coord answers a refused write
//! without proposing anything ([`Rejection`]). What the error txn does for ZooKeeper, coord does
//! otherwise, and the replicated write path keeps it so:
//!
//! - **Order for the client.** The error txn makes the reply leave after the session's earlier
//!   writes and after the state the refusal rests on. The server answers a refusal after the
//!   connection's writes in flight, and only once the txn it was decided against is applied
//!   (the server's `Refused::after`), so a client that is told NodeExists can read the node.
//! - **Followers.** In an ensemble the leader decides every write; a follower that forwarded one
//!   learns a refusal from the leader's reply to it (error code, multi results, and the zxid the
//!   refusal rests on), not from the log, and answers its client once it has applied that zxid.
//!   That is all a follower needs: an error txn changes no replicated state.
//! - **What is lost.** Nothing replicated: ZooKeeper's error txns change neither the tree nor
//!   the sessions. Their zxids are not visible to clients as state (a refused write's reply
//!   carries the last applied zxid, as a read's does).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use coord_engine::Zxid;
use coord_proto::{perms, Acl, CreateMode, ErrorCode};

use crate::acl::{self, Caller};
use crate::node::ephemeral::{self, Kind};
use crate::node::Meta;
use crate::path::parent_of;
use crate::tree::{qualifies_for_reap, OpResult, SYSTEM_PATHS};
use crate::txn::{acl_len, bytes_len, Txn, TxnOp, MULTI_OPS_MAX, TXN_HEADER_LEN};
use crate::{Error, Tree, ZPath};

/// A client write, as the server decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Create {
        path: String,
        data: Bytes,
        acl: Vec<Acl>,
        /// The raw `flags` of the request (a `CreateMode`).
        mode: i32,
        /// The TTL of a createTTL request; `None` for the other create ops.
        ttl: Option<i64>,
        /// The request was createContainer.
        container: bool,
    },
    Delete {
        path: String,
        version: i32,
    },
    SetData {
        path: String,
        data: Bytes,
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    Check {
        path: String,
        version: i32,
    },
    /// Atomic: create, delete, setData and check ops only.
    Multi(Vec<Write>),
    CreateSession {
        session_id: i64,
        timeout_ms: i32,
        passwd: Vec<u8>,
    },
    CloseSession {
        session_id: i64,
    },
    /// Removal of a container or TTL node found by [`Tree::reap_candidates`] (deleteContainer).
    Reap {
        path: String,
    },
}

/// Why a write is answered without being proposed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    Error(ErrorCode),
    /// A failed multi: one result per op (see [`OpResult::Error`]).
    Multi(Vec<OpResult>),
}

/// The largest txn [`Prep::prepare`] proposes: far above any request a default server accepts.
pub const TXN_BYTES_MAX_DEFAULT: usize = 32 << 20;

/// The most bytes a sequential create's suffix adds to its path: `%010d` of an i32.
const SEQUENCE_SUFFIX_BYTES_MAX: usize = 11;

/// A write with the work that needs neither the tree nor the pending changes done, so that the
/// server does it before it takes the write path's lock: every ACL fixed up for the caller
/// (`fixupACL`; an error is kept and reported where ZooKeeper's order puts it), and the size of
/// the txn it can produce bounded.
#[derive(Debug, Clone)]
pub struct Checked {
    write: Write,
    /// The bound the txn was checked against.
    pub(crate) txn_bytes_max: usize,
    /// For each Create and SetAcl op of `write`, in order: its ACL fixed up for the caller.
    acls: Vec<Result<Vec<Acl>, Error>>,
}

impl Checked {
    /// Fixes up the ACLs of `write` for `caller` and bounds its txn by `txn_bytes_max`: a write
    /// whose txn could exceed it is refused with MarshallingError (for a multi, on the op that
    /// crosses it), the bound a ZooKeeper txn log record has in jute.maxbuffer. Work and memory
    /// stop at the op that crosses the bound.
    pub fn new(
        write: Write,
        caller: &Caller<'_>,
        txn_bytes_max: usize,
    ) -> Result<Checked, Rejection> {
        let mut acls = Vec::new();
        let mut bytes = TXN_HEADER_LEN;
        let too_large = Rejection::Error(ErrorCode::MarshallingError);
        match &write {
            Write::Multi(ops) if ops.len() > MULTI_OPS_MAX => {
                // More ops than a txn may hold (Txn::decode would refuse it on apply).
                return Err(Rejection::Multi(failed_multi(
                    ops.len(),
                    MULTI_OPS_MAX,
                    ErrorCode::MarshallingError,
                )));
            }
            Write::Multi(ops) => {
                bytes += 1 + 4;
                for (i, op) in ops.iter().enumerate() {
                    bytes = bytes.saturating_add(op_bytes_max(op, caller, &mut acls));
                    if bytes > txn_bytes_max {
                        return Err(Rejection::Multi(failed_multi(
                            ops.len(),
                            i,
                            ErrorCode::MarshallingError,
                        )));
                    }
                }
            }
            op => {
                bytes = bytes.saturating_add(op_bytes_max(op, caller, &mut acls));
                if bytes > txn_bytes_max {
                    return Err(too_large);
                }
            }
        }
        Ok(Checked {
            write,
            txn_bytes_max,
            acls,
        })
    }

    pub fn write(&self) -> &Write {
        &self.write
    }
}

/// An upper bound of the bytes `op` adds to a txn, fixing up its ACL (pushed onto `acls`).
fn op_bytes_max(op: &Write, caller: &Caller<'_>, acls: &mut Vec<Result<Vec<Acl>, Error>>) -> usize {
    let bytes = bytes_len;
    let mut fixed = |path: &str, acl: &[Acl]| {
        let fixed = acl::fixup_acl(path, acl, caller);
        let len = fixed.as_ref().map_or(0, |acl| acl_len(acl));
        acls.push(fixed);
        len
    };
    1 + match op {
        Write::Create {
            path, data, acl, ..
        } => {
            bytes(path.as_bytes())
                + SEQUENCE_SUFFIX_BYTES_MAX
                + bytes(data)
                + fixed(path, acl)
                + 8
                + 4
        }
        Write::SetAcl { path, acl, .. } => bytes(path.as_bytes()) + fixed(path, acl) + 4,
        Write::Delete { path, .. } | Write::Reap { path } => bytes(path.as_bytes()),
        Write::SetData { path, data, .. } => bytes(path.as_bytes()) + bytes(data) + 4,
        Write::Check { path, .. } => bytes(path.as_bytes()) + 4,
        Write::CreateSession { passwd, .. } => 8 + 4 + bytes(passwd),
        Write::CloseSession { .. } => 8,
        // Not allowed inside a multi: prepare refuses it without a txn.
        Write::Multi(_) => 0,
    }
}

/// ZooKeeper's results of a multi whose op `failed` failed with `code`: `Ok` for the ops before
/// it (rolled back), its code, then `RuntimeInconsistency` for the ops after it.
fn failed_multi(len: usize, failed: usize, code: ErrorCode) -> Vec<OpResult> {
    (0..len)
        .map(|j| {
            OpResult::Error(match j.cmp(&failed) {
                std::cmp::Ordering::Less => ErrorCode::Ok,
                std::cmp::Ordering::Equal => code,
                std::cmp::Ordering::Greater => ErrorCode::RuntimeInconsistency,
            })
        })
        .collect()
}

/// A node as the pending txns leave it (ZooKeeper's `ChangeRecord`).
#[derive(Debug, Clone)]
struct PendingNode {
    /// Stat fields and child count; `meta.acl` is unused (the list is in `acl`).
    meta: Meta,
    acl: Arc<[Acl]>,
}

#[derive(Debug, Clone)]
struct Record {
    zxid: Zxid,
    /// `None`: deleted by a pending txn.
    node: Option<PendingNode>,
}

/// The leader's pending-change state. Make a new one whenever this server becomes leader.
#[derive(Debug, Default)]
pub struct Prep {
    /// (zxid, path) of every record added, in zxid order.
    outstanding: VecDeque<(Zxid, String)>,
    /// The latest record for each path with one pending.
    by_path: HashMap<String, Record>,
    /// Sessions whose CreateSession is proposed but not applied.
    created: HashMap<i64, Zxid>,
    /// Sessions whose CloseSession is proposed but not applied.
    closing: HashMap<i64, Zxid>,
}

/// Previous `by_path` values of paths a multi touched, to put back if it fails.
type Undo = Vec<(String, Option<Record>)>;

impl Prep {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides a client write. `Ok(txn)`: propose it at `zxid`. `Err(rejection)`: answer the
    /// client without logging anything; no pending state remains from it. The txn is at most
    /// [`TXN_BYTES_MAX_DEFAULT`] bytes; see [`Prep::prepare_checked`] for another bound.
    pub fn prepare(
        &mut self,
        tree: &Tree,
        caller: &Caller<'_>,
        write: &Write,
        zxid: Zxid,
        now_ms: i64,
    ) -> Result<Txn, Rejection> {
        let checked = Checked::new(write.clone(), caller, TXN_BYTES_MAX_DEFAULT)?;
        self.prepare_checked(tree, caller, &checked, zxid, now_ms)
    }

    /// [`Prep::prepare`] for a write checked (with the same `caller`) before the lock.
    pub fn prepare_checked(
        &mut self,
        tree: &Tree,
        caller: &Caller<'_>,
        checked: &Checked,
        zxid: Zxid,
        now_ms: i64,
    ) -> Result<Txn, Rejection> {
        let mut acls = checked.acls.iter();
        let mark = self.outstanding.len();
        let mut undo = Undo::new();
        let op = match &checked.write {
            Write::Multi(ops) => {
                self.prepare_multi(tree, caller, ops, &mut acls, zxid, now_ms, &mut undo)?
            }
            // Session txns are a few dozen bytes: nothing to bound.
            Write::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                self.created.insert(*session_id, zxid);
                return Ok(Txn {
                    time_ms: now_ms,
                    op: TxnOp::CreateSession {
                        session_id: *session_id,
                        timeout_ms: *timeout_ms,
                        passwd: passwd.clone(),
                    },
                });
            }
            Write::CloseSession { session_id } => {
                return Ok(Txn {
                    time_ms: now_ms,
                    op: self.prepare_close(tree, *session_id, zxid),
                });
            }
            single => {
                let result =
                    self.prepare_op(tree, caller, single, &mut acls, zxid, now_ms, &mut undo);
                result.map_err(|e| {
                    self.roll_back(mark, std::mem::take(&mut undo));
                    Rejection::Error(e.code())
                })?
            }
        };
        let txn = Txn {
            time_ms: now_ms,
            op,
        };
        // Checked::new bounded the txn from above; this is the exact size. Past the bound (an
        // estimate that was wrong), nothing of the write stays recorded.
        if txn.encoded_len() > checked.txn_bytes_max {
            self.roll_back(mark, undo);
            return Err(match &txn.op {
                TxnOp::Multi(ops) => {
                    let mut bytes = TXN_HEADER_LEN + 1 + 4;
                    let crossing = ops
                        .iter()
                        .position(|op| {
                            bytes += op.encoded_len();
                            bytes > checked.txn_bytes_max
                        })
                        .unwrap_or(ops.len().saturating_sub(1));
                    Rejection::Multi(failed_multi(
                        ops.len(),
                        crossing,
                        ErrorCode::MarshallingError,
                    ))
                }
                _ => Rejection::Error(ErrorCode::MarshallingError),
            });
        }
        Ok(txn)
    }

    /// Forgets the records added since `outstanding` was `mark` long, restoring what they hid.
    fn roll_back(&mut self, mark: usize, undo: Undo) {
        self.outstanding.truncate(mark);
        for (path, prev) in undo.into_iter().rev() {
            match prev {
                Some(r) => self.by_path.insert(path, r),
                None => self.by_path.remove(&path),
            };
        }
    }

    /// Forgets pending records of txns up to and including `zxid` (call right after applying it).
    pub fn applied(&mut self, zxid: Zxid) {
        while let Some((z, _)) = self.outstanding.front() {
            if *z > zxid {
                break;
            }
            let Some((z, path)) = self.outstanding.pop_front() else {
                break;
            };
            if self.by_path.get(&path).is_some_and(|r| r.zxid == z) {
                self.by_path.remove(&path);
            }
        }
        self.created.retain(|_, z| *z > zxid);
        self.closing.retain(|_, z| *z > zxid);
    }

    /// Whether a CloseSession of the session is proposed and not yet applied.
    pub fn is_closing(&self, session_id: i64) -> bool {
        self.closing.contains_key(&session_id)
    }

    /// Number of paths with a pending change.
    pub fn pending_len(&self) -> usize {
        self.by_path.len()
    }

    /// Decides the ops of a multi, recording their changes in `undo`; if one fails, none of
    /// them stays recorded.
    #[allow(clippy::too_many_arguments)]
    fn prepare_multi<'a>(
        &mut self,
        tree: &Tree,
        caller: &Caller<'_>,
        ops: &[Write],
        acls: &mut impl Iterator<Item = &'a Result<Vec<Acl>, Error>>,
        zxid: Zxid,
        now_ms: i64,
        undo: &mut Undo,
    ) -> Result<TxnOp, Rejection> {
        let allowed = |w: &Write| {
            matches!(
                w,
                Write::Create { .. }
                    | Write::Delete { .. }
                    | Write::SetData { .. }
                    | Write::Check { .. }
            )
        };
        if !ops.iter().all(allowed) {
            // ZooKeeper cannot even deserialize such a MultiOperationRecord.
            return Err(Rejection::Error(ErrorCode::MarshallingError));
        }
        let mark = self.outstanding.len();
        let mut txns = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            match self.prepare_op(tree, caller, op, acls, zxid, now_ms, undo) {
                Ok(t) => txns.push(t),
                Err(e) => {
                    self.roll_back(mark, std::mem::take(undo));
                    return Err(Rejection::Multi(failed_multi(ops.len(), i, e.code())));
                }
            }
        }
        Ok(TxnOp::Multi(txns))
    }

    fn prepare_close(&mut self, tree: &Tree, session_id: i64, zxid: Zxid) -> TxnOp {
        // The session's ephemerals as the pending txns leave them.
        let mut paths: BTreeSet<String> = tree
            .ephemeral_paths(session_id)
            .map(str::to_string)
            .collect();
        for (path, r) in &self.by_path {
            match &r.node {
                None => {
                    paths.remove(path);
                }
                Some(n) if n.meta.ephemeral_owner == session_id => {
                    paths.insert(path.clone());
                }
                Some(_) => {}
            }
        }
        let mut undo = Undo::new();
        for path in paths {
            let Some(parent_path) = parent_of(&path) else {
                continue;
            };
            if let Ok(mut parent) = self.record(tree, parent_path) {
                parent.meta.num_children -= 1;
                parent.meta.pzxid = zxid.as_i64();
                self.add(zxid, parent_path, Some(parent), &mut undo);
            }
            self.add(zxid, &path, None, &mut undo);
        }
        self.closing.insert(session_id, zxid);
        TxnOp::CloseSession { session_id }
    }

    /// The node at `path` as pending txns leave it (`getRecordForPath`).
    fn record(&self, tree: &Tree, path: &str) -> Result<PendingNode, Error> {
        match self.by_path.get(path) {
            Some(Record { node: Some(n), .. }) => Ok(n.clone()),
            Some(Record { node: None, .. }) => Err(Error::NoNode(path.to_string())),
            None => tree
                .entry(path)
                .map(|e| PendingNode {
                    meta: e.meta(),
                    acl: tree.acl_of(e),
                })
                .ok_or_else(|| Error::NoNode(path.to_string())),
        }
    }

    fn add(&mut self, zxid: Zxid, path: &str, node: Option<PendingNode>, undo: &mut Undo) {
        let prev = self.by_path.insert(path.to_string(), Record { zxid, node });
        undo.push((path.to_string(), prev));
        self.outstanding.push_back((zxid, path.to_string()));
    }

    /// As `SessionTracker.checkSession`: a write from a session that is closing, or that is
    /// neither in the tree nor being created, is refused. Session 0 is the server itself.
    fn check_session(&self, tree: &Tree, caller: &Caller<'_>) -> Result<(), Error> {
        let id = caller.session_id;
        if self.closing.contains_key(&id) {
            return Err(Error::SessionExpired(id));
        }
        if id != 0 && tree.session(id).is_none() && !self.created.contains_key(&id) {
            return Err(Error::SessionExpired(id));
        }
        Ok(())
    }

    /// Decides one op. `acls` yields the fixed-up ACL of each Create and SetAcl op, in order.
    #[allow(clippy::too_many_arguments)]
    fn prepare_op<'a>(
        &mut self,
        tree: &Tree,
        caller: &Caller<'_>,
        write: &Write,
        acls: &mut impl Iterator<Item = &'a Result<Vec<Acl>, Error>>,
        zxid: Zxid,
        now_ms: i64,
        undo: &mut Undo,
    ) -> Result<TxnOp, Error> {
        let z = zxid.as_i64();
        let mut fixed_acl = |path: &str| {
            acls.next()
                .cloned()
                .unwrap_or_else(|| Err(Error::Malformed(format!("no checked ACL for {path}"))))
        };
        match write {
            // The order of checks is pRequest2TxnCreate's, so that a request failing several
            // of them gets ZooKeeper's answer: flags, TTL, session, the path's shape, ACL,
            // parent, CREATE on the parent, the full path, NodeExists, an ephemeral parent.
            Write::Create {
                path,
                data,
                acl: _,
                mode,
                ttl,
                container,
            } => {
                let acl = fixed_acl(path);
                let mode = CreateMode::from_code(*mode)
                    .ok_or_else(|| Error::BadArguments(format!("invalid create flags {mode}")))?;
                let container = *container || mode.is_container();
                // EphemeralType.validateTTL (extended types enabled).
                let ttl_owner = if mode.is_ttl() {
                    let t = ttl.unwrap_or(-1);
                    Some(ephemeral::ttl_owner(t).ok_or_else(|| {
                        Error::BadArguments(format!("ttl {t} out of range for {path}"))
                    })?)
                } else {
                    if ttl.is_some_and(|t| t >= 0) {
                        return Err(Error::BadArguments(format!(
                            "ttl not valid for mode {mode:?}"
                        )));
                    }
                    None
                };
                self.check_session(tree, caller)?;
                if mode.is_ephemeral()
                    && !(tree.has_session(caller.session_id)
                        || self.created.contains_key(&caller.session_id))
                {
                    return Err(Error::SessionExpired(caller.session_id));
                }
                // validatePathForCreate: only a '/' and no NUL; the rest is checked on the
                // final name, after the parent.
                let parent_path = match path.rfind('/') {
                    Some(_) if path.contains('\0') => {
                        return Err(Error::InvalidPath {
                            path: path.clone(),
                            reason: "null character",
                        })
                    }
                    Some(0) => "/",
                    Some(i) => &path[..i],
                    None => {
                        return Err(Error::InvalidPath {
                            path: path.clone(),
                            reason: "no '/'",
                        })
                    }
                };
                let acl = acl?;
                let mut parent = self.record(tree, parent_path)?;
                acl::check(&parent.acl, perms::CREATE, caller, path)?;
                let final_path = if mode.is_sequential() {
                    format!("{path}{:010}", parent.meta.cversion)
                } else {
                    path.clone()
                };
                let zpath = ZPath::parse(&final_path)?;
                if zpath.parent().is_none() {
                    // Creating "/": it always exists.
                    return Err(Error::NodeExists(final_path));
                }
                if self.record(tree, &final_path).is_ok() {
                    return Err(Error::NodeExists(final_path));
                }
                if ephemeral::kind(parent.meta.ephemeral_owner) == Kind::Normal {
                    return Err(Error::NoChildrenForEphemerals(final_path));
                }
                let new_cversion = parent.meta.cversion.wrapping_add(1);
                let ephemeral_owner = if container {
                    ephemeral::CONTAINER_OWNER
                } else if let Some(owner) = ttl_owner {
                    owner
                } else if mode.is_ephemeral() {
                    caller.session_id
                } else {
                    0
                };
                parent.meta.num_children += 1;
                parent.meta.cversion = new_cversion;
                parent.meta.pzxid = z;
                self.add(zxid, parent_path, Some(parent), undo);
                let node = PendingNode {
                    meta: Meta {
                        czxid: z,
                        mzxid: z,
                        pzxid: z,
                        ctime: now_ms,
                        mtime: now_ms,
                        ephemeral_owner,
                        ..Meta::default()
                    },
                    acl: acl.clone().into(),
                };
                self.add(zxid, &final_path, Some(node), undo);
                Ok(TxnOp::Create {
                    path: final_path,
                    data: data.clone(),
                    acl,
                    ephemeral_owner,
                    parent_cversion: new_cversion,
                })
            }
            Write::Delete { path, version } => {
                self.check_session(tree, caller)?;
                let parent_path = deletable(path)?;
                let mut parent = self.record(tree, parent_path)?;
                acl::check(&parent.acl, perms::DELETE, caller, path)?;
                let node = self.record(tree, path)?;
                check_version(path, node.meta.version, *version)?;
                if node.meta.num_children > 0 {
                    return Err(Error::NotEmpty(path.clone()));
                }
                parent.meta.num_children -= 1;
                parent.meta.pzxid = z;
                self.add(zxid, parent_path, Some(parent), undo);
                self.add(zxid, path, None, undo);
                Ok(TxnOp::Delete { path: path.clone() })
            }
            Write::Reap { path } => {
                let parent_path = deletable(path)?;
                let node = self.record(tree, path)?;
                if node.meta.num_children > 0 {
                    return Err(Error::NotEmpty(path.clone()));
                }
                if !qualifies_for_reap(&node.meta, now_ms) {
                    // ZooKeeper answers BadVersion for a deleteContainer of a non-container.
                    return Err(Error::BadVersion {
                        path: path.clone(),
                        expected: -1,
                        actual: node.meta.version,
                    });
                }
                let mut parent = self.record(tree, parent_path)?;
                parent.meta.num_children -= 1;
                parent.meta.pzxid = z;
                self.add(zxid, parent_path, Some(parent), undo);
                self.add(zxid, path, None, undo);
                Ok(TxnOp::Delete { path: path.clone() })
            }
            Write::SetData {
                path,
                data,
                version,
            } => {
                self.check_session(tree, caller)?;
                ZPath::parse(path)?;
                let mut node = self.record(tree, path)?;
                acl::check(&node.acl, perms::WRITE, caller, path)?;
                let new_version = check_version(path, node.meta.version, *version)?;
                node.meta.version = new_version;
                node.meta.mtime = now_ms;
                node.meta.mzxid = z;
                self.add(zxid, path, Some(node), undo);
                Ok(TxnOp::SetData {
                    path: path.clone(),
                    data: data.clone(),
                    version: new_version,
                })
            }
            Write::SetAcl {
                path,
                acl: _,
                version,
            } => {
                let acl = fixed_acl(path);
                self.check_session(tree, caller)?;
                ZPath::parse(path)?;
                let acl = acl?;
                let mut node = self.record(tree, path)?;
                acl::check(&node.acl, perms::ADMIN, caller, path)?;
                let new_version = check_version(path, node.meta.aversion, *version)?;
                node.meta.aversion = new_version;
                node.acl = acl.clone().into();
                self.add(zxid, path, Some(node), undo);
                Ok(TxnOp::SetAcl {
                    path: path.clone(),
                    acl,
                    version: new_version,
                })
            }
            Write::Check { path, version } => {
                self.check_session(tree, caller)?;
                ZPath::parse(path)?;
                let node = self.record(tree, path)?;
                acl::check(&node.acl, perms::READ, caller, path)?;
                check_version(path, node.meta.version, *version)?;
                Ok(TxnOp::Check {
                    path: path.clone(),
                    version: *version,
                })
            }
            Write::Multi(_) | Write::CreateSession { .. } | Write::CloseSession { .. } => Err(
                Error::Malformed("multi, session ops and nesting are handled by prepare".into()),
            ),
        }
    }
}

/// `getParentPathAndValidate`: a path with a '/', no NUL, that is not a system node; returns
/// its parent. Nothing else of the path is checked: `delete /a/` looks for "/a/" and answers
/// NoNode, as ZooKeeper does.
fn deletable(path: &str) -> Result<&str, Error> {
    let invalid = |reason| Error::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(invalid("null character"));
    }
    if SYSTEM_PATHS.contains(&path) {
        return Err(invalid("system node"));
    }
    match path.rfind('/') {
        Some(0) => Ok("/"),
        Some(i) => Ok(&path[..i]),
        None => Err(invalid("no '/'")),
    }
}

/// `checkAndIncVersion`: -1 matches any version; the next version skips -1 (ZOOKEEPER-4743).
fn check_version(path: &str, current: i32, expected: i32) -> Result<i32, Error> {
    if expected != -1 && expected != current {
        return Err(Error::BadVersion {
            path: path.to_string(),
            expected,
            actual: current,
        });
    }
    let next = current.wrapping_add(1);
    Ok(if next == -1 { 0 } else { next })
}
