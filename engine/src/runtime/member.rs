//! [`Member`]: one member of a replicated ensemble, driving the Zab core
//! ([`crate::zab::Replica`]) with a real disk and a [`Transport`].
//!
//! # Tasks and threads
//!
//! - **The driver** (a tokio task) owns the transport and is the only one that drains the
//!   core's actions, so they are carried out in the order the core yields them. It feeds the
//!   core transport events, clock ticks and the notices below; proposers feed it
//!   [`Member::propose`] under the core's lock and wake it. Sends go straight to the transport
//!   (which never blocks); disk work goes to the disk thread in order; applies go to the apply
//!   thread in order. A TRUNC, a SNAP install and a snapshot for a lagging learner are waited
//!   for before the next action runs, as the core requires.
//! - **The disk thread** (`coord-disk`) carries out appends (consecutive ones as one group
//!   commit: one write, one `fdatasync`), epoch writes, truncations and snapshot installs, in
//!   order, and reports each as durable. A disk error stops the member: it must not acknowledge
//!   what it cannot persist.
//! - **The apply thread** (`coord-apply`) applies committed txns to the [`StateMachine`] in
//!   zxid order, resolves the proposer of each (if it was proposed here), serializes snapshots
//!   for lagging learners, and restores a leader's snapshot.
//! - **The snapshot thread** (`coord-snapshot`) writes this member's own snapshots every
//!   `snapshot_every_txns` applied txns, then tells the core it may forget the txns they cover.
//!
//! # Forwarding
//!
//! A learner sends a request it cannot decide to the leader with [`Member::forward`]. The
//! leader's application takes it from [`Member::take_forwarded`] and either proposes a txn for
//! it ([`Member::propose_forwarded`]) or answers it ([`Member::answer_forwarded`]). A proposed
//! request resolves at the learner once the learner has applied that txn itself, with the
//! output of its own machine: it then reflects the write, as its clients expect. See
//! `forward.rs` for why the learner cannot miss its txn.
//!
//! # Bounds
//!
//! The driver stops reading from the transport while more than [`DISK_BACKLOG_TXNS_MAX`] txns
//! wait for the disk or more than [`APPLY_BACKLOG_TXNS_MAX`] wait to be applied; TCP then pushes
//! back on the leader, whose send queue for this member fills and resets the stream (the member
//! re-syncs). A leader refuses proposals past [`PROPOSALS_PENDING_MAX`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc as tmpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::disk::Disk;
use super::forward::{Forwarding, Refusal, FIRST_TAG};
use super::{spawn, EngineError, Proposal, Waiter, BATCH_BYTES_MAX, BATCH_TXNS_MAX};
use crate::log::RECORD_PAYLOAD_MAX;
use crate::transport::{Event, Stream, Transport};
use crate::zab::{self, Action, EpochFile, Message, PeerId, ProposeError, Replica, Role};
use crate::{Epoch, Snapshot, StateMachine, Zxid};

/// Txns appended by the core and not yet durable, past which the driver stops reading peers.
pub const DISK_BACKLOG_TXNS_MAX: u64 = 100_000;
/// Committed txns not yet applied, past which the driver stops reading peers.
pub const APPLY_BACKLOG_TXNS_MAX: u64 = 100_000;
/// Proposals a leader holds that are not yet applied; past it [`Member::propose`] refuses.
pub const PROPOSALS_PENDING_MAX: usize = 100_000;
/// Requests this member forwarded that its leader has not decided yet; past it
/// [`Member::forward`] refuses.
pub const FORWARDS_PENDING_MAX: usize = 100_000;
/// Forwarded requests a leader queues for its application; past it they are refused
/// ([`EngineError::Overloaded`] at the learner).
pub const FORWARDED_QUEUE_MAX: usize = 10_000;

/// How to open a [`Member`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberConfig {
    /// Holds the log, snapshots, epoch files and the lock file. Created if missing.
    pub data_dir: PathBuf,
    /// Take a snapshot after this many applied txns; 0 disables automatic snapshots.
    pub snapshot_every_txns: u64,
    /// Who is in the ensemble, and the timing.
    pub zab: zab::Config,
}

/// Where a member stands, as its users need to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStatus {
    pub role: Role,
    /// The epoch this member last joined (currentEpoch).
    pub epoch: Epoch,
    /// Whether it may serve clients: it leads an established epoch, or a leader has told it
    /// that it is up to date. See [`Replica::is_serving`].
    pub serving: bool,
    /// Set once the member stopped for good (a disk failure, or shut down).
    pub stopped: bool,
}

/// Counters for monitoring (the server's `mntr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberStats {
    pub status: MemberStatus,
    /// The last txn durable in this member's log.
    pub last_logged: Zxid,
    pub last_applied: Zxid,
    /// Txns written to the log since open.
    pub txns_logged: u64,
    /// Log flushes (`fdatasync` calls) since open.
    pub fsyncs: u64,
    /// Snapshots written since open.
    pub snapshots: u64,
    /// Proposals and forwarded requests waiting here.
    pub pending: usize,
    /// On the leader, its learners.
    pub learners: Option<zab::Learners>,
}

/// How a forwarded request was decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardReply<T> {
    /// The leader proposed a txn for it; it committed and this member applied it.
    Applied { zxid: Zxid, output: T },
    /// The leader answered without a txn.
    Answered(Bytes),
}

type ForwardWaiter<T> = oneshot::Sender<Result<ForwardReply<T>, EngineError>>;

/// A forwarded request on its way: resolves to how the leader decided it.
#[derive(Debug)]
pub struct Forward<T> {
    rx: oneshot::Receiver<Result<ForwardReply<T>, EngineError>>,
}

impl<T> Forward<T> {
    fn resolved(reply: Result<ForwardReply<T>, EngineError>) -> Self {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(reply);
        Forward { rx }
    }
}

impl<T> Future for Forward<T> {
    type Output = Result<ForwardReply<T>, EngineError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|reply| reply.unwrap_or(Err(EngineError::ShutDown)))
    }
}

/// A request a member forwarded to this leader, for the application to decide with
/// [`Member::propose_forwarded`] or [`Member::answer_forwarded`]. One dropped undecided leaves
/// its sender waiting until the leadership changes.
#[derive(Debug)]
pub struct Forwarded {
    /// The member it came from, as the transport identified it (this member for a request
    /// forwarded by itself).
    pub origin: PeerId,
    pub request: Bytes,
    id: u64,
}

