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
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc as tmpsc, oneshot, watch, Notify};
use tokio::time::Instant;

use super::disk::Disk;
use super::forward::{Forwarding, Refusal};
use super::{spawn, EngineError, Proposal, Waiter};
use crate::log::RECORD_PAYLOAD_MAX;
use crate::transport::Transport;
use crate::zab::{self, EpochFile, PeerId, ProposeError, Replica, Role};
use crate::{Epoch, StateMachine, Zxid};

mod driver;
mod snapstream;
mod threads;

use driver::Driver;
pub(crate) use snapstream::FileSnapshot;
use threads::{apply_loop, disk_loop, snapshot_loop};

/// Txns appended by the core and not yet durable, past which the driver stops reading peers.
pub const DISK_BACKLOG_TXNS_MAX: u64 = 100_000;
/// Committed txns not yet applied, past which the driver stops reading peers.
pub const APPLY_BACKLOG_TXNS_MAX: u64 = 100_000;
/// Snapshots of this member's own state taken and not yet written: a frozen view costs the
/// whole state, so one due while another is being written is skipped (the next interval
/// takes it).
pub const SNAPSHOTS_QUEUED_MAX: usize = 1;
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
    /// How this member synchronized learners while it led.
    pub syncs: zab::Syncs,
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
    /// A snapshot for learner `peer` (request `seq`) is serialized to a file.
    Serialized {
        peer: PeerId,
        seq: u64,
        result: Result<snapstream::SnapFile, String>,
    },
    /// A snapshot from leader `from` is received whole, checked and synced (or not).
    SnapshotReceived {
        from: PeerId,
        epoch: Epoch,
        zxid: Zxid,
        result: snapstream::Received,
    },
    Failed(String),
}

enum DiskJob {
    Append {
        zxid: Zxid,
        txn: Bytes,
        generation: u64,
    },
    /// Appends the core yielded at once: one message for all of them (the disk thread takes
    /// them apart and groups them into commits as it does single appends).
    Appends {
        txns: Vec<(Zxid, Bytes)>,
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
    /// Install a snapshot received into a file.
    InstallFile {
        zxid: Zxid,
        path: PathBuf,
        done: oneshot::Sender<Result<(), String>>,
    },
    Stop,
}

enum ApplyJob<T> {
    /// Committed txns in zxid order, with whoever waits for each: one message for all the
    /// applies the core yielded at once.
    Txns(Vec<(Zxid, Bytes, Option<Pending<T>>)>),
    /// Serialize the machine (at exactly what was applied before this job) for `peer`, to
    /// `path`.
    Serialize {
        zxid: Zxid,
        peer: PeerId,
        seq: u64,
        path: PathBuf,
    },
    /// Restore the machine from a snapshot received into a file.
    RestoreFile {
        zxid: Zxid,
        path: PathBuf,
        done: oneshot::Sender<Result<(), String>>,
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
    /// Own snapshots taken and not yet written (at most [`SNAPSHOTS_QUEUED_MAX`]).
    snapshots_in_flight: std::sync::atomic::AtomicUsize,
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
            snapshots_in_flight: std::sync::atomic::AtomicUsize::new(0),
        });
        let dir = config.data_dir.clone();
        let disk = Arc::new(Mutex::new(disk));
        // Unbounded in messages, bounded by their producers: the driver queues disk jobs and
        // applies only while fewer than DISK_BACKLOG_TXNS_MAX / APPLY_BACKLOG_TXNS_MAX txns wait
        // (past them it stops reading its peers; a leader also stops at PROPOSALS_PENDING_MAX
        // proposals), and every notice answers one disk job, snapshot or serialization.
        let (notice_tx, notices) = tmpsc::unbounded_channel();
        let (disk_tx, disk_rx) = mpsc::channel();
        let (apply_tx, apply_rx) = mpsc::channel();
        // Never full: the apply thread takes a snapshot only while fewer are in flight.
        let (snapshot_tx, snapshot_rx) =
            mpsc::sync_channel::<SnapshotJob<M::Snapshot>>(SNAPSHOTS_QUEUED_MAX);

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
            let (disk, notices, shared) =
                (Arc::clone(&disk), notice_tx.clone(), Arc::clone(&shared));
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
            dir: config.data_dir.clone(),
            incoming: None,
            finishing_snapshot: false,
            received: None,
            backlog: HashMap::new(),
            shared: Arc::clone(&shared),
            transport,
            notices,
            notice_tx,
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
        let (pending, learners, syncs) = {
            let core = s.core.lock();
            (
                core.waiters.len() + core.forwards.len(),
                core.replica.learners(),
                core.replica.syncs(),
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
            syncs,
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
