//! The runtime: threads that drive the single-voter Zab core ([`crate::zab::solo::Replica`]) with
//! a real disk.
//!
//! Three threads, connected in a line:
//!
//! 1. **log** (`coord-log`): takes the proposals queued since its last flush (at most
//!    [`BATCH_TXNS_MAX`] txns or [`BATCH_BYTES_MAX`] bytes), appends them with one write and one
//!    `fdatasync` (group commit), then reports `handle_persisted` to the core and forwards the
//!    txns the core commits to the apply thread. A log I/O error is fatal: every pending and
//!    later proposal fails, because a server must not acknowledge writes it cannot persist.
//! 2. **apply** (`coord-apply`): applies committed txns to the [`StateMachine`] in zxid order
//!    and resolves each proposer's [`Proposal`] with the machine's output. Every
//!    `snapshot_every_txns` txns it takes [`StateMachine::snapshot`], a consistent cut.
//! 3. **snapshot** (`coord-snapshot`): writes snapshots while applying continues, keeps the
//!    newest [`SNAPSHOTS_RETAINED`], then rolls the log and purges the segments they cover.
//!
//! Proposers call [`Engine::propose`] from any thread; the core's lock orders them.

use std::collections::VecDeque;
use std::fs::File;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

use super::epoch::{self, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
use super::{
    drop_covered, io_err, lock_dir, remove_tmp_files, spawn, EngineError, EngineStats, Proposal,
    Waiter, BATCH_BYTES_MAX, BATCH_TXNS_MAX, SNAPSHOT_EVERY_TXNS_DEFAULT,
};
use crate::fsutil::create_dir_all_durably;
use crate::log::{Log, LogError, RECORD_PAYLOAD_MAX};
use crate::snapshot;
use crate::storage::OsStorage;
use crate::zab::solo::{Action, Replica};
use crate::{Epoch, StateMachine, Zxid};

type SnapshotReply = mpsc::SyncSender<Result<Zxid, EngineError>>;

/// How to open an [`Engine`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Holds the log segments, snapshots, epoch files and the lock file. Created if missing.
    pub data_dir: PathBuf,
    /// Take a snapshot after this many applied txns; 0 disables automatic snapshots.
    pub snapshot_every_txns: u64,
}

impl EngineConfig {
    /// A config with the default snapshot interval.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EngineConfig {
            data_dir: data_dir.into(),
            snapshot_every_txns: SNAPSHOT_EVERY_TXNS_DEFAULT,
        }
    }
}

/// What the log thread hands the apply thread.
enum ApplyMsg<T> {
    Txn {
        zxid: Zxid,
        txn: Bytes,
        waiter: Waiter<T>,
    },
    SnapshotNow(SnapshotReply),
    Stop,
}

struct SnapshotJob<S> {
    zxid: Zxid,
    snapshot: S,
    reply: Option<SnapshotReply>,
}

/// Everything proposers and the log thread share, behind one lock.
struct State<T> {
    replica: Replica,
    /// Txns the core asked to persist, not yet taken by the log thread; in zxid order.
    to_persist: VecDeque<(Zxid, Bytes)>,
    /// Proposers awaiting their txn, in zxid order: the front is the next to be applied.
    waiters: VecDeque<(Zxid, Waiter<T>)>,
    /// `None` once the log thread has stopped.
    apply_tx: Option<mpsc::Sender<ApplyMsg<T>>>,
    /// Set by shutdown: no new proposals.
    closing: bool,
    /// Set when the log failed: why. No new proposals, nothing more is written.
    failed: Option<String>,
}

impl<T> State<T> {
    /// Hands out the core's actions, in the order it yields them.
    fn drain_actions(&mut self) {
        while let Some(action) = self.replica.poll_action() {
            match action {
                Action::Persist { zxid, txn } => self.to_persist.push_back((zxid, txn)),
                // One voter: there are no followers to send COMMIT to.
                Action::Commit { .. } => {}
                Action::Apply { zxid, txn } => {
                    let Some((waiting, waiter)) = self.waiters.pop_front() else {
                        panic!("committed zxid {zxid} has no waiting proposer");
                    };
                    assert_eq!(waiting, zxid, "commit order differs from proposal order");
                    if let Some(apply_tx) = &self.apply_tx {
                        // If the apply thread is gone the waiter drops: the proposer sees ShutDown.
                        let _ = apply_tx.send(ApplyMsg::Txn { zxid, txn, waiter });
                    }
                }
            }
        }
    }

