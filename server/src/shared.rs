//! The state every connection and background task of one server shares: the tree, the watch
//! and session tables, the write path (decided here, or asked of the leader), the registry of
//! connections and the counters four-letter words report.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord_engine::{ForwardReply, Forwarded, Zxid};
use coord_proto::{ErrorCode, Id};
use coord_znode::{Caller, Checked, Prep, Rejection, RemoteWrite, Tree, Write};
use parking_lot::{Mutex, RwLock};
use tracing::{debug, warn};

use crate::config::Config;
use crate::forward::{PeerAnswer, PeerRequest};
use crate::ids::{ConnId, SessionId};
use crate::outbox::Closing;
use crate::sessions::{now_ms, SessionOwner, Sessions};
use crate::watch::WatchManager;
use crate::write::{Backend, Mode, Pending, Refused};

/// State shared by every connection and background task of one server.
pub struct Shared {
    pub config: Config,
    /// The committed znode tree; readers take the read lock, the apply thread the write lock.
    pub tree: Arc<RwLock<Tree>>,
    pub watches: Arc<Mutex<WatchManager>>,
    /// The write path. Held while a txn is decided and proposed, so that decision order is zxid
    /// order.
    write_path: Mutex<WritePath>,
    /// The zxid of the last txn applied to the tree, as the apply thread publishes it.
    applied: tokio::sync::watch::Receiver<Zxid>,
    pub engine: Backend,
    pub sessions: Arc<Sessions>,
    /// Bytes (in KiB units) of writes proposed and not yet resolved, server-wide.
    pub write_budget: Arc<tokio::sync::Semaphore>,
    pub stats: Stats,
    pub next_conn_id: AtomicU64,
    conns: Mutex<HashMap<ConnId, Arc<ConnInfo>>>,
    conns_per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub started: Instant,
}

/// A write request's cost against the server-wide budget of writes proposed and not yet
/// resolved (`max_pending_write_bytes`): its size in KiB, at least 1, at most all of it.
pub fn write_budget_units(frame_len: usize, budget_units: u32) -> u32 {
    u32::try_from(frame_len / 1024 + 1)
        .unwrap_or(u32::MAX)
        .min(budget_units)
}

impl Shared {
    pub fn new(
        config: Config,
        tree: Arc<RwLock<Tree>>,
        watches: Arc<Mutex<WatchManager>>,
        applied: tokio::sync::watch::Receiver<Zxid>,
        engine: Backend,
        sessions: Arc<Sessions>,
    ) -> Shared {
        let write_budget_units = config.write_budget_units();
        Shared {
            config,
            tree,
            watches,
            write_path: Mutex::new(WritePath {
                prep: Prep::new(),
                last_proposed: Zxid::ZERO,
                epoch: coord_engine::Epoch(0),
            }),
            applied,
            engine,
            sessions,
            write_budget: Arc::new(tokio::sync::Semaphore::new(write_budget_units as usize)),
            stats: Stats::default(),
            next_conn_id: AtomicU64::new(1),
            conns: Mutex::new(HashMap::new()),
            conns_per_ip: Mutex::new(HashMap::new()),
            started: Instant::now(),
        }
    }
}

impl Shared {
    /// The zxid of the last txn applied, as reply headers carry it.
    pub fn last_zxid(&self) -> i64 {
        self.engine.last_applied().as_i64()
    }

    /// Clamps a requested session timeout into the configured bounds.
    pub fn negotiate_timeout(&self, requested_ms: i32) -> u64 {
        (requested_ms.max(0) as u64).clamp(
            self.config.min_session_timeout_ms,
            self.config.max_session_timeout_ms,
        )
    }

    /// What this server is now.
    pub fn mode(&self) -> Mode {
        self.engine.mode()
    }

    /// The last txn this server proposed (on the leader: every write decided so far).
    pub fn last_proposed(&self) -> Zxid {
        self.write_path.lock().last_proposed
    }

    /// Where a `sync` must have caught up to: every txn this member decided or holds in its
    /// log, which covers every write acknowledged before the sync reached the leader.
    pub fn sync_point(&self) -> Zxid {
        let logged = self
            .engine
            .member()
            .map_or(Zxid::ZERO, |member| member.last_logged_or_proposed());
        let proposed = {
            let path = self.write_path.lock();
            // A proposal of an older epoch may have been cut since; the log knows.
            if path.epoch == self.engine.epoch() {
                path.last_proposed
            } else {
                Zxid::ZERO
            }
        };
        proposed.max(logged)
    }

