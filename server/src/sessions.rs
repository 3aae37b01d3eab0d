//! Session liveness on this server: deadlines in buckets, and the connection (here, or on
//! another member) each session is attached to. The sessions themselves (id, timeout,
//! password, ephemerals) are replicated state in the tree.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_engine::zab::PeerId;
use coord_engine::Zxid;
use parking_lot::Mutex;
use rand::RngCore;

use crate::ids::{ConnId, SessionId};
use crate::outbox::Closing;

/// Session liveness on this server: deadlines and the connection each session is attached to.
/// The sessions themselves (id, timeout, password, ephemerals) are replicated state in the tree.
pub struct Sessions {
    table: Mutex<SessionTable>,
    next_id: AtomicI64,
}

struct Live {
    timeout: Duration,
    /// The expiry bucket of the session's deadline (see [`SessionTable`]).
    bucket: u64,
    owner: SessionOwner,
    /// The last txn proposed for this session by a client connection.
    last_proposed: Zxid,
}

/// The connection a session is attached to.
#[derive(Clone, Default)]
pub enum SessionOwner {
    /// None: the client is between connections, or the write is the server's own.
    #[default]
    None,
    /// A connection to this server.
    Local(Arc<Closing>),
    /// A connection to another member (known on the leader).
    Remote(PeerId, ConnId),
}

impl SessionOwner {
    fn is(&self, other: &SessionOwner) -> bool {
        match (self, other) {
            (SessionOwner::Local(a), SessionOwner::Local(b)) => Arc::ptr_eq(a, b),
            (SessionOwner::Remote(p, c), SessionOwner::Remote(q, d)) => p == q && c == d,
            _ => false,
        }
    }

    fn local(&self) -> Option<&Arc<Closing>> {
        match self {
            SessionOwner::Local(conn) => Some(conn),
            _ => None,
        }
    }
}

/// The live sessions, and the same sessions by deadline in buckets of `width` (as ZooKeeper's
/// ExpiryQueue): a deadline is rounded up to the end of its bucket, a packet moves its session
/// to another bucket only when the rounded deadline changes, and an expiry pass takes the due
/// buckets whole. So the pass is proportional to what expires, not to every session, under the
/// lock every packet takes. Invariant: each session of `live` is in the bucket it names, and
/// no bucket is empty.
struct SessionTable {
    live: HashMap<SessionId, Live>,
    /// Sessions a packet touched since this member last reported them to its leader; kept
    /// only while `reporting` (a follower or observer), so the packet path of a standalone
    /// server or a leader does no more than before.
    touched: HashSet<SessionId>,
    reporting: bool,
    buckets: BTreeMap<u64, HashSet<SessionId>>,
    origin: Instant,
    width: Duration,
}

impl SessionTable {
    /// The bucket whose end is the first at or after `deadline`.
    fn bucket_of(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.origin).as_nanos();
        let width = self.width.as_nanos().max(1);
        u64::try_from(since.div_ceil(width)).unwrap_or(u64::MAX)
    }

    fn insert(&mut self, id: SessionId, timeout: Duration, owner: SessionOwner) {
        // Out of its old bucket first: the new one may be the same.
        if let Some(old) = self.live.remove(&id) {
            self.unbucket(id, old.bucket);
        }
        let bucket = self.bucket_of(Instant::now() + timeout);
        self.buckets.entry(bucket).or_default().insert(id);
        self.live.insert(
            id,
            Live {
                timeout,
                bucket,
                owner,
                last_proposed: Zxid::ZERO,
            },
        );
    }

    fn unbucket(&mut self, id: SessionId, bucket: u64) {
        if let Some(set) = self.buckets.get_mut(&bucket) {
            set.remove(&id);
            if set.is_empty() {
                self.buckets.remove(&bucket);
            }
        }
    }

    /// Restarts the session's clock: its deadline is its timeout from now.
    fn touch(&mut self, id: SessionId) {
        let Some(live) = self.live.get(&id) else {
            return;
        };
        if self.reporting && live.owner.local().is_some() {
            self.touched.insert(id);
        }
        let (old, bucket) = (live.bucket, self.bucket_of(Instant::now() + live.timeout));
        if bucket == old {
            return;
        }
        self.unbucket(id, old);
        self.buckets.entry(bucket).or_default().insert(id);
        if let Some(live) = self.live.get_mut(&id) {
            live.bucket = bucket;
        }
    }

    fn remove(&mut self, id: SessionId) -> Option<Live> {
        self.touched.remove(&id);
        let live = self.live.remove(&id)?;
        self.unbucket(id, live.bucket);
        Some(live)
    }

    /// Removes the sessions whose bucket has ended by `now`.
    fn take_due(&mut self, now: Instant) -> Vec<(SessionId, Live)> {
        let since = now.saturating_duration_since(self.origin).as_nanos();
        let ended = u64::try_from(since / self.width.as_nanos().max(1)).unwrap_or(u64::MAX);
        let mut due = Vec::new();
        while let Some(entry) = self.buckets.first_entry() {
            if *entry.key() > ended {
                break;
            }
            for id in entry.remove() {
                if let Some(live) = self.live.remove(&id) {
                    due.push((id, live));
                }
            }
        }
        due
    }
}