    /// Fails every waiting proposer; called once the log is unusable.
    fn fail_all(&mut self, reason: String) {
        for (_, waiter) in self.waiters.drain(..) {
            let _ = waiter.send(Err(EngineError::Failed {
                reason: reason.clone(),
            }));
        }
        self.to_persist.clear();
        self.failed = Some(reason);
    }

    /// Takes the next batch for one log flush.
    fn take_batch(&mut self) -> Vec<(Zxid, Bytes)> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while let Some((_, txn)) = self.to_persist.front() {
            let full = batch.len() >= BATCH_TXNS_MAX
                || (!batch.is_empty() && bytes + txn.len() > BATCH_BYTES_MAX);
            if full {
                break;
            }
            bytes += txn.len();
            if let Some(entry) = self.to_persist.pop_front() {
                batch.push(entry);
            }
        }
        batch
    }
}

#[derive(Default)]
struct Counters {
    last_logged: AtomicU64,
    last_applied: AtomicU64,
    txns_logged: AtomicU64,
    fsyncs: AtomicU64,
    last_fsync_nanos: AtomicU64,
    snapshots: AtomicU64,
    snapshots_in_flight: AtomicUsize,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the log thread: new txns to persist, or closing.
    work: Condvar,
    counters: Counters,
    epoch: Epoch,
}

#[derive(Default)]
struct Threads {
    log: Option<JoinHandle<()>>,
    apply: Option<JoinHandle<()>>,
    snapshot: Option<JoinHandle<()>>,
}

struct Inner<T> {
    shared: Arc<Shared<T>>,
    threads: Mutex<Threads>,
    /// The log, shared with the log thread (appends) and the snapshot thread (roll, purge).
    #[cfg_attr(not(test), allow(dead_code))]
    log: Arc<Mutex<Log>>,
    /// Holds the data dir's exclusive lock until the engine shuts down (its threads joined,
    /// nothing writes anymore), so that a process may open the dir again.
    lock: Mutex<Option<File>>,
}

impl<T> Inner<T> {
    fn shutdown(&self) {
        {
            let mut state = self.shared.state.lock();
            state.closing = true;
        }
        self.shared.work.notify_all();
        let mut threads = self.threads.lock();
        join("log", threads.log.take());
        // The log thread stops the apply thread after forwarding everything; if it never ran,
        // do that here.
        let apply_tx = self.shared.state.lock().apply_tx.take();
        if let Some(apply_tx) = apply_tx {
            let _ = apply_tx.send(ApplyMsg::Stop);
        }
        join("apply", threads.apply.take());
        // The snapshot thread ends once the apply thread has dropped its queue.
        join("snapshot", threads.snapshot.take());
        drop(self.lock.lock().take());
    }
}

impl<T> Drop for Inner<T> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn join(name: &str, handle: Option<JoinHandle<()>>) {
    if let Some(handle) = handle {
        if handle.join().is_err() {
            tracing::error!(thread = name, "engine thread panicked");
        }
    }
}

/// The durable, single-node commit path: a handle that can be cloned and shared across threads.
pub struct Engine<M: StateMachine> {
    inner: Arc<Inner<M::Output>>,
    data_dir: Arc<PathBuf>,
    _machine: PhantomData<fn(M)>,
}

impl<M: StateMachine> Clone for Engine<M> {
    fn clone(&self) -> Self {
        Engine {
            inner: Arc::clone(&self.inner),
            data_dir: Arc::clone(&self.data_dir),
            _machine: PhantomData,
        }
    }
}

impl<M: StateMachine> std::fmt::Debug for Engine<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.data_dir)
            .field("epoch", &self.inner.shared.epoch)
            .finish_non_exhaustive()
    }
}

