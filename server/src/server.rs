//! The server: the engine (standalone, or a member of an ensemble) with the znode tree as its
//! machine, the client port, session expiry and the reaper of containers and TTL nodes (both run
//! only where writes are decided: standalone, or on the leader).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord_engine::zab::{self, PeerId};
use coord_engine::{Engine, EngineConfig, Member, MemberConfig, Zxid};
use coord_transport::{TcpConfig, TcpTransport};
use coord_znode::{ReapCursor, Tree, Write};
use parking_lot::{Mutex, RwLock};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::config::{Config, PeerTransport, Role};
use crate::ensemble;
use crate::ids::SessionId;
use crate::machine::ServerMachine;
use crate::sessions::{now_ms, Sessions};
use crate::shared::Shared;
use crate::watch::WatchManager;
use crate::write::Backend;

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
    #[error("peer TLS: {0}")]
    PeerTls(String),
    #[error("invalid secure_client_addr: cannot listen on {addr}: {source}")]
    SecureListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    ClientTls(String),
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
            StartError::DataDir(_)
            | StartError::Listen { .. }
            | StartError::PeerListen { .. }
            | StartError::PeerTls(_)
            | StartError::SecureListen { .. }
            | StartError::ClientTls(_) => 2,
            StartError::Engine(_) => 1,
        }
    }
}

/// The largest frame between members: a proposal of the largest txn, with room for its
/// header.
pub const PEER_FRAME_BYTES_MAX: usize = coord_engine::log::RECORD_PAYLOAD_MAX + (64 << 10);

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// The secure client port and its TLS.
    #[cfg(feature = "tls")]
    secure: Option<(TcpListener, Arc<crate::tls::ClientTls>)>,
    /// What SIGHUP reloads.
    reload: Reload,
}

/// The credentials SIGHUP reads again, and the signal.
#[derive(Default)]
struct Reload {
    hangups: Option<tokio::signal::unix::Signal>,
    /// A member over QUIC: its peer credentials, and from where.
    #[cfg(feature = "quic")]
    peer: Option<(coord_transport::QuicReload, crate::config::QuicTls)>,
    #[cfg(feature = "tls")]
    clients: Option<Arc<crate::tls::ClientTls>>,
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
        let mut reload = Reload::default();
        // Listening for SIGHUP before the (possibly long) recovery, wherever there are
        // credentials to reload: its default action would end the server.
        let quic = matches!(
            config.ensemble.as_ref().map(|e| &e.transport),
            Some(PeerTransport::Quic(_))
        );
        if quic || config.client_tls.is_some() {
            reload.hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        }
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
                    sessions.recover(
                        SessionId(id),
                        Duration::from_millis(info.timeout_ms.max(0) as u64),
                    );
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
                    compacted_tail_txns: coord_engine::zab::COMPACTED_TAIL_TXNS_DEFAULT,
                };
                let member_config = MemberConfig {
                    data_dir: config.data_dir.clone(),
                    snapshot_every_txns: config.snapshot_every_txns,
                    zab,
                };
                let peer_listen = |source| StartError::PeerListen {
                    addr: me.peer_addr,
                    source,
                };
                let member = match &ensemble.transport {
                    PeerTransport::Tcp => {
                        let mut tcp = TcpConfig::new(PeerId(ensemble.id), me.peer_addr, peers);
                        // The largest message is a proposal of the largest txn (snapshots
                        // travel in chunks); a frame's length is checked before its buffer is
                        // allocated.
                        tcp.frame_bytes_max = PEER_FRAME_BYTES_MAX;
                        let transport = TcpTransport::bind(tcp).await.map_err(peer_listen)?;
                        Member::open(member_config, machine, transport)?
                    }
                    #[cfg(feature = "quic")]
                    PeerTransport::Quic(tls) => {
                        use coord_transport::tls::Credentials;
                        use coord_transport::{QuicConfig, QuicError, QuicTransport};
                        let credentials = Credentials::load(&tls.ca, &tls.cert, &tls.key)
                            .map_err(|e| StartError::PeerTls(e.to_string()))?;
                        let mut quic = QuicConfig::new(
                            PeerId(ensemble.id),
                            tls.name.clone(),
                            me.peer_addr,
                            peers,
                            credentials,
                        );
                        quic.frame_bytes_max = PEER_FRAME_BYTES_MAX;
                        let transport = QuicTransport::bind(quic).await.map_err(|e| match e {
                            QuicError::Listen { source, .. } => peer_listen(source),
                            other => StartError::PeerTls(other.to_string()),
                        })?;
                        reload.peer = Some((transport.reloader(), tls.clone()));
                        Member::open(member_config, machine, transport)?
                    }
                    #[cfg(not(feature = "quic"))]
                    PeerTransport::Quic(_) => {
                        return Err(StartError::PeerTls(
                            "this coord was built without QUIC".into(),
                        ))
                    }
                };
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
        #[cfg(feature = "tls")]
        let secure = match (config.secure_client_addr, &config.client_tls) {
            (Some(addr), Some(settings)) => {
                let tls = Arc::new(
                    crate::tls::ClientTls::load(settings)
                        .map_err(|e| StartError::ClientTls(e.to_string()))?,
                );
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::SecureListen { addr, source })?;
                reload.clients = Some(tls.clone());
                Some((listener, tls))
            }
            _ => None,
        };
        #[cfg(not(feature = "tls"))]
        if config.secure_client_addr.is_some() {
            return Err(StartError::ClientTls(
                "this coord was built without client TLS".into(),
            ));
        }
        let shared = Arc::new(Shared::new(
            config, tree, watches, applied, engine, sessions,
        ));
        Ok(Server {
            shared,
            listener,
            #[cfg(feature = "tls")]
            secure,
            reload,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the secure client port listens, if there is one.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "tls")]
        if let Some((listener, _)) = &self.secure {
            return listener.local_addr().ok();
        }
        None
    }

    /// Serves clients until `shutdown` resolves.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let Server {
            shared,
            listener,
            #[cfg(feature = "tls")]
            secure,
            reload,
        } = self;
        #[cfg(feature = "tls")]
        let (secure_listener, client_tls) = match secure {
            Some((listener, tls)) => {
                info!(
                    addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                    client_auth = ?tls.settings().client_auth,
                    "secure client port (TLS) listening"
                );
                (Some(listener), Some(tls))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "tls"))]
        let (secure_listener, client_tls): (Option<TcpListener>, Option<SecureTls>) = (None, None);
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
        if reload.hangups.is_some() {
            tasks.push(tokio::spawn(reload_on_hangup(reload)));
        }
        if shared.engine.member().is_some() {
            tasks.push(tokio::spawn(ensemble::decide_forwarded(shared.clone())));
            tasks.push(tokio::spawn(ensemble::report_sessions(
                shared.clone(),
                expiry_period(&shared.config),
            )));
            tasks.push(tokio::spawn(ensemble::follow_status(shared.clone())));
        }
        // Connections are kept in a set so that stopping ends them too: an embedded server
        // that stops must not go on answering reads from a tree nobody writes anymore, nor
        // keep its data dir locked.
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(crate::conn::serve(shared.clone(), stream, peer));
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                accepted = accept_secure(&secure_listener), if secure_listener.is_some() => {
                    match accepted {
                        Ok((stream, peer)) => {
                            serve_secure(&mut connections, &shared, &client_tls, stream, peer);
                        }
                        Err(e) => {
                            warn!(error = %e, "accept failed on the secure client port");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                // Reaps finished connections, so the set holds only live ones.
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = &mut shutdown => {
                    info!("shutting down");
                    break;
                }
            }
        }
        drop(listener);
        #[cfg(feature = "tls")]
        drop(secure_listener);
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        shared.engine.shutdown().await;
    }
}