/// Who waits for a txn to be applied here.
enum Pending<T> {
    /// A proposal made on this member.
    Proposal(Waiter<T>),
    /// A request this member forwarded, which the leader proposed.
    Forward(ForwardWaiter<T>),
}

impl<T> Pending<T> {
    fn resolve(self, zxid: Zxid, output: T) {
        let _ = match self {
            Pending::Proposal(waiter) => waiter.send(Ok((zxid, output))).map_err(drop),
            Pending::Forward(waiter) => waiter
                .send(Ok(ForwardReply::Applied { zxid, output }))
                .map_err(drop),
        };
    }

    fn fail(self, err: EngineError) {
        let _ = match self {
            Pending::Proposal(waiter) => waiter.send(Err(err)).map_err(drop),
            Pending::Forward(waiter) => waiter.send(Err(err)).map_err(drop),
        };
    }
}

/// What the disk and snapshot threads tell the driver.
enum Notice {
    Persisted {
        generation: u64,
        zxid: Zxid,
        txns: u64,
    },
    EpochPersisted(EpochFile, Epoch),
    Compacted(Zxid),
    /// A snapshot for learner `peer` (request `seq`) is serialized.
    Serialized {
        peer: PeerId,
        seq: u64,
        result: Result<Bytes, String>,
    },
    Failed(String),
}

enum DiskJob {
    Append {
        zxid: Zxid,
        txn: Bytes,
        generation: u64,
    },
    Epoch(EpochFile, Epoch),
    TrustLog,
    Truncate {
        to: Zxid,
        done: oneshot::Sender<Result<Zxid, String>>,
    },
    Install {
        zxid: Zxid,
        data: Bytes,
        done: oneshot::Sender<Result<(), String>>,
    },
    Stop,
}

enum ApplyJob<T> {
    Txn {
        zxid: Zxid,
        txn: Bytes,
        waiter: Option<Pending<T>>,
    },
    /// Serialize the machine (at exactly what was applied before this job) for `peer`.
    Serialize {
        zxid: Zxid,
        peer: PeerId,
        seq: u64,
    },
    Restore {
        zxid: Zxid,
        data: Bytes,
        done: oneshot::Sender<Result<(), String>>,
    },
    Stop,
}

struct SnapshotJob<S> {
    zxid: Zxid,
    snapshot: S,
}

/// What proposers and the driver share under one lock.
struct Core<T> {
    replica: Replica,
    /// Who waits for which txn to be applied here, until it is or the leadership changes.
    waiters: BTreeMap<Zxid, Pending<T>>,
    /// Requests forwarded to the leader and not yet decided, by request id.
    forwards: HashMap<u64, ForwardWaiter<T>>,
    next_forward_id: u64,
    /// The runtime's own messages, sent before the core's next actions: a `Proposed` goes out
    /// ahead of the proposal it announces.
    sends: VecDeque<(PeerId, Forwarding)>,
    stopped: Option<String>,
}

impl<T> Core<T> {
    /// Fails everything waiting: on a role change, the outcome of what was not applied is
    /// unknown (it may still commit under the next leader).
    fn fail_waiters(&mut self, err: impl Fn() -> EngineError) {
        for (_, pending) in std::mem::take(&mut self.waiters) {
            pending.fail(err());
        }
        for (_, waiter) in self.forwards.drain() {
            let _ = waiter.send(Err(err()));
        }
    }

    fn leads(&self) -> bool {
        self.replica.role() == Role::Leading && self.replica.is_serving()
    }
}

struct Shared<T> {
    core: Mutex<Core<T>>,
    /// Wakes the driver: a proposal added actions.
    wake: Notify,
    status: watch::Sender<MemberStatus>,
    applied: watch::Sender<Zxid>,
    /// Txns sent to the disk thread, and those it reported durable.
    disk_sent: AtomicU64,
    disk_done: AtomicU64,
    /// Txns sent to the apply thread, and those it applied.
    apply_sent: AtomicU64,
    apply_done: AtomicU64,
    last_logged: AtomicU64,
    fsyncs: AtomicU64,
    snapshots: AtomicU64,
    /// Set while this member leads and has applied what it committed when established.
    leader_ready: std::sync::atomic::AtomicBool,
    /// Nonzero: the apply thread wakes the driver once it has applied this zxid.
    wake_at_applied: AtomicU64,
}

/// A handle to one member of an ensemble: propose on the leader, watch the role, await
/// applies. Clone it freely; [`Member::shutdown`] stops it.
pub struct Member<M: StateMachine> {
    shared: Arc<Shared<M::Output>>,
    forwarded: Arc<ForwardQueue>,
    stop: Arc<watch::Sender<bool>>,
    driver: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    data_dir: Arc<PathBuf>,
}

impl<M: StateMachine> Clone for Member<M> {
    fn clone(&self) -> Self {
        Member {
            shared: Arc::clone(&self.shared),
            forwarded: Arc::clone(&self.forwarded),
            stop: Arc::clone(&self.stop),
            driver: Arc::clone(&self.driver),
            data_dir: Arc::clone(&self.data_dir),
        }
    }
}

impl<M: StateMachine> std::fmt::Debug for Member<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("data_dir", &self.data_dir)
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