impl<M: StateMachine> Engine<M> {
    /// Creates the dir if missing, takes an exclusive lock on it (a second server on the same
    /// dir fails with [`EngineError::Locked`]), restores the newest valid snapshot into
    /// `machine`, replays the log after it through [`StateMachine::apply`], starts a new epoch,
    /// and starts the commit threads.
    ///
    /// Start-up refuses an incomplete history: snapshot files none of which restores
    /// ([`EngineError::Snapshot`]), a log that does not continue the restored snapshot (or,
    /// without one, does not start at the first txn) or has a segment missing
    /// ([`EngineError::LogGap`]), a log that ends before the snapshot
    /// ([`EngineError::LogEndsBeforeSnapshot`]). A snapshot with no log segments at all is a
    /// complete history (the log continues from it).
    pub fn open(config: EngineConfig, mut machine: M) -> Result<Self, EngineError> {
        let dir = config.data_dir;
        create_dir_all_durably(&dir).map_err(io_err(&dir))?;
        let lock = lock_dir(&dir)?;
        remove_tmp_files(&OsStorage, &dir)?;

        let restored = snapshot::restore_newest(&OsStorage, &dir, &mut machine)?;
        let snapshot_zxid = restored.unwrap_or(Zxid::ZERO);
        let mut last_applied = snapshot_zxid;
        let mut replayed: u64 = 0;
        let mut gap = None;
        let opened = Log::open(&dir, |zxid, txn| {
            if zxid <= snapshot_zxid || gap.is_some() {
                return;
            }
            if !follows(last_applied, zxid) {
                gap = Some((last_applied, zxid));
                return;
            }
            let _output = machine.apply(zxid, txn);
            last_applied = zxid;
            replayed += 1;
        });
        let mut log = match opened {
            Ok(log) => log,
            Err(LogError::Gap { after, first, .. }) => {
                return Err(EngineError::LogGap {
                    dir,
                    after,
                    found: first,
                })
            }
            Err(err) => return Err(err.into()),
        };
        check_history(&dir, &mut log, restored)?;
        if let Some((after, found)) = gap {
            return Err(EngineError::LogGap { dir, after, found });
        }

        // Zab: a new leader's epoch exceeds every epoch it accepted or saw in its history.
        let last_logged = log.last_zxid().max(snapshot_zxid);
        let accepted = epoch::read(&OsStorage, &dir, ACCEPTED_EPOCH_FILE)?;
        let current = epoch::read(&OsStorage, &dir, CURRENT_EPOCH_FILE)?;
        let highest = accepted.max(current).max(last_logged.epoch());
        let new_epoch = highest
            .0
            .checked_add(1)
            .map(Epoch)
            .ok_or(EngineError::EpochExhausted(highest))?;
        epoch::write(&OsStorage, &dir, ACCEPTED_EPOCH_FILE, new_epoch)?;
        epoch::write(&OsStorage, &dir, CURRENT_EPOCH_FILE, new_epoch)?;
        tracing::info!(
            dir = %dir.display(),
            snapshot = %snapshot_zxid,
            replayed,
            last_zxid = %last_logged,
            epoch = new_epoch.0,
            "engine opened"
        );

        let (apply_tx, apply_rx) = mpsc::channel();
        let (snapshot_tx, snapshot_rx) = mpsc::channel();
        let counters = Counters::default();
        counters
            .last_logged
            .store(log.last_zxid().as_u64(), Ordering::Relaxed);
        counters
            .last_applied
            .store(last_applied.as_u64(), Ordering::Relaxed);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                replica: Replica::new_leader(new_epoch, last_logged),
                to_persist: VecDeque::new(),
                waiters: VecDeque::new(),
                apply_tx: Some(apply_tx),
                closing: false,
                failed: None,
            }),
            work: Condvar::new(),
            counters,
            epoch: new_epoch,
        });
        let log = Arc::new(Mutex::new(log));
        let inner = Arc::new(Inner {
            shared: Arc::clone(&shared),
            threads: Mutex::new(Threads::default()),
            log: Arc::clone(&log),
            lock: Mutex::new(Some(lock)),
        });

        // Spawned back to front; if one fails, dropping `inner` shuts down those started.
        let snapshot_thread = {
            let (shared, log, snapshot_dir) = (Arc::clone(&shared), Arc::clone(&log), dir.clone());
            spawn("coord-snapshot", &dir, move || {
                snapshot_loop::<M>(snapshot_rx, &snapshot_dir, &log, &shared)
            })?
        };
        inner.threads.lock().snapshot = Some(snapshot_thread);
        let apply_thread = {
            let shared = Arc::clone(&shared);
            let every = config.snapshot_every_txns;
            spawn("coord-apply", &dir, move || {
                apply_loop(
                    machine,
                    apply_rx,
                    snapshot_tx,
                    &shared,
                    every,
                    replayed,
                    last_applied,
                )
            })?
        };
        inner.threads.lock().apply = Some(apply_thread);
        let log_thread = {
            let shared = Arc::clone(&shared);
            spawn("coord-log", &dir, move || log_loop(&shared, &log))?
        };
        inner.threads.lock().log = Some(log_thread);

        Ok(Engine {
            inner,
            data_dir: Arc::new(dir),
            _machine: PhantomData,
        })
    }

    /// Assigns the next zxid and lets `build` produce the txn bytes for it, atomically with
    /// respect to other proposals (so proposal order = zxid order = the order `build` ran). If
    /// `build` fails, no zxid is consumed and its error is returned. The returned future
    /// resolves once the txn is fsynced and applied, with the machine's output; it resolves to
    /// an error if the engine is shut down or its log failed.
    ///
    /// `build` runs under the engine's proposal lock: keep it short and never call back into
    /// this engine from it.
    pub fn propose<E>(
        &self,
        build: impl FnOnce(Zxid) -> Result<Vec<u8>, E>,
    ) -> Result<Proposal<M::Output>, E> {
        let shared = &self.inner.shared;
        let mut state = shared.state.lock();
        if let Some(reason) = &state.failed {
            return Ok(Proposal::resolved(Err(EngineError::Failed {
                reason: reason.clone(),
            })));
        }
        if state.closing {
            return Ok(Proposal::resolved(Err(EngineError::ShutDown)));
        }
        let Some(zxid) = state.replica.next_zxid() else {
            return Ok(Proposal::resolved(Err(EngineError::ZxidExhausted(
                shared.epoch,
            ))));
        };
        let txn = build(zxid)?;
        if txn.len() > RECORD_PAYLOAD_MAX {
            return Ok(Proposal::resolved(Err(EngineError::TxnTooLarge {
                len: txn.len(),
                max: RECORD_PAYLOAD_MAX,
            })));
        }
        let proposed = state.replica.handle_propose(Bytes::from(txn));
        assert_eq!(
            proposed, zxid,
            "the core assigned a different zxid than it offered"
        );
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back((zxid, tx));
        state.drain_actions();
        drop(state);
        shared.work.notify_one();
        Ok(Proposal { rx })
    }

    /// The zxid of the last txn applied to the machine.
    pub fn last_applied(&self) -> Zxid {
        Zxid::from_u64(
            self.inner
                .shared
                .counters
                .last_applied
                .load(Ordering::Acquire),
        )
    }

    /// The epoch this server leads since it opened.
    pub fn epoch(&self) -> Epoch {
        self.inner.shared.epoch
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Counters for monitoring.
    pub fn stats(&self) -> EngineStats {
        let shared = &self.inner.shared;
        let counters = &shared.counters;
        let pending_txns = shared.state.lock().waiters.len();
        EngineStats {
            epoch: shared.epoch,
            last_zxid: Zxid::from_u64(counters.last_logged.load(Ordering::Acquire)),
            last_applied: self.last_applied(),
            txns_logged: counters.txns_logged.load(Ordering::Relaxed),
            fsyncs: counters.fsyncs.load(Ordering::Relaxed),
            last_fsync_latency: Duration::from_nanos(
                counters.last_fsync_nanos.load(Ordering::Relaxed),
            ),
            snapshots: counters.snapshots.load(Ordering::Relaxed),
            pending_txns,
        }
    }

    /// Takes a snapshot of everything applied so far and blocks until it is durable (and the
    /// log purged accordingly); returns its zxid. Do not call it from an async task.
    pub fn snapshot_now(&self) -> Result<Zxid, EngineError> {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let sent = {
            let state = self.inner.shared.state.lock();
            state
                .apply_tx
                .as_ref()
                .is_some_and(|apply_tx| apply_tx.send(ApplyMsg::SnapshotNow(reply_tx)).is_ok())
        };
        if !sent {
            return Err(EngineError::ShutDown);
        }
        reply_rx.recv().unwrap_or(Err(EngineError::ShutDown))
    }

    /// Stops accepting proposals, finishes what is queued (logged, applied, snapshots
    /// written), joins the threads. Idempotent. The dir stays locked until every handle drops.
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}

