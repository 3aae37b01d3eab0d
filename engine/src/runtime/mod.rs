//! The runtimes that drive the Zab core with a real disk.
//!
//! - [`Engine`] (`standalone.rs`): one server alone, driving the single-voter core
//!   ([`crate::zab::solo`]) with std threads.
//! - [`Member`] (`member.rs`): one member of an ensemble, driving [`crate::zab::Replica`] with a
//!   tokio task, a [`crate::transport::Transport`] and its own threads; its data dir is
//!   `disk.rs`, the requests followers forward are `forward.rs`.
//!
//! Both keep their data the same way: log segments, snapshots, epoch files and a lock file in
//! one dir.

pub(crate) mod disk;
mod epoch;
mod forward;
mod member;
mod standalone;

use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use fs4::fs_std::FileExt;
use tokio::sync::oneshot;

pub use self::epoch::EpochError;
pub use self::member::{
    Forward, ForwardReply, Forwarded, Member, MemberConfig, MemberStats, MemberStatus,
    APPLY_BACKLOG_TXNS_MAX, DISK_BACKLOG_TXNS_MAX, FORWARDED_QUEUE_MAX, FORWARDS_PENDING_MAX,
    PROPOSALS_PENDING_MAX, SNAPSHOTS_QUEUED_MAX,
};
pub use self::standalone::{Engine, EngineConfig};
use crate::log::{Log, LogError};
use crate::snapshot::{self, SnapshotError};
use crate::storage::Storage;
use crate::{Epoch, Zxid};

/// The most txns one log flush carries.
pub const BATCH_TXNS_MAX: usize = 10_000;
/// The most payload bytes one log flush carries (a single larger txn still goes alone).
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Snapshots kept on disk; the log is kept back to the oldest of them, so a damaged newest
/// snapshot can fall back to an older one plus a longer log.
pub const SNAPSHOTS_RETAINED: usize = 3;
/// The default `snapshot_every_txns`, ZooKeeper's default `snapCount`.
pub const SNAPSHOT_EVERY_TXNS_DEFAULT: u64 = 100_000;

const LOCK_FILE: &str = "coord.lock";

/// Why the engine could not open, or could not commit a proposal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("data dir {} is locked by another coord process", dir.display())]
    Locked { dir: PathBuf },
    #[error("data dir {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Epoch(#[from] EpochError),
    /// The history is not complete: the log does not continue the restored snapshot (or, with
    /// no snapshot, does not start at the first txn), or a segment does not continue the one
    /// before it.
    #[error(
        "txn log in {} is missing txns: zxid {found} follows {after} (a deleted or lost segment?)",
        dir.display()
    )]
    LogGap {
        dir: PathBuf,
        after: Zxid,
        found: Zxid,
    },
    /// The log has segments but ends before the restored snapshot: its tail is missing.
    #[error(
        "txn log in {} ends at zxid {log_last}, before the restored snapshot at {snapshot} \
         (a deleted or lost segment?)",
        dir.display()
    )]
    LogEndsBeforeSnapshot {
        dir: PathBuf,
        log_last: Zxid,
        snapshot: Zxid,
    },
    #[error("no epoch above {0:?} is left")]
    EpochExhausted(Epoch),
    #[error("the engine is shut down")]
    ShutDown,
    /// The log could not be written; nothing more will be committed.
    #[error("the engine stopped after a txn log failure: {reason}")]
    Failed { reason: String },
    #[error("txn of {len} bytes exceeds the maximum of {max}")]
    TxnTooLarge { len: usize, max: usize },
    #[error("epoch {0:?} has used every zxid; restart the server to begin a new epoch")]
    ZxidExhausted(Epoch),
    /// The data dir holds a state the Zab core refuses to start from.
    #[error(transparent)]
    Durable(#[from] crate::zab::DurableError),
    /// Only an established leader takes proposals.
    #[error("this member is not an established leader")]
    NotLeader,
    /// The member stopped leading before the txn was applied: it may or may not commit under
    /// the next leader.
    #[error("leadership was lost before the txn committed; its outcome is unknown")]
    LeadershipLost,
    #[error("{pending} requests are pending; try again later")]
    Overloaded { pending: usize },
    /// The member is not synced with a leader: it cannot forward, and its state may be behind.
    #[error("this member is not synced with a leader")]
    NotServing,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Counters for the server's `mntr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// The epoch this server leads.
    pub epoch: Epoch,
    /// The last zxid durable in the log.
    pub last_zxid: Zxid,
    /// The last zxid applied to the machine.
    pub last_applied: Zxid,
    /// Txns written to the log since open.
    pub txns_logged: u64,
    /// Log flushes (`fdatasync` calls) since open.
    pub fsyncs: u64,
    /// How long the last log flush (write + `fdatasync`) took.
    pub last_fsync_latency: Duration,
    /// Snapshots written since open.
    pub snapshots: u64,
    /// Proposals not yet applied.
    pub pending_txns: usize,
}

type Reply<T> = Result<(Zxid, T), EngineError>;
type Waiter<T> = oneshot::Sender<Reply<T>>;

/// A proposal on its way to commit: resolves to its zxid and the machine's output once the txn
/// is durable and applied. Dropping it does not withdraw the txn.
#[derive(Debug)]
pub struct Proposal<T> {
    rx: oneshot::Receiver<Reply<T>>,
}

impl<T> Proposal<T> {
    /// Blocks the current thread until the proposal resolves.
    ///
    /// # Panics
    /// If called from within an async runtime (await the proposal there instead).
    pub fn wait(self) -> Result<(Zxid, T), EngineError> {
        self.rx
            .blocking_recv()
            .unwrap_or(Err(EngineError::ShutDown))
    }

    fn resolved(reply: Reply<T>) -> Self {
        let (tx, rx) = oneshot::channel();
        // The receiver is alive right here, so the send cannot fail.
        let _ = tx.send(reply);
        Proposal { rx }
    }
}

impl<T> Future for Proposal<T> {
    type Output = Result<(Zxid, T), EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(EngineError::ShutDown)))
    }
}

fn lock_dir(dir: &Path) -> Result<File, EngineError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match FileExt::try_lock_exclusive(&file) {
        Ok(true) => Ok(file),
        Ok(false) => Err(EngineError::Locked {
            dir: dir.to_path_buf(),
        }),
        Err(source) => Err(EngineError::Io { path, source }),
    }
}

/// Removes `*.tmp` files: writes that a crash interrupted before their rename.
fn remove_tmp_files(storage: &dyn Storage, dir: &Path) -> Result<(), EngineError> {
    for path in storage.list(dir).map_err(io_err(dir))? {
        if path.extension().is_some_and(|ext| ext == "tmp") {
            tracing::info!(file = %path.display(), "removing an unfinished file from a crash");
            storage.remove(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

fn spawn(
    name: &str,
    dir: &Path,
    body: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, EngineError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map_err(io_err(dir))
}

/// Drops snapshots beyond the newest [`SNAPSHOTS_RETAINED`], and log segments wholly before the
/// oldest snapshot kept; the log continues in a new segment.
fn drop_covered(storage: &dyn Storage, dir: &Path, log: &mut Log) -> Result<(), EngineError> {
    let oldest_kept = snapshot::retain_newest(storage, dir, SNAPSHOTS_RETAINED)?;
    log.roll();
    if let Some(oldest_kept) = oldest_kept {
        let deleted = log.purge_covered_by(oldest_kept)?;
        if !deleted.is_empty() {
            tracing::debug!(segments = deleted.len(), covered_by = %oldest_kept, "purged txn log segments");
        }
    }
    Ok(())
}
