//! The server: the engine (standalone, or a member of an ensemble) with the znode tree as its
//! machine, the client port, session expiry and the reaper of containers and TTL nodes (both run
//! only where writes are decided: standalone, or on the leader).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use coord_engine::zab::{self, PeerId};
use coord_engine::{Engine, EngineConfig, Forwarded, Member, MemberConfig, Zxid};
use coord_proto::{ErrorCode, Id};
use coord_transport::{TcpConfig, TcpTransport};
use coord_znode::{Caller, Checked, Prep, ReapCursor, Rejection, RemoteWrite, Tree, Write};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::conn::{Closing, ConnId, ConnInfo};
use crate::ensemble::{self, PeerRequest, Role};
use crate::machine::ServerMachine;
use crate::sessions::{SessionOwner, Sessions};
use crate::watch::WatchManager;
use crate::write::{Backend, Mode, Pending};

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

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid data_dir: {0}")]
    DataDir(String),
    #[error("invalid client_addr: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Engine(coord_engine::EngineError),
    #[error("invalid ensemble.servers: cannot listen on peer_addr {addr}: {source}")]
    PeerListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

impl From<coord_engine::EngineError> for StartError {
    fn from(e: coord_engine::EngineError) -> Self {
        match e {
            // Another server holds the dir, or it cannot be read or written: a configuration
            // problem. Bad data in it is not, and keeps its own message.
            coord_engine::EngineError::Locked { .. } | coord_engine::EngineError::Io { .. } => {
                StartError::DataDir(e.to_string())
            }
            e => StartError::Engine(e),
        }
    }
}

impl StartError {
    /// Configuration problems exit with 2; a refusal to start on bad data with 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::DataDir(_) | StartError::Listen { .. } | StartError::PeerListen { .. } => 2,
            StartError::Engine(_) => 1,
        }
    }
}

/// A write request's cost against the server-wide budget of writes proposed and not yet
/// resolved (`max_pending_write_bytes`): its size in KiB, at least 1, at most all of it.
pub fn write_budget_units(frame_len: usize, budget_units: u32) -> u32 {
    u32::try_from(frame_len / 1024 + 1)
        .unwrap_or(u32::MAX)
        .min(budget_units)
}