/// Checks that the snapshot restored (`None`: there were no snapshot files) and the log's
/// chained segments form one complete history:
/// - no snapshot: the log starts at the beginning (its first segment follows `Zxid::ZERO`);
/// - a snapshot and segments: the snapshot's zxid lies within the log, or the log starts
///   right after it;
/// - a snapshot and no segments: the snapshot alone is the history, and the log is made to
///   continue from it.
fn check_history(dir: &Path, log: &mut Log, restored: Option<Zxid>) -> Result<(), EngineError> {
    let snapshot_zxid = restored.unwrap_or(Zxid::ZERO);
    let Some(base) = log.base() else {
        if let Some(zxid) = restored {
            log.start_after(zxid);
        }
        return Ok(());
    };
    if base > snapshot_zxid {
        let found = log
            .segments()
            .first()
            .map_or(base, |segment| segment.first_zxid);
        return Err(EngineError::LogGap {
            dir: dir.to_path_buf(),
            after: snapshot_zxid,
            found,
        });
    }
    if log.last_zxid() < snapshot_zxid {
        return Err(EngineError::LogEndsBeforeSnapshot {
            dir: dir.to_path_buf(),
            log_last: log.last_zxid(),
            snapshot: snapshot_zxid,
        });
    }
    Ok(())
}