impl<M: StateMachine> Member<M> {
    /// Opens the data dir (`disk.rs`: the snapshot is restored into `machine`, the log after
    /// it is handed to the core unapplied), and starts looking for a leader over `transport`.
    /// Must be called within a tokio runtime.
    pub fn open<T: Transport>(
        config: MemberConfig,
        mut machine: M,
        transport: T,
    ) -> Result<Member<M>, EngineError> {
        let (disk, durable) = Disk::open(&config.data_dir, &mut machine)?;
        let snapshot_zxid = durable.snapshot_zxid;
        tracing::info!(
            dir = %config.data_dir.display(),
            id = config.zab.id.0,
            snapshot = %snapshot_zxid,
            logged = durable.log.len(),
            accepted_epoch = durable.accepted_epoch.0,
            current_epoch = durable.current_epoch.0,
            "member opened"
        );
        let replica = Replica::new(config.zab.clone(), durable, Duration::ZERO)?;
        let status = MemberStatus {
            role: replica.role(),
            epoch: replica.current_epoch(),
            serving: false,
            stopped: false,
        };
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                replica,
                waiters: BTreeMap::new(),
                forwards: HashMap::new(),
                next_forward_id: 1,
                sends: VecDeque::new(),
                stopped: None,
            }),
            wake: Notify::new(),
            status: watch::Sender::new(status),
            applied: watch::Sender::new(snapshot_zxid),
            disk_sent: AtomicU64::new(0),
            disk_done: AtomicU64::new(0),
            apply_sent: AtomicU64::new(0),
            apply_done: AtomicU64::new(0),
            last_logged: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            snapshots: AtomicU64::new(0),
            leader_ready: std::sync::atomic::AtomicBool::new(false),
            wake_at_applied: AtomicU64::new(0),
        });
        let dir = config.data_dir.clone();
        let disk = Arc::new(Mutex::new(disk));
        let (notice_tx, notices) = tmpsc::unbounded_channel();
        let (disk_tx, disk_rx) = mpsc::channel();
        let (apply_tx, apply_rx) = mpsc::channel();
        let (snapshot_tx, snapshot_rx) = mpsc::channel::<SnapshotJob<M::Snapshot>>();

        let snapshot_thread = {
            let (disk, notices, dir) = (Arc::clone(&disk), notice_tx.clone(), dir.clone());
            let shared = Arc::clone(&shared);
            spawn("coord-snapshot", &dir.clone(), move || {
                snapshot_loop(snapshot_rx, &dir, &disk, &notices, &shared)
            })?
        };
        let apply_thread = {
            let shared = Arc::clone(&shared);
            let every = config.snapshot_every_txns;
            let notices = notice_tx.clone();
            spawn("coord-apply", &dir, move || {
                apply_loop(
                    machine,
                    apply_rx,
                    snapshot_tx,
                    &notices,
                    &shared,
                    every,
                    snapshot_zxid,
                )
            })?
        };
        let disk_thread = {
            let (disk, notices, shared) = (Arc::clone(&disk), notice_tx, Arc::clone(&shared));
            spawn("coord-disk", &dir, move || {
                disk_loop(disk_rx, &disk, &notices, &shared)
            })?
        };
        let (stop, stop_rx) = watch::channel(false);
        let (forwarded_tx, forwarded_rx) = tmpsc::channel(FORWARDED_QUEUE_MAX);
        let driver = Driver {
            forwarded: forwarded_tx.clone(),
            applied_issued: snapshot_zxid,
            snapshots_out: HashMap::new(),
            snapshot_seq: 0,
            lead_target: None,
            shared: Arc::clone(&shared),
            transport,
            notices,
            disk_tx,
            apply_tx,
            generation: 0,
            tick: config.zab.tick,
            started: Instant::now(),
            threads: vec![disk_thread, apply_thread, snapshot_thread],
        };
        let driver = tokio::spawn(driver.run(stop_rx));
        Ok(Member {
            shared,
            forwarded: Arc::new(ForwardQueue {
                tx: forwarded_tx,
                rx: Mutex::new(Some(forwarded_rx)),
            }),
            stop: Arc::new(stop),
            driver: Arc::new(Mutex::new(Some(driver))),
            data_dir: Arc::new(config.data_dir),
        })
    }

    /// On an established leader: assigns the next zxid and lets `build` produce the txn for
    /// it, atomically with respect to other proposals (proposal order = zxid order = the order
    /// `build` ran). If `build` fails, no zxid is consumed and its error is returned. The
    /// proposal resolves once a quorum has the txn durable and it is applied here, with the
    /// machine's output.
    ///
    /// It resolves to [`EngineError::NotLeader`] on a member that is not an established
    /// leader, and to [`EngineError::LeadershipLost`] if this member stops leading before the
    /// txn is applied: then the txn may or may not commit under the next leader.
    ///
    /// `build` runs under the core's lock: keep it short and never call back into the member.
    pub fn propose<E>(
        &self,
        build: impl FnOnce(Zxid) -> Result<Vec<u8>, E>,
    ) -> Result<Proposal<M::Output>, E> {
        let mut core = self.shared.core.lock();
        if let Some(reason) = &core.stopped {
            return Ok(Proposal::resolved(Err(EngineError::Failed {
                reason: reason.clone(),
            })));
        }
        if core.waiters.len() >= PROPOSALS_PENDING_MAX {
            return Ok(Proposal::resolved(Err(EngineError::Overloaded {
                pending: core.waiters.len(),
            })));
        }
        if !self.shared.leader_ready.load(Ordering::Acquire) {
            return Ok(Proposal::resolved(Err(EngineError::NotLeader)));
        }
        let zxid = match core.replica.next_zxid() {
            Ok(zxid) => zxid,
            Err(err) => {
                drop(core);
                // Stepping down on an exhausted epoch yields actions.
                self.shared.wake.notify_one();
                return Ok(Proposal::resolved(Err(propose_error(err))));
            }
        };
        let txn = build(zxid)?;
        if txn.len() > RECORD_PAYLOAD_MAX {
            return Ok(Proposal::resolved(Err(EngineError::TxnTooLarge {
                len: txn.len(),
                max: RECORD_PAYLOAD_MAX,
            })));
        }
        let proposed = core.replica.handle_propose(Bytes::from(txn));
        let reply = match proposed {
            Ok(proposed) => {
                assert_eq!(
                    proposed, zxid,
                    "the core assigned another zxid than it offered"
                );
                let (tx, rx) = oneshot::channel();
                core.waiters.insert(zxid, Pending::Proposal(tx));
                Ok(rx)
            }
            Err(err) => Err(propose_error(err)),
        };
        drop(core);
        self.shared.wake.notify_one();
        Ok(match reply {
            Ok(rx) => Proposal { rx },
            Err(err) => Proposal::resolved(Err(err)),
        })
    }

    /// Sends `request` to the leader for its application to decide (see the module docs).
    /// On the leader itself the request goes to its own [`Member::take_forwarded`] queue.
    /// Resolves to [`EngineError::NotServing`] on a member that is not synced with a leader,
    /// and to [`EngineError::LeadershipLost`] if the leader changes before it is decided and
    /// applied here: then it may or may not have taken effect.
    pub fn forward(&self, request: Bytes) -> Forward<M::Output> {
        let mut core = self.shared.core.lock();
        if let Some(reason) = &core.stopped {
            return Forward::resolved(Err(EngineError::Failed {
                reason: reason.clone(),
            }));
        }
        if core.forwards.len() >= FORWARDS_PENDING_MAX {
            return Forward::resolved(Err(EngineError::Overloaded {
                pending: core.forwards.len(),
            }));
        }
        let leader = match core.replica.role() {
            _ if !core.replica.is_serving() => None,
            Role::Following { leader } | Role::Observing { leader } => Some(leader),
            Role::Leading => Some(core.replica.id()),
            Role::Looking => None,
        };
        let Some(leader) = leader else {
            return Forward::resolved(Err(EngineError::NotServing));
        };
        let id = core.next_forward_id;
        core.next_forward_id += 1;
        let (tx, rx) = oneshot::channel();
        if leader == core.replica.id() {
            let forwarded = Forwarded {
                origin: leader,
                request,
                id,
            };
            if self.forwarded.tx.try_send(forwarded).is_err() {
                return Forward::resolved(Err(EngineError::Overloaded {
                    pending: FORWARDED_QUEUE_MAX,
                }));
            }
        } else {
            core.sends
                .push_back((leader, Forwarding::Request { id, body: request }));
        }
        core.forwards.insert(id, tx);
        drop(core);
        self.shared.wake.notify_one();
        Forward { rx }
    }

    /// The requests forwarded to this member while it leads. There is one queue per member:
    /// the first call takes it, later ones get `None`. A member whose application never takes
    /// it refuses forwarded requests once [`FORWARDED_QUEUE_MAX`] wait.
    pub fn take_forwarded(&self) -> Option<tmpsc::Receiver<Forwarded>> {
        self.forwarded.rx.lock().take()
    }

    /// Proposes a txn for a forwarded request, as [`Member::propose`] does; the member that
    /// forwarded it is told the zxid ahead of the proposal and resolves its [`Forward`] with
    /// its own machine's output once it applied the txn. Returns the zxid, or why nothing was
    /// proposed (the request is then answered with that error).
    pub fn propose_forwarded<E>(
        &self,
        forwarded: &Forwarded,
        build: impl FnOnce(Zxid) -> Result<Vec<u8>, E>,
    ) -> Result<Result<Zxid, EngineError>, E> {
        let mut core = self.shared.core.lock();
        if !self.shared.leader_ready.load(Ordering::Acquire) {
            refuse(&mut core, forwarded, Refusal::NotLeader);
            drop(core);
            self.shared.wake.notify_one();
            return Ok(Err(EngineError::NotLeader));
        }
        let zxid = match core.replica.next_zxid() {
            Ok(zxid) => zxid,
            Err(err) => {
                refuse(&mut core, forwarded, Refusal::NotLeader);
                drop(core);
                self.shared.wake.notify_one();
                return Ok(Err(propose_error(err)));
            }
        };
        // A request the application refuses it answers itself; nothing is sent here.
        let txn = build(zxid)?;
        if txn.len() > RECORD_PAYLOAD_MAX {
            refuse(&mut core, forwarded, Refusal::Overloaded);
            drop(core);
            self.shared.wake.notify_one();
            return Ok(Err(EngineError::TxnTooLarge {
                len: txn.len(),
                max: RECORD_PAYLOAD_MAX,
            }));
        }
        let (origin, id) = (forwarded.origin, forwarded.id);
        // Announced first: the core's proposal goes out after the runtime's sends.
        if origin != core.replica.id() {
            core.sends
                .push_back((origin, Forwarding::Proposed { id, zxid }));
        }
        let result = core.replica.handle_propose(Bytes::from(txn));
        match result {
            Ok(proposed) => {
                assert_eq!(
                    proposed, zxid,
                    "the core assigned another zxid than it offered"
                );
                if origin == core.replica.id() {
                    if let Some(waiter) = core.forwards.remove(&id) {
                        core.waiters.insert(zxid, Pending::Forward(waiter));
                    }
                }
            }
            Err(_) => {
                // `next_zxid` just succeeded under this lock, so the core cannot refuse.
                unreachable!("the core refused a zxid it offered");
            }
        }
        drop(core);
        self.shared.wake.notify_one();
        Ok(Ok(zxid))
    }

    /// Answers a forwarded request without a txn.
    pub fn answer_forwarded(&self, forwarded: &Forwarded, reply: Bytes) {
        let mut core = self.shared.core.lock();
        let (origin, id) = (forwarded.origin, forwarded.id);
        if origin == core.replica.id() {
            if let Some(waiter) = core.forwards.remove(&id) {
                let _ = waiter.send(Ok(ForwardReply::Answered(reply)));
            }
            return;
        }
        core.sends
            .push_back((origin, Forwarding::Answered { id, body: reply }));
        drop(core);
        self.shared.wake.notify_one();
    }

    /// Where this member stands now.
    pub fn status(&self) -> MemberStatus {
        *self.shared.status.borrow()
    }

    pub fn stats(&self) -> MemberStats {
        let s = &self.shared;
        let (pending, learners) = {
            let core = s.core.lock();
            (
                core.waiters.len() + core.forwards.len(),
                core.replica.learners(),
            )
        };
        MemberStats {
            status: self.status(),
            last_logged: Zxid::from_u64(s.last_logged.load(Ordering::Acquire)),
            last_applied: self.last_applied(),
            txns_logged: s.disk_done.load(Ordering::Acquire),
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            snapshots: s.snapshots.load(Ordering::Relaxed),
            pending,
            learners,
        }
    }

    /// Changes of [`Member::status`].
    pub fn watch_status(&self) -> watch::Receiver<MemberStatus> {
        self.shared.status.subscribe()
    }

    /// The last txn this member logged or proposed (durable or not): on the leader, every
    /// txn it decided. What a `sync` through this leader must wait for.
    pub fn last_logged_or_proposed(&self) -> Zxid {
        self.shared.core.lock().replica.last_appended()
    }

    /// The zxid of the last txn applied to the machine.
    pub fn last_applied(&self) -> Zxid {
        *self.shared.applied.borrow()
    }

    /// Resolves once every txn up to `zxid` is applied here (or the member stopped).
    pub async fn applied(&self, zxid: Zxid) {
        let mut applied = self.shared.applied.subscribe();
        let _ = applied.wait_for(|last| *last >= zxid).await;
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the member: its transport closes, what is queued for the disk is written, the
    /// threads are joined and the data dir unlocked. Pending proposals fail. Idempotent.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let driver = self.driver.lock().take();
        if let Some(driver) = driver {
            if let Err(err) = driver.await {
                tracing::error!(error = %err, "member driver task failed");
            }
        }
    }
}