impl Sessions {
    /// `width`: the granularity of deadlines, the period of the expiry pass.
    pub(crate) fn new(width: Duration, server_id: u64) -> Self {
        // As ZooKeeper's SessionTrackerImpl.initializeNextSessionId: the server id in the top
        // byte keeps members' ids apart, the time below it keeps them unique across restarts.
        // Negative for ids from 128, as in ZooKeeper; never 0 (no session) nor i64::MIN (the
        // container owner), which `create` skips.
        let first = (((now_ms() << 24) as u64 >> 8) | (server_id << 56)) as i64;
        Sessions {
            table: Mutex::new(SessionTable {
                live: HashMap::new(),
                touched: HashSet::new(),
                reporting: false,
                buckets: BTreeMap::new(),
                origin: Instant::now(),
                width,
            }),
            next_id: AtomicI64::new(first),
        }
    }

    /// Starts tracking a new session attached to the connection creating it, and returns its id
    /// and password (the write path decides them once; they are replicated).
    pub fn create(&self, timeout_ms: u64, conn: Arc<Closing>) -> (SessionId, Vec<u8>) {
        let mut passwd = vec![0u8; 16];
        rand::thread_rng().fill_bytes(&mut passwd);
        let mut table = self.table.lock();
        // Skips ids still tracked (possible only if the clock went back across a restart).
        let id = loop {
            let id = SessionId(self.next_id.fetch_add(1, Ordering::Relaxed));
            if !id.is_none() && id.0 != i64::MIN && !table.live.contains_key(&id) {
                break id;
            }
        };
        table.insert(
            id,
            Duration::from_millis(timeout_ms),
            SessionOwner::Local(conn),
        );
        (id, passwd)
    }

    /// Tracks a session created through another member's connection (on the leader), unless
    /// it already is: a live session is never taken over by a create that reuses its id.
    pub(crate) fn track(&self, id: SessionId, timeout_ms: u64, owner: SessionOwner) {
        let mut table = self.table.lock();
        if !table.live.contains_key(&id) {
            table.insert(id, Duration::from_millis(timeout_ms), owner);
        }
    }

    /// Tracks a session recovered from disk, attached to no connection.
    pub(crate) fn recover(&self, id: SessionId, timeout: Duration) {
        self.table.lock().insert(id, timeout, SessionOwner::None);
    }

    /// A session came to exist (its txn was applied): tracked, with a full timeout, unless it
    /// already is. So every member knows every session, and a new leader can expire them.
    pub fn created(&self, id: SessionId, timeout_ms: i32) {
        let mut table = self.table.lock();
        if !table.live.contains_key(&id) {
            let timeout = Duration::from_millis(timeout_ms.max(0) as u64);
            table.insert(id, timeout, SessionOwner::None);
        }
    }

    /// A session ended (its txn was applied): untracked, and a connection of it here closed.
    pub fn closed(&self, id: SessionId) {
        let removed = self.table.lock().remove(id);
        if let Some(conn) = removed.as_ref().and_then(|live| live.owner.local()) {
            conn.request();
        }
    }

    /// The sessions whose clients, connected here, sent something since the last call: what
    /// a follower reports alive to its leader (a client that went silent is not, and expires).
    /// Whether to keep touches for [`Sessions::take_touched`]: only where a leader needs them.
    pub fn set_reporting(&self, reporting: bool) {
        let mut table = self.table.lock();
        table.reporting = reporting;
        if !reporting {
            table.touched.clear();
        }
    }

    pub fn take_touched(&self) -> Vec<SessionId> {
        let mut table = self.table.lock();
        let touched = std::mem::take(&mut table.touched);
        touched
            .into_iter()
            .filter(|id| table.live.contains_key(id))
            .collect()
    }

    /// Tracks every session of the tree that is not tracked, with a full timeout: on a new
    /// leader, and after a snapshot replaced the tree.
    pub fn adopt(&self, sessions: &[(SessionId, i32)]) {
        let mut table = self.table.lock();
        for (id, timeout_ms) in sessions {
            if !table.live.contains_key(id) {
                let timeout = Duration::from_millis((*timeout_ms).max(0) as u64);
                table.insert(*id, timeout, SessionOwner::None);
            }
        }
    }

    /// Untracks the sessions the tree no longer has (a snapshot replaced it), closing their
    /// connections here. Sessions being created (tracked before their txn) are kept if
    /// `keep` says so.
    pub fn retain(&self, keep: impl Fn(SessionId) -> bool) {
        let mut table = self.table.lock();
        let gone: Vec<SessionId> = table.live.keys().copied().filter(|id| !keep(*id)).collect();
        for id in gone {
            if let Some(live) = table.remove(id) {
                if let Some(conn) = live.owner.local() {
                    conn.request();
                }
            }
        }
    }

