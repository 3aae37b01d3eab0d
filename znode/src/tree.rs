//! The replicated znode tree: nodes, ACLs, sessions, and how committed txns change them
//! (ZooKeeper's `DataTree` and the read side of `FinalRequestProcessor`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use coord_engine::{RestoreError, Snapshot, StateMachine, Zxid};
use coord_proto::{perms, Acl, ErrorCode, Stat};
use imbl::OrdSet;

use crate::acl::{self, AclCache, Caller};
use crate::node::ephemeral::{self, Kind};
use crate::node::{Entry, Key, Meta, Probe};
use crate::path::parent_of;
use crate::txn::{Reader, Txn, TxnOp};
use crate::Error;

/// A session as the tree records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub timeout_ms: i32,
    pub passwd: Vec<u8>,
}

/// What applying a txn yields: the reply and the changes that fire watches, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub result: Result<TxnResult, ErrorCode>,
    pub events: Vec<ChangeEvent>,
    /// For each of `events`, at the same index, the ACL of the node it is about as it was at the
    /// change: who may learn of it through a persistent watch (ZooKeeper's fix of
    /// CVE-2024-23944).
    pub event_acls: Vec<Arc<[Acl]>>,
}

/// The changes of one txn as `apply` collects them.
#[derive(Default)]
struct Changes {
    events: Vec<ChangeEvent>,
    acls: Vec<Arc<[Acl]>>,
}

impl Changes {
    fn push(&mut self, event: ChangeEvent, acl: Arc<[Acl]>) {
        self.events.push(event);
        self.acls.push(acl);
    }
}

/// The successful outcome of a txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnResult {
    Created { path: String, stat: Stat },
    Deleted,
    SetData(Stat),
    SetAcl(Stat),
    Checked,
    Multi(Vec<OpResult>),
    SessionCreated { session_id: i64 },
    SessionClosed { session_id: i64 },
}

/// The outcome of one op of a multi.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Created {
        path: String,
        stat: Stat,
    },
    Deleted,
    SetData(Stat),
    Checked,
    /// ZooKeeper's `ErrorResult`: in a failed multi, `Ok` for ops before the failing one (rolled
    /// back), the failing op's code, then `RuntimeInconsistency` for the ops after it.
    Error(ErrorCode),
}

/// A change to the tree, for watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    Created(String),
    Deleted(String),
    DataChanged(String),
    ChildrenChanged(String),
}

/// The jute count of a vector, and the length of a string.
const STRING_VEC_HEADER_BYTES: usize = 4;
const STRING_HEADER_BYTES: usize = 4;

/// Collects `strings`, refused with [`Error::ReplyTooLarge`] (naming `path`) as soon as they, as a
/// jute vector of strings, would take more than `bytes_max`.
fn strings_within<'a>(
    strings: impl Iterator<Item = &'a str>,
    bytes_max: usize,
    path: &str,
) -> Result<Vec<String>, Error> {
    let mut bytes = STRING_VEC_HEADER_BYTES;
    let mut out = Vec::new();
    for s in strings {
        bytes += STRING_HEADER_BYTES + s.len();
        if bytes > bytes_max {
            return Err(Error::ReplyTooLarge {
                path: path.to_string(),
                max: bytes_max,
            });
        }
        out.push(s.to_string());
    }
    Ok(out)
}

/// The paths of ZooKeeper's system nodes, which may not be deleted.
pub const SYSTEM_PATHS: [&str; 4] = ["/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"];

/// Where [`Tree::reap_candidates_page`] goes on from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReapCursor {
    /// Past the containers, among the TTL nodes.
    in_ttls: bool,
    /// The first path of the set still to look at; None: from its start.
    from: Option<String>,
}