impl<M: StateMachine> Drop for Member<M> {
    fn drop(&mut self) {
        // The last handle gone: stop the driver (it cannot be awaited here).
        if Arc::strong_count(&self.stop) == 1 {
            let _ = self.stop.send(true);
        }
    }
}

/// The queue of forwarded requests: the driver's sender (kept here for requests a leader
/// forwards to itself) and the receiver until the application takes it.
struct ForwardQueue {
    tx: tmpsc::Sender<Forwarded>,
    rx: Mutex<Option<tmpsc::Receiver<Forwarded>>>,
}

/// Refuses a forwarded request: at its origin, or here for one of this member's own.
fn refuse<T>(core: &mut Core<T>, forwarded: &Forwarded, refusal: Refusal) {
    let (origin, id) = (forwarded.origin, forwarded.id);
    if origin == core.replica.id() {
        if let Some(waiter) = core.forwards.remove(&id) {
            let _ = waiter.send(Err(refusal_error(refusal)));
        }
    } else {
        core.sends
            .push_back((origin, Forwarding::Refused { id, refusal }));
    }
}

fn refusal_error(refusal: Refusal) -> EngineError {
    match refusal {
        Refusal::NotLeader => EngineError::LeadershipLost,
        Refusal::Overloaded => EngineError::Overloaded {
            pending: FORWARDED_QUEUE_MAX,
        },
    }
}