/// On SIGHUP, reads the TLS files (a member's peer credentials, the secure client port's)
/// again and puts them in use for new connections, so that certificates rotate without a
/// restart. Files that are not valid credentials change nothing: the old ones stay in use, and
/// the log says why.
async fn reload_on_hangup(mut reload: Reload) {
    let Some(mut hangups) = reload.hangups.take() else {
        return;
    };
    while hangups.recv().await.is_some() {
        #[cfg(feature = "quic")]
        if let Some((peer, tls)) = &reload.peer {
            use coord_transport::tls::Credentials;
            let loaded = Credentials::load(&tls.ca, &tls.cert, &tls.key)
                .and_then(|credentials| peer.reload(credentials));
            match loaded {
                Ok(()) => {
                    info!(cert = %tls.cert.display(), "SIGHUP: peer TLS credentials reloaded")
                }
                Err(e) => warn!(
                    "SIGHUP: peer TLS credentials not reloaded, the old ones stay in use: {e}"
                ),
            }
        }
        #[cfg(feature = "tls")]
        if let Some(clients) = &reload.clients {
            match clients.reload() {
                Ok(()) => info!(
                    cert = %clients.settings().cert.display(),
                    "SIGHUP: client TLS credentials reloaded"
                ),
                Err(e) => warn!(
                    "SIGHUP: client TLS credentials not reloaded, the old ones stay in use: {e}"
                ),
            }
        }
    }
}

#[cfg(feature = "tls")]
type SecureTls = Arc<crate::tls::ClientTls>;
/// Without the `tls` feature there is no secure port (the configuration refuses one).
#[cfg(not(feature = "tls"))]
type SecureTls = ();

fn serve_secure(
    connections: &mut tokio::task::JoinSet<()>,
    shared: &Arc<Shared>,
    tls: &Option<SecureTls>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    #[cfg(feature = "tls")]
    if let Some(tls) = tls {
        connections.spawn(crate::secure::serve(
            shared.clone(),
            stream,
            peer,
            tls.clone(),
        ));
    }
    #[cfg(not(feature = "tls"))]
    let _ = (connections, shared, tls, stream, peer);
}

/// The next connection on the secure client port; pending forever without one.
async fn accept_secure(
    listener: &Option<TcpListener>,
) -> std::io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
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
                    session = %id,
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
            let sessions: Vec<(SessionId, i32)> = shared
                .tree
                .read()
                .sessions()
                .map(|(id, info)| (SessionId(id), info.timeout_ms))
                .collect();
            shared.sessions.adopt(&sessions);
            shared.sessions.renew_all().await;
            leading_epoch = Some(epoch);
            continue;
        }
        // Every expiry is proposed before any is awaited, so they share one group commit.
        let mut proposals = Vec::new();
        for id in shared.sessions.take_expired(Instant::now()) {
            info!(session = %id, "session expired");
            let write = Write::CloseSession { session_id: id.0 };
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
                let timeout = shared.tree.read().session(id.0).map(|info| info.timeout_ms);
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
            if let Ok(proposal) = shared.propose(&[], true, SessionId::NONE, None, write) {
                match proposal.await {
                    Ok(_) => debug!(%path, "reaped"),
                    Err(e) => warn!(error = %e, "could not persist a reap"),
                }
            }
        }
    }
}