/// The znode tree.
#[derive(Debug, Clone)]
pub struct Tree {
    /// Every node, ordered by (depth, path). Invariant: every node but "/" has its parent here,
    /// and each node's `num_children` is the number of nodes whose parent it is.
    nodes: OrdSet<Entry>,
    acls: AclCache,
    sessions: BTreeMap<i64, SessionInfo>,
    /// Session id -> paths of its ephemeral nodes. Invariant: no empty sets.
    ephemerals: BTreeMap<i64, BTreeSet<Box<str>>>,
    /// The number of paths in `ephemerals`, kept as they change so that monitoring is O(1).
    ephemeral_count: usize,
    containers: BTreeSet<Box<str>>,
    ttls: BTreeSet<Box<str>>,
    /// Sum over nodes of path length + data length (ZooKeeper's `approximateDataSize`).
    data_size: u64,
    /// Wrapping sum of every node's [`Tree::node_digest`], kept as nodes change: replicas
    /// with the same nodes have the same digest, and reading it costs nothing.
    digest: u64,
    last_zxid: Zxid,
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A tree holding "/" and the system nodes as ZooKeeper 3.9's `DataTree` creates them: all
    /// with an all-zero stat and empty data; "/", "/zookeeper" and "/zookeeper/quota" open to
    /// everyone, "/zookeeper/config" world-readable only with aversion -1 (ZOOKEEPER-2014).
    pub fn new() -> Self {
        let mut tree = Tree {
            nodes: OrdSet::new(),
            acls: AclCache::default(),
            sessions: BTreeMap::new(),
            ephemerals: BTreeMap::new(),
            ephemeral_count: 0,
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            data_size: 0,
            digest: 0,
            last_zxid: Zxid::ZERO,
        };
        let open = Acl::open_unsafe();
        let system: [(&str, i32, i32, Vec<Acl>); 4] = [
            ("/", 1, 0, open.clone()),
            ("/zookeeper", 2, 0, open.clone()),
            ("/zookeeper/quota", 0, 0, open),
            ("/zookeeper/config", 0, -1, Acl::read_unsafe()),
        ];
        for (path, num_children, aversion, acl) in system {
            let meta = Meta {
                num_children,
                aversion,
                acl: tree.acls.intern(&acl),
                ..Meta::default()
            };
            tree.insert_entry(Entry::new(&meta, path, &[]));
        }
        tree
    }

    fn insert_entry(&mut self, e: Entry) {
        self.data_size += (e.path().len() + e.data().len()) as u64;
        self.digest = self.digest.wrapping_add(self.node_digest(&e));
        let old = self.nodes.insert(e);
        assert!(old.is_none(), "inserted a node that exists");
    }

    /// Replaces a node with a new version of itself (same path), keeping the digest. `old_digest`
    /// is the old version's, taken before its ACL could be released.
    fn replace_entry(&mut self, new: Entry, old_digest: u64) {
        self.digest = self
            .digest
            .wrapping_sub(old_digest)
            .wrapping_add(self.node_digest(&new));
        self.nodes.insert(new);
    }

    /// A 64-bit checksum of everything observable about a node: path, data, Stat and ACL. Two
    /// crc32c passes with different seeds (deterministic across processes and builds).
    fn node_digest(&self, e: &Entry) -> u64 {
        // Fed to the checksums in pieces, so that a node's data is never copied for it.
        let stat = e.stat();
        let mut head = Vec::with_capacity(e.path().len() + 8);
        head.extend_from_slice(&(e.path().len() as u32).to_be_bytes());
        head.extend_from_slice(e.path().as_bytes());
        head.extend_from_slice(&(e.data().len() as u32).to_be_bytes());
        let mut tail = Vec::with_capacity(96);
        for field in [
            stat.czxid,
            stat.mzxid,
            stat.ctime,
            stat.mtime,
            stat.ephemeral_owner,
            stat.pzxid,
        ] {
            tail.extend_from_slice(&field.to_be_bytes());
        }
        for field in [
            stat.version,
            stat.cversion,
            stat.aversion,
            stat.data_length,
            stat.num_children,
        ] {
            tail.extend_from_slice(&field.to_be_bytes());
        }
        crate::txn::put_acl(&mut tail, &self.acl_of(e));
        let crc = |seed| {
            [&head[..], e.data(), &tail[..]]
                .iter()
                .fold(seed, |crc, piece| crc32c::crc32c_append(crc, piece))
        };
        (u64::from(crc(0x636f_6f72)) << 32) | u64::from(crc(0x6469_6773))
    }