fn propose_error(err: ProposeError) -> EngineError {
    match err {
        ProposeError::ZxidExhausted(epoch) => EngineError::ZxidExhausted(epoch),
        _ => EngineError::NotLeader,
    }
}

/// Frames that may wait behind one snapshot for a learner; past it, the learner re-syncs.
const HELD_FRAMES_MAX: usize = 100_000;

/// A snapshot being serialized for a learner.
struct OutgoingSnap {
    seq: u64,
    epoch: Epoch,
    zxid: Zxid,
    /// Replication frames for the learner that must follow the SNAP.
    held: Vec<Bytes>,
}

/// What woke the driver.
enum Input {
    Timeout,
    Notice(Notice),
    Tick,
    Event(Event),
    /// A proposer queued actions.
    Wake,
}

struct Driver<T: Transport, O> {
    shared: Arc<Shared<O>>,
    forwarded: tmpsc::Sender<Forwarded>,
    /// The last txn handed to the apply thread.
    applied_issued: Zxid,
    /// Snapshots being serialized for learners, and what waits behind each.
    snapshots_out: HashMap<PeerId, OutgoingSnap>,
    snapshot_seq: u64,
    /// The epoch this member leads and the commit point it must have applied before it
    /// serves: a new leader answers nothing from a state behind what its predecessors
    /// committed.
    lead_target: Option<(Epoch, Zxid)>,
    transport: T,
    notices: tmpsc::UnboundedReceiver<Notice>,
    disk_tx: mpsc::Sender<DiskJob>,
    apply_tx: mpsc::Sender<ApplyJob<O>>,
    /// Grows with every TRUNC and SNAP install: a durability notice for an append issued
    /// before one of them says nothing about the log after it.
    generation: u64,
    tick: Duration,
    started: Instant,
    threads: Vec<JoinHandle<()>>,
}