/// Whether `next` may directly follow `prev` in a history: the next counter of the same epoch,
/// or the first txn (counter 1) of a later epoch.
fn follows(prev: Zxid, next: Zxid) -> bool {
    prev.next() == Some(next) || (next.epoch() > prev.epoch() && next.counter() == 1)
}

/// Fails the engine if a thread dies of a panic (a bug), so proposers get an error instead of
/// waiting forever.
struct PanicGuard<'a, T> {
    shared: &'a Shared<T>,
    thread: &'static str,
}

impl<T> Drop for PanicGuard<'_, T> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        tracing::error!(
            thread = self.thread,
            "engine thread panicked; the engine stops"
        );
        // Every lock guard of the panicking thread was dropped before this one (locals drop in
        // reverse order), so this cannot deadlock.
        let apply_tx = {
            let mut state = self.shared.state.lock();
            state.fail_all(format!("the {} thread panicked", self.thread));
            state.apply_tx.take()
        };
        if let Some(apply_tx) = apply_tx {
            let _ = apply_tx.send(ApplyMsg::Stop);
        }
        self.shared.work.notify_all();
    }
}

fn log_loop<T>(shared: &Shared<T>, log: &Mutex<Log>) {
    let _guard = PanicGuard {
        shared,
        thread: "log",
    };
    loop {
        let batch = {
            let mut state = shared.state.lock();
            while state.to_persist.is_empty() && !state.closing && state.failed.is_none() {
                shared.work.wait(&mut state);
            }
            if state.to_persist.is_empty() {
                break;
            }
            state.take_batch()
        };
        let Some(&(last, _)) = batch.last() else {
            continue;
        };
        let records: Vec<(Zxid, &[u8])> =
            batch.iter().map(|(zxid, txn)| (*zxid, &txn[..])).collect();
        let started = Instant::now();
        let result = log.lock().append_batch(&records);
        let elapsed = started.elapsed();
        match result {
            Ok(()) => {
                let counters = &shared.counters;
                counters.fsyncs.fetch_add(1, Ordering::Relaxed);
                counters
                    .txns_logged
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                counters.last_fsync_nanos.store(
                    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                counters.last_logged.store(last.as_u64(), Ordering::Release);
                // Only now, after the fsync, may these txns commit.
                let mut state = shared.state.lock();
                state.replica.handle_persisted(last);
                state.drain_actions();
            }
            Err(err) => {
                tracing::error!(
                    error = %err,
                    "txn log write failed; the engine accepts no more writes"
                );
                shared.state.lock().fail_all(err.to_string());
                break;
            }
        }
    }
    // Everything committed has been forwarded: let the apply thread finish.
    let apply_tx = shared.state.lock().apply_tx.take();
    if let Some(apply_tx) = apply_tx {
        let _ = apply_tx.send(ApplyMsg::Stop);
    }
}

fn apply_loop<M: StateMachine>(
    mut machine: M,
    rx: mpsc::Receiver<ApplyMsg<M::Output>>,
    snapshot_tx: mpsc::Sender<SnapshotJob<M::Snapshot>>,
    shared: &Shared<M::Output>,
    snapshot_every_txns: u64,
    mut since_snapshot: u64,
    mut last_applied: Zxid,
) {
    let _guard = PanicGuard {
        shared,
        thread: "apply",
    };
    let counters = &shared.counters;
    let start_snapshot = |machine: &M, zxid: Zxid, reply: Option<SnapshotReply>| {
        counters.snapshots_in_flight.fetch_add(1, Ordering::AcqRel);
        let job = SnapshotJob {
            zxid,
            snapshot: machine.snapshot(),
            reply,
        };
        if snapshot_tx.send(job).is_err() {
            counters.snapshots_in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    };
    let snapshot_due = |since_snapshot: u64| {
        snapshot_every_txns > 0
            && since_snapshot >= snapshot_every_txns
            && counters.snapshots_in_flight.load(Ordering::Acquire) == 0
    };
    if snapshot_due(since_snapshot) {
        start_snapshot(&machine, last_applied, None);
        since_snapshot = 0;
    }
    while let Ok(msg) = rx.recv() {
        match msg {
            ApplyMsg::Txn { zxid, txn, waiter } => {
                assert!(
                    zxid > last_applied,
                    "apply out of order: zxid {zxid} after {last_applied}"
                );
                let output = machine.apply(zxid, &txn);
                last_applied = zxid;
                counters
                    .last_applied
                    .store(zxid.as_u64(), Ordering::Release);
                // The proposer may have given up waiting; the txn is committed regardless.
                let _ = waiter.send(Ok((zxid, output)));
                since_snapshot += 1;
                if snapshot_due(since_snapshot) {
                    start_snapshot(&machine, last_applied, None);
                    since_snapshot = 0;
                }
            }
            ApplyMsg::SnapshotNow(reply) => {
                start_snapshot(&machine, last_applied, Some(reply));
                since_snapshot = 0;
            }
            ApplyMsg::Stop => break,
        }
    }
}

fn snapshot_loop<M: StateMachine>(
    rx: mpsc::Receiver<SnapshotJob<M::Snapshot>>,
    dir: &Path,
    log: &Mutex<Log>,
    shared: &Shared<M::Output>,
) {
    while let Ok(job) = rx.recv() {
        let started = Instant::now();
        let result = persist_snapshot(dir, job.zxid, &job.snapshot, log);
        shared
            .counters
            .snapshots_in_flight
            .fetch_sub(1, Ordering::AcqRel);
        match &result {
            Ok(()) => {
                shared.counters.snapshots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    zxid = %job.zxid,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "snapshot written"
                );
            }
            Err(err) => tracing::error!(zxid = %job.zxid, error = %err, "snapshot failed"),
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(result.map(|()| job.zxid));
        }
    }
}

/// Writes a snapshot durably, then drops what it makes redundant.
fn persist_snapshot(
    dir: &Path,
    zxid: Zxid,
    snapshot: &dyn crate::Snapshot,
    log: &Mutex<Log>,
) -> Result<(), EngineError> {
    snapshot::write(&OsStorage, dir, zxid, snapshot)?;
    drop_covered(&OsStorage, dir, &mut log.lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RestoreError, Snapshot};
    use std::io;
    use std::io::{Read, Write};

    /// Counts txns; its output is the count after the txn.
    struct Counter(u64);
    struct CounterSnapshot(u64);
    impl Snapshot for CounterSnapshot {
        fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
            writer.write_all(&self.0.to_be_bytes())
        }
    }
    impl StateMachine for Counter {
        type Output = u64;
        type Snapshot = CounterSnapshot;
        fn apply(&mut self, _: Zxid, _: &[u8]) -> u64 {
            self.0 += 1;
            self.0
        }
        fn snapshot(&self) -> CounterSnapshot {
            CounterSnapshot(self.0)
        }
        fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
            let mut buf = [0; 8];
            reader.read_exact(&mut buf)?;
            self.0 = u64::from_be_bytes(buf);
            Ok(())
        }
    }

    fn open(dir: &Path) -> Engine<Counter> {
        Engine::open(
            EngineConfig {
                data_dir: dir.to_path_buf(),
                snapshot_every_txns: 0,
            },
            Counter(0),
        )
        .unwrap()
    }

    #[test]
    fn proposals_queued_during_a_flush_share_the_next_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        // Hold the log: the log thread blocks before its first flush while proposals pile up.
        let log_guard = engine.inner.log.lock();
        let proposals: Vec<_> = (0..1000)
            .map(|i| {
                engine
                    .propose(|_| Ok::<_, ()>(format!("txn {i}").into_bytes()))
                    .unwrap()
            })
            .collect();
        drop(log_guard);
        for (i, proposal) in proposals.into_iter().enumerate() {
            let (zxid, count) = proposal.wait().unwrap();
            assert_eq!(zxid, Zxid::new(Epoch(1), i as u32 + 1));
            assert_eq!(count, i as u64 + 1);
        }
        let stats = engine.stats();
        assert_eq!(stats.txns_logged, 1000);
        // At most the first txn went alone; everything queued behind it shares one flush.
        assert!(stats.fsyncs <= 2, "{stats:?}");
    }

    #[test]
    fn a_log_write_error_fails_pending_and_later_proposals() {
        let dir = tempfile::tempdir().unwrap();
        let engine = open(dir.path());
        let (zxid, _) = engine
            .propose(|_| Ok::<_, ()>(b"ok".to_vec()))
            .unwrap()
            .wait()
            .unwrap();
        engine.inner.log.lock().fail_for_test();

        let result = engine
            .propose(|_| Ok::<_, ()>(b"lost".to_vec()))
            .unwrap()
            .wait();
        assert!(
            matches!(result, Err(EngineError::Failed { .. })),
            "{result:?}"
        );
        let result = engine
            .propose(|_| Ok::<_, ()>(b"later".to_vec()))
            .unwrap()
            .wait();
        assert!(
            matches!(result, Err(EngineError::Failed { .. })),
            "{result:?}"
        );
        // Nothing unpersisted was applied.
        assert_eq!(engine.last_applied(), zxid);
        engine.shutdown();
    }

    #[test]
    fn engine_and_proposal_are_send_and_sync() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Engine<Counter>>();
        send::<Proposal<u64>>();
    }

    #[test]
    fn follows_accepts_the_next_counter_or_a_new_epoch() {
        let z = |e, c| Zxid::new(Epoch(e), c);
        assert!(follows(Zxid::ZERO, z(1, 1)));
        assert!(follows(z(1, 5), z(1, 6)));
        assert!(follows(z(1, 5), z(3, 1)));
        assert!(!follows(z(1, 5), z(1, 7)));
        assert!(!follows(z(1, 5), z(2, 2)));
    }
}