    /// Decides `write` for the caller and proposes it, or, on a follower, forwards it to the
    /// leader, which does. A write refused here is not logged; see [`Refused`] for when it may
    /// be answered. A forwarded one may come back refused through the [`Pending`] too.
    ///
    /// `owner` is the connection the write came from, if a client sent it: a connection that no
    /// longer owns its session (the client moved to another connection) is refused with
    /// SessionMoved, in one step with the proposal, so that a write either is proposed before
    /// the session moves (and the new connection waits for it, see [`Shared::resume_session`])
    /// or not at all.
    pub fn propose(
        &self,
        ids: &[Id],
        is_super: bool,
        session_id: SessionId,
        owner: Option<&Arc<Closing>>,
        write: Write,
    ) -> Result<Pending, Refused> {
        let mode = self.mode();
        if !mode.decides() {
            let Some(member) = self.engine.member() else {
                unreachable!("only a member does not decide its writes");
            };
            if !mode.serves() {
                return Ok(Pending::Failed(Some(coord_engine::EngineError::NotServing)));
            }
            let request = PeerRequest::Write {
                owner: owner.map(|c| c.id),
                write: RemoteWrite {
                    session_id: session_id.0,
                    is_super,
                    ids: ids.to_vec(),
                    write,
                },
            };
            return Ok(Pending::Forward(member.forward(request.encode())));
        }
        let caller = Caller {
            session_id: session_id.0,
            ids,
            is_super,
        };
        let owner = match owner {
            Some(conn) => SessionOwner::Local(conn.clone()),
            None => SessionOwner::None,
        };
        let mut proposal = None;
        self.decide(&caller, &owner, write, |build| {
            proposal = Some(self.engine.propose(build)?);
            Ok(())
        })?;
        match proposal {
            Some(proposal) => Ok(Pending::Local(proposal)),
            None => unreachable!("a decided write was proposed"),
        }
    }

    /// On the leader: decides a write a follower forwarded, and proposes it through the member
    /// (which tells the follower its zxid ahead of the proposal).
    pub fn propose_forwarded(
        &self,
        forwarded: &Forwarded,
        owner: SessionOwner,
        remote: RemoteWrite,
    ) -> Result<(), Refused> {
        let Some(member) = self.engine.member() else {
            return Err(Refused {
                rejection: Rejection::Error(ErrorCode::SystemError),
                after: Zxid::ZERO,
            });
        };
        // A forwarded `auth` ACL is expanded with the caller's ids as the follower knew them.
        let caller = Caller {
            session_id: remote.session_id,
            ids: &remote.ids,
            is_super: remote.is_super,
        };
        if let Write::CreateSession {
            session_id,
            timeout_ms,
            ..
        } = &remote.write
        {
            // Tracked before it exists, so that it expires even if the client never returns.
            self.sessions.track(
                SessionId(*session_id),
                timeout_ms.max(&0).unsigned_abs() as u64,
                owner.clone(),
            );
        }
        let closes = match &remote.write {
            Write::CloseSession { session_id } => Some(*session_id),
            _ => None,
        };
        self.decide(&caller, &owner, remote.write.clone(), |build| match member
            .propose_forwarded(forwarded, build)?
        {
            Ok(_) => Ok(()),
            Err(err) => {
                debug!(error = %err, "forwarded write not proposed");
                Ok(())
            }
        })?;
        if let Some(session_id) = closes {
            self.sessions.detach_closing(SessionId(session_id));
        }
        Ok(())
    }