    /// The digest of the whole tree: equal on replicas that hold the same nodes (compare at the
    /// same [`Tree::last_zxid`]).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    pub(crate) fn entry(&self, path: &str) -> Option<&Entry> {
        self.nodes.get(&Probe::of(path) as &dyn Key)
    }

    pub(crate) fn acl_of(&self, e: &Entry) -> Arc<[Acl]> {
        self.acls.get(e.acl_index())
    }

    pub(crate) fn has_session(&self, session_id: i64) -> bool {
        self.sessions.contains_key(&session_id)
    }

    pub(crate) fn ephemeral_paths(&self, session_id: i64) -> impl Iterator<Item = &str> {
        self.ephemerals
            .get(&session_id)
            .into_iter()
            .flat_map(|s| s.iter().map(|p| &**p))
    }

    fn node_for_read(&self, path: &str, perm: i32, caller: &Caller<'_>) -> Result<&Entry, Error> {
        let e = self
            .entry(path)
            .ok_or_else(|| Error::NoNode(path.to_string()))?;
        acl::check(&self.acl_of(e), perm, caller, path)?;
        Ok(e)
    }

    /// getData: the node's data and stat; needs READ.
    pub fn get_data(&self, path: &str, caller: &Caller<'_>) -> Result<(Bytes, Stat), Error> {
        let e = self.node_for_read(path, perms::READ, caller)?;
        Ok((e.data_bytes(), e.stat()))
    }

    /// exists: the node's stat. As 3.9's FinalRequestProcessor: NUL in the path is
    /// BadArguments, and an existing node needs READ.
    pub fn exists(&self, path: &str, caller: &Caller<'_>) -> Result<Stat, Error> {
        if path.contains('\0') {
            return Err(Error::InvalidPath {
                path: path.to_string(),
                reason: "null character not allowed",
            });
        }
        Ok(self.node_for_read(path, perms::READ, caller)?.stat())
    }

    /// The node's stat and ACL without any check (for the server's own use: watches).
    pub fn stat_and_acl(&self, path: &str) -> Option<(Stat, Arc<[Acl]>)> {
        self.entry(path).map(|e| (e.stat(), self.acl_of(e)))
    }

    /// The node's stat without any ACL check (for the server's own use, e.g. watches).
    pub fn stat(&self, path: &str) -> Option<Stat> {
        self.entry(path).map(Entry::stat)
    }

    /// getChildren/getChildren2: the children's names (in byte order) and the node's stat;
    /// needs READ.
    pub fn get_children(
        &self,
        path: &str,
        caller: &Caller<'_>,
    ) -> Result<(Vec<String>, Stat), Error> {
        self.get_children_bounded(path, caller, usize::MAX)
    }

    /// [`Tree::get_children`], refused with [`Error::ReplyTooLarge`] as soon as the names, as
    /// a jute vector of strings, would take more than `bytes_max`: the work and memory of one
    /// read stay within the reply bound, however many children the node has.
    pub fn get_children_bounded(
        &self,
        path: &str,
        caller: &Caller<'_>,
        bytes_max: usize,
    ) -> Result<(Vec<String>, Stat), Error> {
        let e = self.node_for_read(path, perms::READ, caller)?;
        let prefix_len = if path == "/" { 1 } else { path.len() + 1 };
        let names = self.children_of(e).map(|c| &c.path()[prefix_len..]);
        Ok((strings_within(names, bytes_max, path)?, e.stat()))
    }

    fn children_of<'a>(&'a self, parent: &Entry) -> impl Iterator<Item = &'a Entry> + 'a {
        let mut prefix = parent.path().as_bytes().to_vec();
        if prefix != b"/" {
            prefix.push(b'/');
        }
        self.under(prefix, parent.depth() + 1)
    }

    /// The nodes at `depth` whose path starts with `prefix` (a path ending in "/").
    fn under(&self, prefix: Vec<u8>, depth: u32) -> impl Iterator<Item = &Entry> + '_ {
        let start = Probe {
            depth,
            path: &prefix,
        };
        let range = self
            .nodes
            .range::<_, dyn Key>((Bound::Included(&start as &dyn Key), Bound::Unbounded));
        range.take_while(move |c| c.depth() == depth && c.path_bytes().starts_with(&prefix))
    }

    /// getACL: needs READ or ADMIN; without ADMIN, digest ids come back as `user:x`.
    pub fn get_acl(&self, path: &str, caller: &Caller<'_>) -> Result<(Vec<Acl>, Stat), Error> {
        let e = self.node_for_read(path, perms::READ | perms::ADMIN, caller)?;
        let list = self.acl_of(e);
        let out = if acl::is_allowed(&list, perms::ADMIN, caller) {
            list.to_vec()
        } else {
            acl::redact(&list)
        };
        Ok((out, e.stat()))
    }

    /// getAllChildrenNumber: the number of descendants; needs READ.
    pub fn get_all_children_number(&self, path: &str, caller: &Caller<'_>) -> Result<i32, Error> {
        let e = self.node_for_read(path, perms::READ, caller)?;
        if path == "/" {
            return Ok(i32::try_from(self.nodes.len() - 1).unwrap_or(i32::MAX));
        }
        let mut prefix = path.as_bytes().to_vec();
        prefix.push(b'/');
        let mut total = 0usize;
        // Descendants at each depth are one contiguous run; stop at the first empty level.
        for depth in e.depth() + 1.. {
            let n = self.under(prefix.clone(), depth).count();
            if n == 0 {
                break;
            }
            total += n;
        }
        Ok(i32::try_from(total).unwrap_or(i32::MAX))
    }

    /// getEphemerals: the session's ephemeral paths starting with `prefix` (all of them for an
    /// empty or "/" prefix), in path order.
    pub fn get_ephemerals(&self, session_id: i64, prefix: &str) -> Vec<String> {
        self.get_ephemerals_bounded(session_id, prefix, usize::MAX)
            .unwrap_or_default()
    }

    /// [`Tree::get_ephemerals`], refused with [`Error::ReplyTooLarge`] as soon as the paths, as
    /// a jute vector of strings, would take more than `bytes_max`.
    pub fn get_ephemerals_bounded(
        &self,
        session_id: i64,
        prefix: &str,
        bytes_max: usize,
    ) -> Result<Vec<String>, Error> {
        let all = prefix.trim().is_empty() || prefix.trim() == "/";
        let paths = self
            .ephemeral_paths(session_id)
            .filter(|p| all || p.starts_with(prefix));
        strings_within(paths, bytes_max, prefix)
    }

    pub fn session(&self, session_id: i64) -> Option<SessionInfo> {
        self.sessions.get(&session_id).cloned()
    }

    /// Every session, in id order.
    pub fn sessions(&self) -> impl Iterator<Item = (i64, &SessionInfo)> {
        self.sessions.iter().map(|(id, s)| (*id, s))
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The number of ephemeral nodes (of sessions, not containers or TTL nodes).
    pub fn ephemeral_count(&self) -> usize {
        self.ephemeral_count
    }

    /// Sum of path and data lengths over all nodes.
    pub fn approximate_data_size(&self) -> u64 {
        self.data_size
    }

    /// Sessions that own ephemeral nodes, with their paths (for the `dump` four-letter word).
    pub fn ephemerals_by_session(&self) -> Vec<(i64, Vec<String>)> {
        self.ephemerals
            .iter()
            .map(|(id, paths)| (*id, paths.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    /// Nodes ContainerManager would delete now: containers without children that once had one
    /// (cversion > 0), and TTL nodes without children not modified for longer than their TTL.
    /// Walks every container and TTL node; see [`Tree::reap_candidates_page`] to do it in parts.
    pub fn reap_candidates(&self, now_ms: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = ReapCursor::default();
        loop {
            let (page, next) = self.reap_candidates_page(now_ms, &cursor, usize::MAX);
            out.extend(page);
            match next {
                Some(next) => cursor = next,
                None => return out,
            }
        }
    }

    /// [`Tree::reap_candidates`] over at most `scan_max` containers and TTL nodes from `cursor`
    /// on, and where to go on from (None: done), so that a caller holding a lock the apply
    /// thread needs can release it between parts.
    pub fn reap_candidates_page(
        &self,
        now_ms: i64,
        cursor: &ReapCursor,
        scan_max: usize,
    ) -> (Vec<String>, Option<ReapCursor>) {
        // At least one per page, or a caller could go round with the same cursor forever.
        let scan_max = scan_max.max(1);
        let mut out = Vec::new();
        let mut scanned = 0;
        let sets = [(false, &self.containers), (true, &self.ttls)];
        for (ttl, set) in sets {
            if !ttl && cursor.in_ttls {
                continue;
            }
            let from = match &cursor.from {
                Some(from) if cursor.in_ttls == ttl => Bound::Included(from.as_ref()),
                _ => Bound::Unbounded,
            };
            for path in set.range::<str, _>((from, Bound::Unbounded)) {
                if scanned == scan_max {
                    let next = ReapCursor {
                        in_ttls: ttl,
                        from: Some(path.to_string()),
                    };
                    return (out, Some(next));
                }
                scanned += 1;
                if let Some(e) = self.entry(path) {
                    if qualifies_for_reap(&e.meta(), now_ms) {
                        out.push(path.to_string());
                    }
                }
            }
        }
        (out, None)
    }

    /// The zxid of the last txn applied (or restored).
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// Applies a decoded txn (what [`StateMachine::apply`] does after decoding).
    pub fn apply_txn(&mut self, zxid: Zxid, txn: &Txn) -> Applied {
        let mut events = Changes::default();
        let result = match &txn.op {
            TxnOp::Multi(ops) => {
                let results = ops
                    .iter()
                    .map(
                        |op| match self.apply_op(zxid, txn.time_ms, op, &mut events) {
                            Ok(r) => op_result(r),
                            Err(e) => OpResult::Error(e.code()),
                        },
                    )
                    .collect();
                Ok(TxnResult::Multi(results))
            }
            op => self
                .apply_op(zxid, txn.time_ms, op, &mut events)
                .map_err(|e| e.code()),
        };
        if zxid > self.last_zxid {
            self.last_zxid = zxid;
        }
        Applied {
            result,
            events: events.events,
            event_acls: events.acls,
        }
    }

    fn apply_op(
        &mut self,
        zxid: Zxid,
        time_ms: i64,
        op: &TxnOp,
        events: &mut Changes,
    ) -> Result<TxnResult, Error> {
        let z = zxid.as_i64();
        match op {
            TxnOp::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                self.sessions.insert(
                    *session_id,
                    SessionInfo {
                        timeout_ms: *timeout_ms,
                        passwd: passwd.clone(),
                    },
                );
                Ok(TxnResult::SessionCreated {
                    session_id: *session_id,
                })
            }
            TxnOp::CloseSession { session_id } => {
                self.sessions.remove(session_id);
                let paths = self.ephemerals.remove(session_id).unwrap_or_default();
                self.ephemeral_count -= paths.len();
                for path in paths {
                    // A path already gone is skipped, as DataTree.deleteNodes does.
                    let _ = self.delete_node(&path, z, events);
                }
                Ok(TxnResult::SessionClosed {
                    session_id: *session_id,
                })
            }
            TxnOp::Create {
                path,
                data,
                acl,
                ephemeral_owner,
                parent_cversion,
            } => {
                let stat = self.create_node(
                    path,
                    data,
                    acl,
                    *ephemeral_owner,
                    *parent_cversion,
                    z,
                    time_ms,
                    events,
                )?;
                Ok(TxnResult::Created {
                    path: path.clone(),
                    stat,
                })
            }
            TxnOp::Delete { path } => {
                self.delete_node(path, z, events)?;
                Ok(TxnResult::Deleted)
            }
            TxnOp::SetData {
                path,
                data,
                version,
            } => {
                let e = self
                    .entry(path)
                    .ok_or_else(|| Error::NoNode(path.clone()))?;
                let mut meta = e.meta();
                meta.version = *version;
                meta.mtime = time_ms;
                meta.mzxid = z;
                let old_len = e.data().len() as u64;
                let acl = self.acl_of(e);
                let old_digest = self.node_digest(e);
                let new = Entry::new(&meta, path, data);
                let stat = new.stat();
                self.data_size = self.data_size - old_len + data.len() as u64;
                self.replace_entry(new, old_digest);
                events.push(ChangeEvent::DataChanged(path.clone()), acl);
                Ok(TxnResult::SetData(stat))
            }
            TxnOp::SetAcl { path, acl, version } => {
                let e = self
                    .entry(path)
                    .ok_or_else(|| Error::NoNode(path.clone()))?
                    .clone();
                let mut meta = e.meta();
                let old_digest = self.node_digest(&e);
                let new_index = self.acls.intern(acl);
                self.acls.release(meta.acl);
                meta.acl = new_index;
                meta.aversion = *version;
                let new = e.with_meta(&meta);
                let stat = new.stat();
                self.replace_entry(new, old_digest);
                Ok(TxnResult::SetAcl(stat))
            }
            TxnOp::Check { path, .. } => {
                if self.entry(path).is_none() {
                    return Err(Error::NoNode(path.clone()));
                }
                Ok(TxnResult::Checked)
            }
            TxnOp::Multi(_) => Err(Error::Malformed("nested multi".into())),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create_node(
        &mut self,
        path: &str,
        data: &[u8],
        acl: &[Acl],
        ephemeral_owner: i64,
        parent_cversion: i32,
        zxid: i64,
        time_ms: i64,
        events: &mut Changes,
    ) -> Result<Stat, Error> {
        let parent_path = parent_of(path).ok_or_else(|| Error::NodeExists(path.to_string()))?;
        let parent = self
            .entry(parent_path)
            .ok_or_else(|| Error::NoNode(parent_path.to_string()))?;
        if self.entry(path).is_some() {
            return Err(Error::NodeExists(path.to_string()));
        }
        let mut pmeta = parent.meta();
        let cversion = if parent_cversion == -1 {
            pmeta.cversion.wrapping_add(1)
        } else {
            parent_cversion
        };
        // As DataTree.createNode: only move cversion/pzxid forward (fuzzy snapshot replay).
        if cversion > pmeta.cversion {
            pmeta.cversion = cversion;
            pmeta.pzxid = zxid;
        }
        pmeta.num_children += 1;
        let parent_acl = self.acl_of(parent);
        let parent_digest = self.node_digest(parent);
        let new_parent = parent.with_meta(&pmeta);
        self.replace_entry(new_parent, parent_digest);

        let meta = Meta {
            czxid: zxid,
            mzxid: zxid,
            pzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            ephemeral_owner,
            acl: self.acls.intern(acl),
            ..Meta::default()
        };
        let node = Entry::new(&meta, path, data);
        let stat = node.stat();
        let node_acl = self.acl_of(&node);
        self.insert_entry(node);
        match ephemeral::kind(ephemeral_owner) {
            Kind::Container => {
                self.containers.insert(path.into());
            }
            Kind::Ttl(_) => {
                self.ttls.insert(path.into());
            }
            Kind::Normal => {
                let inserted = self
                    .ephemerals
                    .entry(ephemeral_owner)
                    .or_default()
                    .insert(path.into());
                self.ephemeral_count += usize::from(inserted);
            }
            Kind::Void => {}
        }
        events.push(ChangeEvent::Created(path.to_string()), node_acl);
        events.push(
            ChangeEvent::ChildrenChanged(parent_path.to_string()),
            parent_acl,
        );
        Ok(stat)
    }

    fn delete_node(&mut self, path: &str, zxid: i64, events: &mut Changes) -> Result<(), Error> {
        let parent_path = parent_of(path).ok_or_else(|| Error::InvalidPath {
            path: path.to_string(),
            reason: "the root cannot be deleted",
        })?;
        let node = self
            .entry(path)
            .ok_or_else(|| Error::NoNode(path.to_string()))?
            .clone();
        if node.num_children() > 0 {
            return Err(Error::NotEmpty(path.to_string()));
        }
        let parent = self
            .entry(parent_path)
            .unwrap_or_else(|| panic!("node {path} has no parent in the tree"));
        let mut pmeta = parent.meta();
        pmeta.num_children -= 1;
        // 3.9 leaves the parent's cversion alone on delete and only moves pzxid forward.
        if zxid > pmeta.pzxid {
            pmeta.pzxid = zxid;
        }
        let parent_acl = self.acl_of(parent);
        let node_acl = self.acl_of(&node);
        let parent_digest = self.node_digest(parent);
        let new_parent = parent.with_meta(&pmeta);
        self.replace_entry(new_parent, parent_digest);
        self.digest = self.digest.wrapping_sub(self.node_digest(&node));
        self.nodes.remove(&Probe::of(path) as &dyn Key);
        self.acls.release(node.acl_index());
        self.data_size -= (path.len() + node.data().len()) as u64;
        let owner = node.ephemeral_owner();
        match ephemeral::kind(owner) {
            Kind::Container => {
                self.containers.remove(path);
            }
            Kind::Ttl(_) => {
                self.ttls.remove(path);
            }
            Kind::Normal => {
                if let Some(set) = self.ephemerals.get_mut(&owner) {
                    self.ephemeral_count -= usize::from(set.remove(path));
                    if set.is_empty() {
                        self.ephemerals.remove(&owner);
                    }
                }
            }
            Kind::Void => {}
        }
        events.push(ChangeEvent::Deleted(path.to_string()), node_acl);
        events.push(
            ChangeEvent::ChildrenChanged(parent_path.to_string()),
            parent_acl,
        );
        Ok(())
    }
}

/// ContainerManager's rule, for a node known to have no children.
pub(crate) fn qualifies_for_reap(meta: &Meta, now_ms: i64) -> bool {
    if meta.num_children != 0 {
        return false;
    }
    match ephemeral::kind(meta.ephemeral_owner) {
        Kind::Container => meta.cversion > 0,
        Kind::Ttl(ttl) => ttl != 0 && now_ms.saturating_sub(meta.mtime) > ttl,
        Kind::Void | Kind::Normal => false,
    }
}

fn op_result(r: TxnResult) -> OpResult {
    match r {
        TxnResult::Created { path, stat } => OpResult::Created { path, stat },
        TxnResult::Deleted => OpResult::Deleted,
        TxnResult::SetData(stat) => OpResult::SetData(stat),
        TxnResult::Checked => OpResult::Checked,
        // Prepare never puts these in a multi; the decoder rejects sessions and nesting.
        TxnResult::SetAcl(_)
        | TxnResult::Multi(_)
        | TxnResult::SessionCreated { .. }
        | TxnResult::SessionClosed { .. } => OpResult::Error(ErrorCode::MarshallingError),
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots
// ---------------------------------------------------------------------------------------------

const SNAP_MAGIC: &[u8; 4] = b"CZT1";
const SNAP_END: &[u8; 4] = b"CZTE";
/// Largest node record a snapshot may hold (header + path + data); jute.maxbuffer is 1 MiB.
const SNAP_NODE_BYTES_MAX: usize = 64 << 20;
/// Largest ACL list or session password record.
const SNAP_RECORD_BYTES_MAX: usize = 16 << 20;

/// A frozen view of a [`Tree`]: taking it shares the tree's nodes (the tree copies what it
/// changes while the view lives), so it costs O(1) in nodes, not a pause of apply for O(tree).
#[derive(Debug, Clone)]
pub struct TreeSnapshot {
    nodes: OrdSet<Entry>,
    acls: Vec<(u32, Arc<[Acl]>)>,
    acl_next: u32,
    sessions: Vec<(i64, SessionInfo)>,
    last_zxid: Zxid,
}

impl TreeSnapshot {
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl Snapshot for TreeSnapshot {
    /// Format (big-endian): magic "CZT1", u64 last zxid, u32 next ACL index, u32 ACL count and
    /// each (u32 index, u32 byte length, ACL list as in txns), u32 session count and each (i64
    /// id, i32 timeout, u32 length + password), u64 node count and each (u32 length + node
    /// record), magic "CZTE".
    fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
        let mut w = io::BufWriter::with_capacity(1 << 16, writer);
        w.write_all(SNAP_MAGIC)?;
        w.write_all(&self.last_zxid.as_u64().to_be_bytes())?;
        w.write_all(&self.acl_next.to_be_bytes())?;
        w.write_all(&(self.acls.len() as u32).to_be_bytes())?;
        let mut buf = Vec::new();
        for (index, list) in &self.acls {
            buf.clear();
            crate::txn::put_acl(&mut buf, list);
            w.write_all(&index.to_be_bytes())?;
            w.write_all(&(buf.len() as u32).to_be_bytes())?;
            w.write_all(&buf)?;
        }
        w.write_all(&(self.sessions.len() as u32).to_be_bytes())?;
        for (id, s) in &self.sessions {
            w.write_all(&id.to_be_bytes())?;
            w.write_all(&s.timeout_ms.to_be_bytes())?;
            w.write_all(&(s.passwd.len() as u32).to_be_bytes())?;
            w.write_all(&s.passwd)?;
        }
        w.write_all(&(self.nodes.len() as u64).to_be_bytes())?;
        for e in &self.nodes {
            let raw = e.raw();
            w.write_all(&(raw.len() as u32).to_be_bytes())?;
            w.write_all(raw)?;
        }
        w.write_all(SNAP_END)?;
        w.flush()
    }
}

fn malformed(msg: impl Into<String>) -> RestoreError {
    RestoreError::Malformed(msg.into())
}

struct SnapReader<'a> {
    r: io::BufReader<&'a mut dyn Read>,
}

impl SnapReader<'_> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], RestoreError> {
        let mut a = [0u8; N];
        self.r.read_exact(&mut a)?;
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, RestoreError> {
        Ok(u32::from_be_bytes(self.exact()?))
    }
    fn vec(&mut self, max: usize) -> Result<Vec<u8>, RestoreError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(malformed(format!("record of {n} bytes exceeds {max}")));
        }
        // Grows with the bytes that arrive, so a lying length cannot allocate up front.
        let mut v = Vec::new();
        (&mut self.r).take(n as u64).read_to_end(&mut v)?;
        if v.len() != n {
            return Err(malformed(format!(
                "record of {n} bytes ends after {}",
                v.len()
            )));
        }
        Ok(v)
    }
}

impl StateMachine for Tree {
    type Output = Applied;
    type Snapshot = TreeSnapshot;

    fn apply(&mut self, zxid: Zxid, txn: &[u8]) -> Applied {
        match Txn::decode(txn) {
            Ok(t) => self.apply_txn(zxid, &t),
            Err(e) => {
                tracing::error!(%zxid, error = %e, "undecodable txn");
                Applied {
                    result: Err(e.code()),
                    events: Vec::new(),
                    event_acls: Vec::new(),
                }
            }
        }
    }

    fn snapshot(&self) -> TreeSnapshot {
        TreeSnapshot {
            nodes: self.nodes.clone(),
            acls: self.acls.entries().map(|(i, l)| (i, l.clone())).collect(),
            acl_next: self.acls.next_index(),
            sessions: self.sessions.iter().map(|(i, s)| (*i, s.clone())).collect(),
            last_zxid: self.last_zxid,
        }
    }

    fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
        let mut r = SnapReader {
            r: io::BufReader::with_capacity(1 << 16, reader),
        };
        if &r.exact::<4>()? != SNAP_MAGIC {
            return Err(malformed("not a znode tree snapshot"));
        }
        let last_zxid = Zxid::from_u64(u64::from_be_bytes(r.exact()?));
        let acl_next = r.u32()?;
        let n_acls = r.u32()?;
        let mut lists = Vec::new();
        let mut seen = BTreeSet::new();
        for _ in 0..n_acls {
            let index = r.u32()?;
            let raw = r.vec(SNAP_RECORD_BYTES_MAX)?;
            let mut rd = Reader { buf: &raw, pos: 0 };
            let list = rd.acl().map_err(|e| malformed(e.to_string()))?;
            if rd.pos != raw.len() || !seen.insert(index) {
                return Err(malformed(format!("bad ACL record {index}")));
            }
            lists.push((index, Arc::<[Acl]>::from(list)));
        }
        let n_sessions = r.u32()?;
        let mut sessions = BTreeMap::new();
        for _ in 0..n_sessions {
            let id = i64::from_be_bytes(r.exact()?);
            let timeout_ms = i32::from_be_bytes(r.exact()?);
            let passwd = r.vec(SNAP_RECORD_BYTES_MAX)?;
            sessions.insert(id, SessionInfo { timeout_ms, passwd });
        }
        let n_nodes = u64::from_be_bytes(r.exact()?);
        let mut nodes = OrdSet::new();
        let mut usage: HashMap<u32, u64> = HashMap::new();
        let mut last: Option<Entry> = None;
        for _ in 0..n_nodes {
            let raw = r.vec(SNAP_NODE_BYTES_MAX)?;
            let e = Entry::from_raw(&raw).map_err(malformed)?;
            if last.as_ref().is_some_and(|l| l >= &e) {
                return Err(malformed(format!("node {} out of order", e.path())));
            }
            if !seen.contains(&e.acl_index()) {
                return Err(malformed(format!("node {} has unknown ACL", e.path())));
            }
            *usage.entry(e.acl_index()).or_default() += 1;
            nodes.insert(e.clone());
            last = Some(e);
        }
        if &r.exact::<4>()? != SNAP_END {
            return Err(malformed("snapshot has no end marker"));
        }

        let mut tree = Tree {
            nodes,
            acls: AclCache::from_parts(lists, &usage, acl_next),
            sessions,
            ephemerals: BTreeMap::new(),
            ephemeral_count: 0,
            containers: BTreeSet::new(),
            ttls: BTreeSet::new(),
            data_size: 0,
            digest: 0,
            last_zxid,
        };
        if tree.entry("/").is_none() {
            return Err(malformed("snapshot has no root"));
        }
        let mut data_size = 0u64;
        let mut digest = 0u64;
        for e in &tree.nodes {
            let path = e.path();
            data_size += (path.len() + e.data().len()) as u64;
            digest = digest.wrapping_add(tree.node_digest(e));
            if let Some(parent) = parent_of(path) {
                if tree.entry(parent).is_none() {
                    return Err(malformed(format!("node {path} has no parent")));
                }
            }
            let children = tree.children_of(e).count();
            if children != e.num_children() as usize {
                return Err(malformed(format!("node {path} child count mismatch")));
            }
            let owner = e.ephemeral_owner();
            match ephemeral::kind(owner) {
                Kind::Container => {
                    tree.containers.insert(path.into());
                }
                Kind::Ttl(_) => {
                    tree.ttls.insert(path.into());
                }
                Kind::Normal => {
                    let inserted = tree
                        .ephemerals
                        .entry(owner)
                        .or_default()
                        .insert(path.into());
                    tree.ephemeral_count += usize::from(inserted);
                }
                Kind::Void => {}
            }
        }
        tree.data_size = data_size;
        tree.digest = digest;
        *self = tree;
        Ok(())
    }
}

#[cfg(test)]
impl Tree {
    /// Everything observable, for equality checks in tests.
    pub(crate) fn dump(&self) -> Vec<(String, Stat, Vec<u8>, Vec<Acl>)> {
        self.nodes
            .iter()
            .map(|e| {
                (
                    e.path().to_string(),
                    e.stat(),
                    e.data().to_vec(),
                    self.acl_of(e).to_vec(),
                )
            })
            .collect()
    }
}