/// Milliseconds since the Unix epoch: the clock of ctime, mtime and TTLs.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        session_id: i64,
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
                    session_id,
                    is_super,
                    ids: ids.to_vec(),
                    write,
                },
            };
            return Ok(Pending::Forward(member.forward(request.encode())));
        }
        let caller = Caller {
            session_id,
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
                *session_id,
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
            self.sessions.detach_closing(session_id);
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
        if !matches!(owner, SessionOwner::None) && self.sessions.is_moved(caller.session_id, owner)
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
                self.sessions.record_proposed(caller.session_id, zxid);
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
        id: i64,
        passwd: &[u8],
        timeout_ms: u64,
        owner: SessionOwner,
    ) -> Option<Zxid> {
        let password_ok = self
            .tree
            .read()
            .session(id)
            .is_some_and(|info| info.passwd == passwd);
        if !password_ok {
            return None;
        }
        let path = self.write_path.lock();
        // A session whose close is proposed is gone, though its client's connection may not
        // have untracked it yet.
        if path.prep.is_closing(id) {
            return None;
        }
        if let Some(last_proposed) = self.sessions.resume(id, timeout_ms, owner.clone()) {
            return Some(last_proposed);
        }
        // In the tree but not tracked here: this member just became leader and has not
        // adopted the tree's sessions yet. It is live: track it now.
        self.tree.read().session(id)?;
        self.sessions.track(id, timeout_ms, owner);
        Some(path.last_proposed)
    }

    /// Attaches `conn` to a live session through whichever member decides writes: here, or
    /// the leader (which then knows this member's connection owns it). `Ok(None)` if the
    /// session is gone (or the password is wrong); `Err(())` if no leader could be asked.
    pub async fn resume_anywhere(
        &self,
        id: i64,
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
        match ensemble::ask_leader(self, request).await {
            Some(ensemble::PeerAnswer::Resumed { last_proposed }) => {
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
            Some(ensemble::PeerAnswer::Gone) => Ok(None),
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
        match ensemble::ask_leader(self, PeerRequest::Sync).await {
            Some(ensemble::PeerAnswer::Synced { zxid }) => {
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

/// A write the write path refused, without logging it (ZooKeeper logs an error txn instead).
#[derive(Debug)]
pub struct Refused {
    pub rejection: Rejection,
    /// The last txn proposed when the write was decided. The refusal may rest on it (say,
    /// NodeExists for a node whose create is still being fsynced), so the client is answered only
    /// once it is applied: it then sees that state in every later read, as it would in ZooKeeper.
    pub after: Zxid,
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

/// The largest frame between members: a proposal of the largest txn, with room for its
/// header.
pub const PEER_FRAME_BYTES_MAX: usize = coord_engine::log::RECORD_PAYLOAD_MAX + (64 << 10);

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
}

impl Server {
    /// Opens the data dir (recovering snapshot and log) and binds the client port; in an
    /// ensemble also the peer port, and the member starts looking for a leader.
    pub async fn start(config: Config) -> Result<Server, StartError> {
        check_data_dir(&config.data_dir)?;
        let tree = Arc::new(RwLock::new(Tree::new()));
        let watches = Arc::new(Mutex::new(WatchManager::default()));
        let server_id = config.ensemble.as_ref().map_or(0, |e| e.id);
        let sessions = Arc::new(Sessions::new(expiry_period(&config), server_id));
        let (applied_tx, applied) = tokio::sync::watch::channel(Zxid::ZERO);
        let machine =
            ServerMachine::new(tree.clone(), watches.clone(), applied_tx, sessions.clone());
        let engine = match &config.ensemble {
            None => {
                let engine = Engine::open(
                    EngineConfig {
                        data_dir: config.data_dir.clone(),
                        snapshot_every_txns: config.snapshot_every_txns,
                    },
                    machine,
                )?;
                // Sessions recovered from disk get a full timeout to come back, as in ZooKeeper.
                for (id, info) in tree.read().sessions() {
                    sessions.recover(id, Duration::from_millis(info.timeout_ms.max(0) as u64));
                }
                Backend::Standalone(engine)
            }
            Some(ensemble) => {
                let me = ensemble.me().ok_or_else(|| {
                    StartError::DataDir("ensemble.id is not among ensemble.servers".into())
                })?;
                let peers = ensemble
                    .servers
                    .iter()
                    .filter(|s| s.id != ensemble.id)
                    .map(|s| (PeerId(s.id), s.peer_addr))
                    .collect();
                let mut tcp = TcpConfig::new(PeerId(ensemble.id), me.peer_addr, peers);
                // The largest message is a proposal of the largest txn (snapshots travel in
                // chunks); a frame's length is checked before its buffer is allocated.
                tcp.frame_bytes_max = PEER_FRAME_BYTES_MAX;
                let transport =
                    TcpTransport::bind(tcp)
                        .await
                        .map_err(|source| StartError::PeerListen {
                            addr: me.peer_addr,
                            source,
                        })?;
                let zab = zab::Config {
                    id: PeerId(ensemble.id),
                    voters: ensemble
                        .servers
                        .iter()
                        .filter(|s| s.role == Role::Participant)
                        .map(|s| PeerId(s.id))
                        .collect(),
                    observers: ensemble
                        .servers
                        .iter()
                        .filter(|s| s.role == Role::Observer)
                        .map(|s| PeerId(s.id))
                        .collect(),
                    tick: Duration::from_millis(config.tick_ms),
                    init_limit_ticks: ensemble.init_limit_ticks,
                    sync_limit_ticks: ensemble.sync_limit_ticks,
                    // Well within the transport's queue of 4096 frames per peer.
                    diff_txns_max: zab::DIFF_TXNS_MAX_DEFAULT,
                    diff_bytes_max: coord_engine::zab::DIFF_BYTES_MAX_DEFAULT,
                };
                let member = Member::open(
                    MemberConfig {
                        data_dir: config.data_dir.clone(),
                        snapshot_every_txns: config.snapshot_every_txns,
                        zab,
                    },
                    machine,
                    transport,
                )?;
                Backend::Member {
                    member,
                    id: PeerId(ensemble.id),
                }
            }
        };
        let listener = TcpListener::bind(config.client_addr)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.client_addr,
                source,
            })?;
        let write_budget_units = config.write_budget_units();
        let shared = Arc::new(Shared {
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
        });
        Ok(Server { shared, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server { shared, listener } = self;
        let addr = listener.local_addr().ok();
        match &shared.config.ensemble {
            None => info!(
                "coord listening on {} (standalone), data in {}, last zxid 0x{:x}",
                addr.map(|a| a.to_string()).unwrap_or_default(),
                shared.config.data_dir.display(),
                shared.last_zxid()
            ),
            Some(ensemble) => info!(
                "coord listening on {} (member {} of {}), data in {}",
                addr.map(|a| a.to_string()).unwrap_or_default(),
                ensemble.id,
                ensemble.servers.len(),
                shared.config.data_dir.display(),
            ),
        }
        let mut tasks = vec![
            tokio::spawn(expire_sessions(shared.clone())),
            tokio::spawn(reap(shared.clone())),
        ];
        if shared.engine.member().is_some() {
            tasks.push(tokio::spawn(ensemble::decide_forwarded(shared.clone())));
            tasks.push(tokio::spawn(ensemble::report_sessions(
                shared.clone(),
                expiry_period(&shared.config),
            )));
            tasks.push(tokio::spawn(ensemble::follow_status(shared.clone())));
        }
        let accept = async {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(crate::conn::serve(shared.clone(), stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        };
        tokio::select! {
            () = accept => {}
            () = shutdown => info!("shutting down"),
        }
        for task in tasks {
            task.abort();
        }
        shared.engine.shutdown().await;
    }
}

fn check_data_dir(dir: &std::path::Path) -> Result<(), StartError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| StartError::DataDir(format!("cannot create {}: {e}", dir.display())))?;
    let probe = dir.join(".coord-write-probe");
    std::fs::write(&probe, b"probe")
        .map_err(|e| StartError::DataDir(format!("cannot write in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// How often expired sessions are looked for, and the granularity of session deadlines.
fn expiry_period(config: &Config) -> Duration {
    Duration::from_millis((config.tick_ms / 2).clamp(10, 1000))
}

async fn expire_sessions(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(expiry_period(&shared.config));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leading_epoch = None;
    loop {
        interval.tick().await;
        if !shared.mode().decides() {
            leading_epoch = None;
            // Followers report the sessions their clients keep alive (ensemble::report_sessions).
            shared
                .sessions
                .set_reporting(shared.engine.member().is_some());
            // A follower's sessions are the leader's to expire; it only closes its own
            // connections whose clients went silent (their sessions expire at the leader).
            for id in shared.sessions.close_silent(Instant::now()) {
                debug!(
                    session = format_args!("0x{id:x}"),
                    "closed a silent client's connection"
                );
            }
            continue;
        }
        shared.sessions.set_reporting(false);
        let epoch = shared.engine.epoch();
        if leading_epoch != Some(epoch) {
            // A new leader: followers' reports did not reach it, so every session gets a full
            // timeout from now, as ZooKeeper's new leader gives them; and every session of
            // the tree is tracked, whatever this member knew of it before.
            let sessions: Vec<(i64, i32)> = shared
                .tree
                .read()
                .sessions()
                .map(|(id, info)| (id, info.timeout_ms))
                .collect();
            shared.sessions.adopt(&sessions);
            shared.sessions.renew_all().await;
            leading_epoch = Some(epoch);
            continue;
        }
        // Every expiry is proposed before any is awaited, so they share one group commit.
        let mut proposals = Vec::new();
        for id in shared.sessions.take_expired(Instant::now()) {
            info!(session = format_args!("0x{id:x}"), "session expired");
            let write = Write::CloseSession { session_id: id };
            match shared.propose(&[], true, id, None, write) {
                Ok(proposal) => proposals.push((id, proposal)),
                Err(refused) => {
                    debug!(rejection = ?refused.rejection, "session already closed");
                }
            }
        }
        for (id, proposal) in proposals {
            if let Err(e) = proposal.await {
                warn!(error = %e, "could not persist session expiry; it will be retried");
                // Still in the tree: tracked again, so that it expires later (here or at the
                // next leader).
                let timeout = shared.tree.read().session(id).map(|info| info.timeout_ms);
                if let Some(timeout_ms) = timeout {
                    shared.sessions.adopt(&[(id, timeout_ms)]);
                }
            }
        }
    }
}

/// Containers and TTL nodes the reaper looks at per hold of the tree's read lock.
const REAP_SCAN_MAX: usize = 1024;

async fn reap(shared: Arc<Shared>) {
    let mut interval = tokio::time::interval(Duration::from_millis(shared.config.reap_interval_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if !shared.mode().decides() {
            continue;
        }
        // In parts, so that the tree's read lock, which the apply thread waits for, is held
        // for at most REAP_SCAN_MAX nodes at a time however many containers there are.
        let now = now_ms();
        let mut candidates = Vec::new();
        let mut cursor = ReapCursor::default();
        loop {
            let (page, next) = shared
                .tree
                .read()
                .reap_candidates_page(now, &cursor, REAP_SCAN_MAX);
            candidates.extend(page);
            match next {
                Some(next) => cursor = next,
                None => break,
            }
            tokio::task::yield_now().await;
        }
        for path in candidates {
            let write = Write::Reap { path: path.clone() };
            // A rejection means something changed since the candidate was chosen: it no longer
            // qualifies.
            if let Ok(proposal) = shared.propose(&[], true, 0, None, write) {
                match proposal.await {
                    Ok(_) => debug!(%path, "reaped"),
                    Err(e) => warn!(error = %e, "could not persist a reap"),
                }
            }
        }
    }
}