    /// The write path: ACL fix-up and the size bound before the lock, then, under it, the
    /// session-owner check and the decision, handed to `submit` to be proposed for the next zxid.
    fn decide(
        &self,
        caller: &Caller<'_>,
        owner: &SessionOwner,
        write: Write,
        submit: impl FnOnce(&mut dyn FnMut(Zxid) -> Result<Vec<u8>, Rejection>) -> Result<(), Rejection>,
    ) -> Result<(), Refused> {
        // ACL fix-up and the size bound need no lock: done before the write path's is taken.
        let checked =
            Checked::new(write, caller, self.config.txn_bytes_max()).map_err(|rejection| {
                Refused {
                    rejection,
                    after: Zxid::ZERO,
                }
            })?;
        let now = now_ms();
        let applied = self.engine.last_applied();
        let mut path = self.write_path.lock();
        let epoch = self.engine.epoch();
        if path.epoch != epoch {
            path.prep = Prep::new();
            path.last_proposed = applied;
            path.epoch = epoch;
        }
        let WritePath {
            prep,
            last_proposed,
            ..
        } = &mut *path;
        if !matches!(owner, SessionOwner::None)
            && self.sessions.is_moved(SessionId(caller.session_id), owner)
        {
            return Err(Refused {
                rejection: Rejection::Error(ErrorCode::SessionMoved),
                after: Zxid::ZERO,
            });
        }
        let mut proposed = None;
        let mut build = |zxid: Zxid| {
            let tree = self.tree.read();
            prep.applied(applied);
            let txn = prep.prepare_checked(&tree, caller, &checked, zxid, now)?;
            proposed = Some(zxid);
            Ok(txn.encode())
        };
        let result = submit(&mut build);
        if let Some(zxid) = proposed {
            *last_proposed = zxid;
            if !matches!(owner, SessionOwner::None) {
                self.sessions
                    .record_proposed(SessionId(caller.session_id), zxid);
            }
        }
        result.map_err(|rejection| Refused {
            rejection,
            after: *last_proposed,
        })
    }

    /// Attaches `owner` to a live session whose password is `passwd` (see
    /// [`Sessions::resume`]) and returns the last txn the session's earlier connections
    /// proposed: the new connection must not answer a read before it is applied, or a client
    /// could miss its own write. Taken under the write path's lock, so that no write of an
    /// earlier connection is proposed after this point. `None`: gone, or a wrong password.
    pub fn resume_session(
        &self,
        id: SessionId,
        passwd: &[u8],
        timeout_ms: u64,
        owner: SessionOwner,
    ) -> Option<Zxid> {
        let password_ok = self
            .tree
            .read()
            .session(id.0)
            .is_some_and(|info| info.passwd == passwd);
        if !password_ok {
            return None;
        }
        let path = self.write_path.lock();
        // A session whose close is proposed is gone, though its client's connection may not
        // have untracked it yet.
        if path.prep.is_closing(id.0) {
            return None;
        }
        if let Some(last_proposed) = self.sessions.resume(id, timeout_ms, owner.clone()) {
            return Some(last_proposed);
        }
        // In the tree but not tracked here: this member just became leader and has not
        // adopted the tree's sessions yet. It is live: track it now.
        self.tree.read().session(id.0)?;
        self.sessions.track(id, timeout_ms, owner);
        Some(path.last_proposed)
    }

    /// Attaches `conn` to a live session through whichever member decides writes: here, or
    /// the leader (which then knows this member's connection owns it). `Ok(None)` if the
    /// session is gone (or the password is wrong); `Err(())` if no leader could be asked.
    pub async fn resume_anywhere(
        &self,
        id: SessionId,
        passwd: &[u8],
        timeout_ms: u64,
        conn: &Arc<Closing>,
    ) -> Result<Option<Zxid>, ()> {
        if self.mode().decides() {
            let owner = SessionOwner::Local(conn.clone());
            return Ok(self.resume_session(id, passwd, timeout_ms, owner));
        }
        let request = PeerRequest::Resume {
            session_id: id,
            passwd: passwd.to_vec(),
            timeout_ms,
            owner: conn.id,
        };
        match ask_leader(self, request).await {
            Some(PeerAnswer::Resumed { last_proposed }) => {
                // Tracked here too (inserted if this member lost track of it): this member
                // reports it alive while the connection lasts, and closes the connection when
                // the session ends.
                let owner = SessionOwner::Local(conn.clone());
                if self
                    .sessions
                    .resume(id, timeout_ms, owner.clone())
                    .is_none()
                {
                    self.sessions.track(id, timeout_ms, owner);
                }
                Ok(Some(last_proposed))
            }
            Some(PeerAnswer::Gone) => Ok(None),
            _ => Err(()),
        }
    }

    /// Resolves once every write committed before the call is applied here: at once where
    /// writes are decided (a connection's reads already wait for its own writes), after asking
    /// the leader on a follower. False if there is no leader to ask.
    pub async fn sync(&self) -> bool {
        if self.mode().decides() {
            // Writes acknowledged through followers may not be applied here yet.
            self.applied(self.sync_point()).await;
            return true;
        }
        match ask_leader(self, PeerRequest::Sync).await {
            Some(PeerAnswer::Synced { zxid }) => {
                self.applied(zxid).await;
                true
            }
            _ => false,
        }
    }