impl<T: Transport, O: Send + 'static> Driver<T, O> {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.tick);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let backlogged = self.backlogged();
            let timeout = self.shared.core.lock().replica.poll_timeout();
            let timer = async {
                match timeout {
                    Some(at) => tokio::time::sleep_until(self.started + at).await,
                    None => std::future::pending().await,
                }
            };
            let input = tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = timer => Input::Timeout,
                notice = self.notices.recv() => match notice {
                    Some(notice) => Input::Notice(notice),
                    None => {
                        self.fail("the disk thread is gone".to_string());
                        break;
                    }
                },
                _ = ticks.tick() => Input::Tick,
                event = self.transport.recv(), if !backlogged => match event {
                    Some(event) => Input::Event(event),
                    None => {
                        self.fail("the transport shut down".to_string());
                        break;
                    }
                },
                _ = self.shared.wake.notified() => Input::Wake,
            };
            // Every input happens at a time: the core records it exactly, and runs what is due.
            let now = self.started.elapsed();
            self.shared.core.lock().replica.handle_timeout(now);
            match input {
                Input::Notice(notice) => {
                    if let Err(reason) = self.handle_notice(notice) {
                        self.fail(reason);
                        break;
                    }
                }
                Input::Tick => self.shared.core.lock().replica.handle_tick(now),
                Input::Event(event) => self.handle_event(event),
                Input::Timeout | Input::Wake => {}
            }
            if let Err(reason) = self.run_actions().await {
                self.fail(reason);
                break;
            }
            self.publish_status();
        }
        self.finish().await;
    }

    fn backlogged(&self) -> bool {
        let s = &self.shared;
        let disk = s.disk_sent.load(Ordering::Acquire) - s.disk_done.load(Ordering::Acquire);
        let apply = s.apply_sent.load(Ordering::Acquire) - s.apply_done.load(Ordering::Acquire);
        disk > DISK_BACKLOG_TXNS_MAX || apply > APPLY_BACKLOG_TXNS_MAX
    }

    fn handle_event(&mut self, event: Event) {
        match event {
            Event::Frame { from, frame, .. } if frame.first().is_some_and(|t| *t >= FIRST_TAG) => {
                match Forwarding::decode(&frame) {
                    Ok(message) => self.handle_forwarding(from, message),
                    Err(err) => {
                        tracing::warn!(peer = from.0, error = %err, "malformed message from a peer");
                        self.transport.reset(from, Stream::Replication);
                    }
                }
            }
            Event::Frame { from, frame, .. } => match Message::decode(&frame) {
                Ok(message) => self
                    .shared
                    .core
                    .lock()
                    .replica
                    .handle_message(from, message),
                Err(err) => {
                    // A peer that sends garbage gets its stream reset; the core re-syncs it.
                    tracing::warn!(peer = from.0, error = %err, "malformed message from a peer");
                    self.transport.reset(from, Stream::Replication);
                }
            },
            Event::Reset {
                peer,
                stream: Stream::Replication,
            } => self.shared.core.lock().replica.handle_link_reset(peer),
            // Election notifications are repeated every tick: a gap needs nothing.
            Event::Reset { .. } => {}
        }
    }

    fn handle_forwarding(&mut self, from: PeerId, message: Forwarding) {
        let mut core = self.shared.core.lock();
        let from_leader = matches!(
            core.replica.role(),
            Role::Following { leader } | Role::Observing { leader } if leader == from
        );
        match message {
            Forwarding::Request { id, body } => {
                let forwarded = Forwarded {
                    origin: from,
                    request: body,
                    id,
                };
                if !core.leads() {
                    refuse(&mut core, &forwarded, Refusal::NotLeader);
                } else if let Err(err) = self.forwarded.try_send(forwarded) {
                    let forwarded = match err {
                        tmpsc::error::TrySendError::Full(f)
                        | tmpsc::error::TrySendError::Closed(f) => f,
                    };
                    refuse(&mut core, &forwarded, Refusal::Overloaded);
                }
            }
            // Only the leader this member follows decides its requests.
            _ if !from_leader => {}
            Forwarding::Proposed { id, zxid } => {
                let Some(waiter) = core.forwards.remove(&id) else {
                    return;
                };
                if zxid <= self.applied_issued {
                    // Cannot happen on a FIFO stream; if it did, the output is gone.
                    let _ = waiter.send(Err(EngineError::LeadershipLost));
                } else {
                    core.waiters.insert(zxid, Pending::Forward(waiter));
                }
            }
            Forwarding::Answered { id, body } => {
                if let Some(waiter) = core.forwards.remove(&id) {
                    let _ = waiter.send(Ok(ForwardReply::Answered(body)));
                }
            }
            Forwarding::Refused { id, refusal } => {
                if let Some(waiter) = core.forwards.remove(&id) {
                    let _ = waiter.send(Err(refusal_error(refusal)));
                }
            }
        }
    }

    fn handle_notice(&mut self, notice: Notice) -> Result<(), String> {
        let mut core = self.shared.core.lock();
        match notice {
            Notice::Persisted {
                generation,
                zxid,
                txns,
            } => {
                self.shared.disk_done.fetch_add(txns, Ordering::AcqRel);
                if generation == self.generation {
                    core.replica.handle_persisted(zxid);
                }
            }
            Notice::EpochPersisted(file, epoch) => core.replica.handle_epoch_persisted(file, epoch),
            Notice::Compacted(zxid) => core.replica.handle_compacted(zxid),
            Notice::Serialized { peer, seq, result } => {
                drop(core);
                self.snapshot_ready(peer, seq, result);
            }
            Notice::Failed(reason) => return Err(reason),
        }
        Ok(())
    }

    /// Carries out the core's actions in order, until it yields none.
    async fn run_actions(&mut self) -> Result<(), String> {
        loop {
            let (sends, actions): (Vec<(PeerId, Forwarding)>, Vec<Action>) = {
                let mut core = self.shared.core.lock();
                (
                    core.sends.drain(..).collect(),
                    std::iter::from_fn(|| core.replica.poll_action()).collect(),
                )
            };
            if sends.is_empty() && actions.is_empty() {
                return Ok(());
            }
            for (to, message) in sends {
                let mut frame = Vec::new();
                message.encode(&mut frame);
                self.send_frame(to, Stream::Replication, frame.into());
            }
            for action in actions {
                self.run_action(action).await?;
            }
        }
    }

    async fn run_action(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Send { to, message } => self.send(to, &message),
            Action::Disconnect { peer } => {
                self.snapshots_out.remove(&peer);
                self.transport.reset(peer, Stream::Replication);
            }
            Action::PersistAcceptedEpoch(epoch) => {
                self.to_disk(DiskJob::Epoch(EpochFile::Accepted, epoch))?
            }
            Action::PersistCurrentEpoch(epoch) => {
                self.to_disk(DiskJob::Epoch(EpochFile::Current, epoch))?
            }
            Action::Append { zxid, txn } => {
                self.shared.disk_sent.fetch_add(1, Ordering::AcqRel);
                self.to_disk(DiskJob::Append {
                    zxid,
                    txn,
                    generation: self.generation,
                })?;
            }
            Action::Truncate { after } => {
                self.generation += 1;
                let (done, wait) = oneshot::channel();
                self.to_disk(DiskJob::Truncate { to: after, done })?;
                let durable_to = wait.await.map_err(|_| "the disk thread is gone")??;
                // Appends up to the cut that were in flight are durable now; their notices
                // belonged to the old generation.
                let mut core = self.shared.core.lock();
                if durable_to <= core.replica.last_appended() {
                    core.replica.handle_persisted(durable_to);
                }
            }
            Action::InstallSnapshot { zxid, data } => {
                self.generation += 1;
                // The machine first: a snapshot it cannot read must not replace the history on
                // disk (the member stops instead, its disk as it was).
                let (apply_done, apply_wait) = oneshot::channel();
                self.to_apply(ApplyJob::Restore {
                    zxid,
                    data: data.clone(),
                    done: apply_done,
                })?;
                apply_wait.await.map_err(|_| "the apply thread is gone")??;
                let (disk_done, disk_wait) = oneshot::channel();
                self.to_disk(DiskJob::Install {
                    zxid,
                    data,
                    done: disk_done,
                })?;
                disk_wait.await.map_err(|_| "the disk thread is gone")??;
            }
            Action::SendSnapshot { to, epoch, zxid } => {
                // Serialized off the driver (a big tree takes a while, and heartbeats must go
                // on); what follows for `to` on its stream waits for it, in order.
                self.snapshot_seq += 1;
                let seq = self.snapshot_seq;
                self.snapshots_out.insert(
                    to,
                    OutgoingSnap {
                        seq,
                        epoch,
                        zxid,
                        held: Vec::new(),
                    },
                );
                self.to_apply(ApplyJob::Serialize {
                    zxid,
                    peer: to,
                    seq,
                })?;
            }
            Action::Commit { .. } => {}
            Action::LogTrusted => self.to_disk(DiskJob::TrustLog)?,
            Action::Apply { zxid, txn } => {
                self.applied_issued = zxid;
                let waiter = self.shared.core.lock().waiters.remove(&zxid);
                self.shared.apply_sent.fetch_add(1, Ordering::AcqRel);
                self.to_apply(ApplyJob::Txn { zxid, txn, waiter })?;
            }
            Action::RoleChanged { role, epoch } => {
                tracing::info!(?role, epoch = epoch.0, "member role changed");
                // What is not applied by now may or may not commit under the next leader.
                self.shared
                    .core
                    .lock()
                    .fail_waiters(|| EngineError::LeadershipLost);
            }
        }
        Ok(())
    }

    fn send(&mut self, to: PeerId, message: &Message) {
        let mut frame = Vec::new();
        message.encode(&mut frame);
        self.send_frame(to, Stream::of(message), frame.into());
    }

    /// Sends a frame, unless a snapshot for `to` is being serialized: replication frames then
    /// wait behind it, so that they reach `to` after the SNAP they follow.
    fn send_frame(&mut self, to: PeerId, stream: Stream, frame: Bytes) {
        if stream == Stream::Replication {
            if let Some(out) = self.snapshots_out.get_mut(&to) {
                if out.held.len() < HELD_FRAMES_MAX {
                    out.held.push(frame);
                    return;
                }
                // Too far behind to catch up this way: it starts over with a new sync.
                tracing::warn!(
                    peer = to.0,
                    "too much waits behind a snapshot; resetting the stream"
                );
                self.snapshots_out.remove(&to);
                self.transport.reset(to, Stream::Replication);
                return;
            }
        }
        if let Err(err) = self.transport.send(to, stream, frame) {
            // A full queue resets the stream and the core re-syncs on the reset; a peer that
            // is unreachable is retried by the transport and by the core's ticks.
            tracing::debug!(peer = to.0, error = %err, "send to a peer failed");
        }
    }

    /// A snapshot for a learner is serialized: it goes out, then what waited behind it.
    fn snapshot_ready(&mut self, peer: PeerId, seq: u64, result: Result<Bytes, String>) {
        if self.snapshots_out.get(&peer).map(|out| out.seq) != Some(seq) {
            return;
        }
        let Some(out) = self.snapshots_out.remove(&peer) else {
            return;
        };
        match result {
            Ok(data) => {
                let snap = Message::Snap {
                    epoch: out.epoch,
                    zxid: out.zxid,
                    data,
                };
                self.send(peer, &snap);
                for frame in out.held {
                    self.send_frame(peer, Stream::Replication, frame);
                }
            }
            Err(reason) => {
                tracing::error!(peer = peer.0, %reason, "snapshot for a learner failed; it will sync again");
                self.transport.reset(peer, Stream::Replication);
            }
        }
    }

    fn to_disk(&self, job: DiskJob) -> Result<(), String> {
        self.disk_tx
            .send(job)
            .map_err(|_| "the disk thread is gone".to_string())
    }

    fn to_apply(&self, job: ApplyJob<O>) -> Result<(), String> {
        self.apply_tx
            .send(job)
            .map_err(|_| "the apply thread is gone".to_string())
    }

    fn publish_status(&mut self) {
        let (mut status, established, committed) = {
            let core = self.shared.core.lock();
            let status = MemberStatus {
                role: core.replica.role(),
                epoch: core.replica.current_epoch(),
                serving: core.replica.is_serving() && core.stopped.is_none(),
                stopped: core.stopped.is_some(),
            };
            (
                status,
                core.replica.established_epoch(),
                core.replica.last_committed(),
            )
        };
        // A new leader serves, and takes proposals, only once it has applied the history it
        // committed when it was established: before, its state may lack writes its
        // predecessors acknowledged.
        let mut ready = false;
        if let (Role::Leading, Some(epoch), true) = (status.role, established, status.serving) {
            let target = match self.lead_target {
                Some((e, target)) if e == epoch => target,
                _ => {
                    self.lead_target = Some((epoch, committed));
                    committed
                }
            };
            ready = *self.shared.applied.borrow() >= target;
            if !ready {
                // The apply thread wakes the driver when it gets there.
                self.shared
                    .wake_at_applied
                    .store(target.as_u64(), Ordering::Release);
                ready = *self.shared.applied.borrow() >= target;
            }
            status.serving = ready;
        }
        self.shared.leader_ready.store(ready, Ordering::Release);
        self.shared.status.send_if_modified(|old| {
            let changed = *old != status;
            *old = status;
            changed
        });
    }

    /// Stops for good: no more proposals, the pending ones fail.
    fn fail(&self, reason: String) {
        tracing::error!(%reason, "member stops");
        let mut core = self.shared.core.lock();
        core.stopped.get_or_insert(reason.clone());
        core.fail_waiters(|| EngineError::Failed {
            reason: reason.clone(),
        });
    }

    async fn finish(mut self) {
        {
            let mut core = self.shared.core.lock();
            core.stopped.get_or_insert_with(|| "shut down".to_string());
            core.fail_waiters(|| EngineError::ShutDown);
        }
        self.publish_status();
        let _ = self.disk_tx.send(DiskJob::Stop);
        let _ = self.apply_tx.send(ApplyJob::Stop);
        let threads = std::mem::take(&mut self.threads);
        // Dropping the senders ends the snapshot thread once the apply thread is gone.
        drop(self);
        let joined = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("member thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("joining the member's threads failed");
        }
    }
}

