//! Where writes go: the engine under this server, and the future a write resolves through.
//!
//! Standalone, the server's own [`Engine`] decides and commits every write. In an ensemble the
//! [`Member`] does: on the leader the write is decided here (the write path runs only on the
//! leader, as ZooKeeper's PrepRequestProcessor does); on a follower or observer it is forwarded
//! to the leader, which decides it, and the follower answers its client once it has applied
//! the txn itself, so that the client's next read here sees its write.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use coord_engine::zab::{PeerId, Role};
use coord_engine::{
    Engine, EngineError, EngineStats, Epoch, Forward, ForwardReply, Member, Proposal, Zxid,
};
use coord_znode::{Applied, Rejection};

use crate::forward::PeerAnswer;
use crate::machine::ServerMachine;

/// What this server is, as clients and four-letter words see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Standalone,
    Leader,
    Follower,
    Observer,
    /// An ensemble member with no leader it is synced with: it serves no client.
    NotServing,
}

impl Mode {
    /// ZooKeeper's name for it (`srvr`'s `Mode:`, `mntr`'s `zk_server_state`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Leader => "leader",
            Mode::Follower => "follower",
            Mode::Observer => "observer",
            Mode::NotServing => "not serving",
        }
    }

    pub fn serves(self) -> bool {
        self != Mode::NotServing
    }

    /// Whether writes are decided here.
    pub fn decides(self) -> bool {
        matches!(self, Mode::Standalone | Mode::Leader)
    }
}

/// The engine under this server.
pub enum Backend {
    Standalone(Engine<ServerMachine>),
    Member {
        member: Member<ServerMachine>,
        id: PeerId,
    },
}

impl Backend {
    pub fn mode(&self) -> Mode {
        match self {
            Backend::Standalone(_) => Mode::Standalone,
            Backend::Member { member, .. } => {
                let status = member.status();
                match status.role {
                    _ if !status.serving => Mode::NotServing,
                    Role::Leading => Mode::Leader,
                    Role::Following { .. } => Mode::Follower,
                    Role::Observing { .. } => Mode::Observer,
                    Role::Looking => Mode::NotServing,
                }
            }
        }
    }

    /// This member's id in its ensemble; 0 standalone (as ZooKeeper's server id).
    pub fn server_id(&self) -> u64 {
        match self {
            Backend::Standalone(_) => 0,
            Backend::Member { id, .. } => id.0,
        }
    }

    pub fn member(&self) -> Option<&Member<ServerMachine>> {
        match self {
            Backend::Standalone(_) => None,
            Backend::Member { member, .. } => Some(member),
        }
    }

    pub fn last_applied(&self) -> Zxid {
        match self {
            Backend::Standalone(engine) => engine.last_applied(),
            Backend::Member { member, .. } => member.last_applied(),
        }
    }

    /// Proposes a txn built for the next zxid (see [`Engine::propose`], [`Member::propose`]).
    pub fn propose<E>(
        &self,
        build: impl FnOnce(Zxid) -> Result<Vec<u8>, E>,
    ) -> Result<Proposal<Applied>, E> {
        match self {
            Backend::Standalone(engine) => engine.propose(build),
            Backend::Member { member, .. } => member.propose(build),
        }
    }

    /// The counters `mntr` shows, in the standalone engine's terms.
    pub fn stats(&self) -> EngineStats {
        match self {
            Backend::Standalone(engine) => engine.stats(),
            Backend::Member { member, .. } => {
                let stats = member.stats();
                EngineStats {
                    epoch: stats.status.epoch,
                    last_zxid: stats.last_logged.max(stats.last_applied),
                    last_applied: stats.last_applied,
                    txns_logged: stats.txns_logged,
                    fsyncs: stats.fsyncs,
                    last_fsync_latency: std::time::Duration::ZERO,
                    snapshots: stats.snapshots,
                    pending_txns: stats.pending,
                }
            }
        }
    }

    pub fn epoch(&self) -> Epoch {
        match self {
            Backend::Standalone(engine) => engine.epoch(),
            Backend::Member { member, .. } => member.status().epoch,
        }
    }

    pub async fn shutdown(&self) {
        match self {
            Backend::Standalone(engine) => {
                let engine = engine.clone();
                // Joins threads: off the async workers.
                let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
            }
            Backend::Member { member, .. } => member.shutdown().await,
        }
    }
}

/// Why a write was not committed.
#[derive(Debug)]
pub enum WriteError {
    /// The leader refused it; answer the client with the rejection.
    Refused(Refused),
    /// It could not be committed (or its outcome is unknown): the connection closes, and the
    /// client retries elsewhere.
    Engine(EngineError),
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Refused(refused) => write!(f, "refused: {:?}", refused.rejection),
            WriteError::Engine(err) => err.fmt(f),
        }
    }
}

/// A write on its way: proposed here, or forwarded to the leader.
#[derive(Debug)]
pub enum Pending {
    Local(Proposal<Applied>),
    Forward(Forward<Applied>),
    /// Failed before it went anywhere.
    Failed(Option<EngineError>),
}

impl Future for Pending {
    type Output = Result<(Zxid, Applied), WriteError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Pending::Local(proposal) => Pin::new(proposal)
                .poll(cx)
                .map(|done| done.map_err(WriteError::Engine)),
            Pending::Forward(forward) => Pin::new(forward).poll(cx).map(|done| match done {
                Ok(ForwardReply::Applied { zxid, output }) => Ok((zxid, output)),
                Ok(ForwardReply::Answered(answer)) => match PeerAnswer::decode(&answer) {
                    Ok(PeerAnswer::Refused { rejection, after }) => {
                        Err(WriteError::Refused(Refused { rejection, after }))
                    }
                    Ok(other) => Err(WriteError::Engine(EngineError::Failed {
                        reason: format!("the leader answered a write with {other:?}"),
                    })),
                    Err(err) => Err(WriteError::Engine(EngineError::Failed {
                        reason: format!("malformed answer from the leader: {err}"),
                    })),
                },
                Err(err) => Err(WriteError::Engine(err)),
            }),
            Pending::Failed(err) => Poll::Ready(Err(WriteError::Engine(
                err.take().unwrap_or(EngineError::ShutDown),
            ))),
        }
    }
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