    /// Resolves once every txn up to `zxid` is applied to the tree.
    pub async fn applied(&self, zxid: Zxid) {
        let mut applied = self.applied.clone();
        // An error means the engine is gone; nothing more will be applied, so stop waiting.
        let _ = applied.wait_for(|last| *last >= zxid).await;
    }

    /// Takes one of the connections an address may hold, or None past the limit.
    pub fn conn_slot(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnSlot> {
        let mut per_ip = self.conns_per_ip.lock();
        let count = per_ip.entry(peer.ip()).or_insert(0);
        let max = self.config.max_connections_per_ip;
        if max != 0 && *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnSlot {
            shared: self.clone(),
            ip: peer.ip(),
            conn: None,
        })
    }

    /// The live connections, for `cons` and `stat`.
    pub fn conn_infos(&self) -> Vec<Arc<ConnInfo>> {
        let mut infos: Vec<Arc<ConnInfo>> = self.conns.lock().values().cloned().collect();
        infos.sort_by_key(|i| i.established);
        infos
    }
}

/// The write path's state: what is proposed but not yet applied.
struct WritePath {
    prep: Prep,
    last_proposed: Zxid,
    /// The epoch `prep` was built in. A member that leads a new epoch starts over from what it
    /// applied: writes it proposed in an older epoch may have been cut (TRUNC) since.
    epoch: coord_engine::Epoch,
}

/// A connection's place in the per-address count and the registry; released on drop.
pub struct ConnSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
    conn: Option<ConnId>,
}

impl ConnSlot {
    pub fn register(&mut self, id: ConnId, info: Arc<ConnInfo>) {
        self.shared.conns.lock().insert(id, info);
        self.conn = Some(id);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        if let Some(id) = self.conn {
            self.shared.conns.lock().remove(&id);
        }
        let mut per_ip = self.shared.conns_per_ip.lock();
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Server-wide counters for the four-letter words.
#[derive(Default)]
pub struct Stats {
    pub received: AtomicU64,
    latency_count: AtomicU64,
    latency_total_us: AtomicU64,
    latency_min_us: AtomicU64,
    latency_max_us: AtomicU64,
}

impl Stats {
    pub fn record_latency(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u64::MAX as u128) as u64;
        if self.latency_count.fetch_add(1, Ordering::Relaxed) == 0 {
            self.latency_min_us.store(us, Ordering::Relaxed);
        } else {
            self.latency_min_us.fetch_min(us, Ordering::Relaxed);
        }
        self.latency_total_us.fetch_add(us, Ordering::Relaxed);
        self.latency_max_us.fetch_max(us, Ordering::Relaxed);
    }

    /// (min, avg, max) request latency in milliseconds.
    pub fn latency_ms(&self) -> (f64, f64, f64) {
        let count = self.latency_count.load(Ordering::Relaxed);
        if count == 0 {
            return (0.0, 0.0, 0.0);
        }
        let total = self.latency_total_us.load(Ordering::Relaxed) as f64;
        (
            self.latency_min_us.load(Ordering::Relaxed) as f64 / 1000.0,
            total / count as f64 / 1000.0,
            self.latency_max_us.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }

    pub fn reset(&self) {
        self.received.store(0, Ordering::Relaxed);
        self.latency_count.store(0, Ordering::Relaxed);
        self.latency_total_us.store(0, Ordering::Relaxed);
        self.latency_min_us.store(0, Ordering::Relaxed);
        self.latency_max_us.store(0, Ordering::Relaxed);
    }
}

/// What the server knows about a live connection, for `cons`, `stat` and limits.
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub session_id: AtomicI64,
    pub received: AtomicU64,
    pub sent: AtomicU64,
    pub established: Instant,
    pub outbox_queued: Arc<AtomicUsize>,
    pub closing: Arc<Closing>,
}

/// Sends `request` to the leader and decodes its answer. `None` if there is no leader, the
/// leader changed, or it proposed a txn (which a request of this kind never gets).
pub async fn ask_leader(shared: &Shared, request: PeerRequest) -> Option<PeerAnswer> {
    let member = shared.engine.member()?;
    match member.forward(request.encode()).await {
        Ok(ForwardReply::Answered(answer)) => match PeerAnswer::decode(&answer) {
            Ok(answer) => Some(answer),
            Err(err) => {
                warn!(error = %err, "malformed answer from the leader");
                None
            }
        },
        Ok(ForwardReply::Applied { .. }) => None,
        Err(err) => {
            debug!(error = %err, "request to the leader failed");
            None
        }
    }
}