fn disk_loop<T>(
    jobs: mpsc::Receiver<DiskJob>,
    disk: &Mutex<Disk>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<T>,
) {
    let mut queue: VecDeque<DiskJob> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match jobs.recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => return,
            }
        }
        queue.extend(jobs.try_iter());
        let Some(job) = queue.pop_front() else {
            continue;
        };
        let result = match job {
            DiskJob::Append {
                zxid,
                txn,
                generation,
            } => {
                // A group commit: this append and every append queued right behind it of the
                // same generation, within the batch bounds.
                let mut batch = vec![(zxid, txn)];
                let mut bytes = batch[0].1.len();
                while let Some(DiskJob::Append {
                    txn, generation: g, ..
                }) = queue.front()
                {
                    if *g != generation
                        || batch.len() >= BATCH_TXNS_MAX
                        || bytes + txn.len() > BATCH_BYTES_MAX
                    {
                        break;
                    }
                    bytes += txn.len();
                    if let Some(DiskJob::Append { zxid, txn, .. }) = queue.pop_front() {
                        batch.push((zxid, txn));
                    }
                }
                let records: Vec<(Zxid, &[u8])> =
                    batch.iter().map(|(zxid, txn)| (*zxid, &txn[..])).collect();
                let last = records.last().map_or(zxid, |(zxid, _)| *zxid);
                disk.lock().append(&records).map(|()| {
                    shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                    shared.last_logged.store(last.as_u64(), Ordering::Release);
                    Notice::Persisted {
                        generation,
                        zxid: last,
                        txns: batch.len() as u64,
                    }
                })
            }
            DiskJob::Epoch(file, epoch) => disk
                .lock()
                .write_epoch(file, epoch)
                .map(|()| Notice::EpochPersisted(file, epoch)),
            DiskJob::TrustLog => match disk.lock().trust_log() {
                Ok(()) => continue,
                Err(err) => Err(err),
            },
            DiskJob::Truncate { to, done } => {
                let result = disk.lock().truncate_after(to).map_err(|e| e.to_string());
                let failed = result.as_ref().err().cloned();
                let _ = done.send(result);
                match failed {
                    Some(reason) => Ok(Notice::Failed(reason)),
                    None => continue,
                }
            }
            DiskJob::Install { zxid, data, done } => {
                let result = disk
                    .lock()
                    .install_snapshot(zxid, data)
                    .map_err(|e| e.to_string());
                let failed = result.as_ref().err().cloned();
                let _ = done.send(result);
                match failed {
                    Some(reason) => Ok(Notice::Failed(reason)),
                    None => continue,
                }
            }
            DiskJob::Stop => return,
        };
        let notice = result.unwrap_or_else(|err| {
            tracing::error!(error = %err, "member disk write failed");
            Notice::Failed(err.to_string())
        });
        let failed = matches!(notice, Notice::Failed(_));
        if notices.send(notice).is_err() || failed {
            return;
        }
    }
}