    /// Restarts every session's clock, in pages so that packets are not held up: a new leader
    /// does not know how recently followers heard from their clients.
    pub async fn renew_all(&self) {
        const PAGE: usize = 4096;
        let ids: Vec<SessionId> = self.table.lock().live.keys().copied().collect();
        for page in ids.chunks(PAGE) {
            {
                let mut table = self.table.lock();
                for id in page {
                    table.touch(*id);
                }
            }
            tokio::task::yield_now().await;
        }
    }

    /// Attaches a connection to a session that is still tracked (not expired, not closing),
    /// restarting its clock, and returns the last txn proposed for the session; None if the
    /// session is gone. Use [`Shared::resume_session`], which orders this with proposals.
    pub(crate) fn resume(
        &self,
        id: SessionId,
        timeout_ms: u64,
        owner: SessionOwner,
    ) -> Option<Zxid> {
        let mut table = self.table.lock();
        let entry = table.live.get_mut(&id)?;
        entry.timeout = Duration::from_millis(timeout_ms);
        let old = std::mem::replace(&mut entry.owner, owner);
        if let Some(old) = old.local() {
            old.request();
        }
        let last_proposed = entry.last_proposed;
        table.touch(id);
        Some(last_proposed)
    }

    /// Whether the session is live and attached to a connection other than `owner`.
    pub(crate) fn is_moved(&self, id: SessionId, owner: &SessionOwner) -> bool {
        self.table
            .lock()
            .live
            .get(&id)
            .is_some_and(|l| !l.owner.is(owner))
    }

    pub(crate) fn record_proposed(&self, id: SessionId, zxid: Zxid) {
        if let Some(live) = self.table.lock().live.get_mut(&id) {
            live.last_proposed = zxid;
        }
    }

    /// Any packet from the client keeps its session alive.
    pub fn touch(&self, id: SessionId) {
        self.table.lock().touch(id);
    }

    /// The connection is gone; the session lives until its deadline.
    pub fn detach(&self, id: SessionId, conn: &Arc<Closing>) {
        let mut table = self.table.lock();
        if let Some(live) = table.live.get_mut(&id) {
            if live.owner.local().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                live.owner = SessionOwner::None;
                table.touch(id);
            }
        }
    }

    /// The client closes its session: it is no longer tracked.
    pub fn detach_closing(&self, id: SessionId) {
        self.table.lock().remove(id);
    }

    /// On a member that does not decide: closes the connections here whose clients went
    /// silent past their session's deadline (the leader expires the session itself) and
    /// returns their sessions; sessions of other members' clients stay tracked.
    pub(crate) fn close_silent(&self, now: Instant) -> Vec<SessionId> {
        let mut table = self.table.lock();
        let due = table.take_due(now);
        let mut closed = Vec::new();
        for (id, live) in due {
            match live.owner.local() {
                Some(conn) => {
                    conn.request();
                    closed.push(id);
                }
                None => table.insert(id, live.timeout, live.owner),
            }
        }
        closed
    }

    /// Removes and returns the sessions past their deadline, closing their connections.
    pub(crate) fn take_expired(&self, now: Instant) -> Vec<SessionId> {
        let due = self.table.lock().take_due(now);
        due.into_iter()
            .map(|(id, live)| {
                if let Some(conn) = live.owner.local() {
                    conn.request();
                }
                id
            })
            .collect()
    }

    pub fn count(&self) -> usize {
        self.table.lock().live.len()
    }
}

/// Milliseconds since the Unix epoch: the clock of ctime, mtime and TTLs.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> SessionTable {
        SessionTable {
            live: HashMap::new(),
            touched: HashSet::new(),
            reporting: false,
            buckets: BTreeMap::new(),
            origin: Instant::now(),
            width: Duration::from_millis(100),
        }
    }

    #[test]
    fn sessions_expire_by_bucket_and_touch_moves_them() {
        let mut t = table();
        let start = Instant::now();
        t.insert(SessionId(1), Duration::from_millis(250), SessionOwner::None);
        t.insert(
            SessionId(2),
            Duration::from_millis(1000),
            SessionOwner::None,
        );
        assert!(t.take_due(start + Duration::from_millis(200)).is_empty());
        let due: Vec<SessionId> = t
            .take_due(start + Duration::from_millis(450))
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(due, [SessionId(1)]);
        // A touch pushes the deadline out; a removed session never comes due.
        t.touch(SessionId(2));
        t.insert(SessionId(3), Duration::from_millis(10), SessionOwner::None);
        assert!(t.remove(SessionId(3)).is_some());
        assert!(t.take_due(start + Duration::from_millis(900)).is_empty());
        assert_eq!(t.take_due(start + Duration::from_secs(5)).len(), 1);
        assert!(t.live.is_empty() && t.buckets.is_empty());
    }
}