fn apply_loop<M: StateMachine>(
    mut machine: M,
    jobs: mpsc::Receiver<ApplyJob<M::Output>>,
    snapshots: mpsc::Sender<SnapshotJob<M::Snapshot>>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<M::Output>,
    snapshot_every_txns: u64,
    mut last_applied: Zxid,
) {
    let mut since_snapshot: u64 = 0;
    while let Ok(job) = jobs.recv() {
        match job {
            ApplyJob::Txn { zxid, txn, waiter } => {
                assert!(
                    zxid > last_applied,
                    "apply out of order: zxid {zxid} after {last_applied}"
                );
                let output = machine.apply(zxid, &txn);
                last_applied = zxid;
                shared.apply_done.fetch_add(1, Ordering::AcqRel);
                shared.applied.send_replace(zxid);
                let wake_at = shared.wake_at_applied.load(Ordering::Acquire);
                if wake_at != 0 && zxid.as_u64() >= wake_at {
                    shared.wake_at_applied.store(0, Ordering::Release);
                    shared.wake.notify_one();
                }
                if let Some(waiter) = waiter {
                    waiter.resolve(zxid, output);
                }
                since_snapshot += 1;
                if snapshot_every_txns > 0 && since_snapshot >= snapshot_every_txns {
                    since_snapshot = 0;
                    let job = SnapshotJob {
                        zxid,
                        snapshot: machine.snapshot(),
                    };
                    let _ = snapshots.send(job);
                }
            }
            ApplyJob::Serialize { zxid, peer, seq } => {
                if zxid != last_applied {
                    let result = Err(format!(
                        "asked for a snapshot at {zxid}, but {last_applied} is applied"
                    ));
                    let _ = notices.send(Notice::Serialized { peer, seq, result });
                    continue;
                }
                // A frozen view, written out on its own thread: applying goes on meanwhile.
                let snapshot = machine.snapshot();
                let to_driver = notices.clone();
                let spawned = std::thread::Builder::new()
                    .name("coord-snap-send".into())
                    .spawn(move || {
                        let mut data = Vec::new();
                        let result = snapshot
                            .write_to(&mut data)
                            .map(|()| Bytes::from(data))
                            .map_err(|err| format!("serializing a snapshot: {err}"));
                        let _ = to_driver.send(Notice::Serialized { peer, seq, result });
                    });
                if let Err(err) = spawned {
                    let result = Err(format!("starting a snapshot thread: {err}"));
                    let _ = notices.send(Notice::Serialized { peer, seq, result });
                }
            }
            ApplyJob::Restore { zxid, data, done } => {
                let result = machine
                    .restore(&mut &data[..])
                    .map_err(|err| format!("restoring the leader's snapshot at {zxid}: {err}"));
                if result.is_ok() {
                    last_applied = zxid;
                    since_snapshot = 0;
                    shared.applied.send_replace(zxid);
                }
                let _ = done.send(result);
            }
            ApplyJob::Stop => return,
        }
    }
}

fn snapshot_loop<S: Snapshot, T>(
    jobs: mpsc::Receiver<SnapshotJob<S>>,
    dir: &Path,
    disk: &Mutex<Disk>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<T>,
) {
    while let Ok(job) = jobs.recv() {
        let written = crate::snapshot::write(dir, job.zxid, &job.snapshot)
            .map_err(EngineError::from)
            .and_then(|_| disk.lock().drop_covered());
        match written {
            Ok(()) => {
                shared.snapshots.fetch_add(1, Ordering::Relaxed);
                tracing::info!(zxid = %job.zxid, "snapshot written");
                let _ = notices.send(Notice::Compacted(job.zxid));
            }
            // The log still holds everything: a failed snapshot costs disk, not data.
            Err(err) => tracing::error!(zxid = %job.zxid, error = %err, "snapshot failed"),
        }
    }
}
