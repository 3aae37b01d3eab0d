//! The driver: the one task that feeds the core and carries out its actions, in order.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc as tmpsc, oneshot, watch};
use tokio::time::Instant;

use super::super::forward::{Forwarding, Refusal, FIRST_TAG};
use super::super::EngineError;
use super::snapstream::{
    IncomingSnap, OutgoingSnap, Pumped, SnapFile, TempFile, OUTGOING_SNAPSHOTS_MAX,
};
use super::{
    refusal_error, refuse, ApplyJob, DiskJob, ForwardReply, Forwarded, MemberStatus, Notice,
    Pending, Shared, APPLY_BACKLOG_TXNS_MAX, DISK_BACKLOG_TXNS_MAX,
};
use crate::transport::{Event, Stream, Transport};
use crate::zab::{Action, EpochFile, Message, PeerId, Role};
use crate::{Epoch, Zxid};

/// How often a snapshot, or a backlog, is topped up while a peer's queue drains.
const PUMP_EVERY: Duration = Duration::from_millis(2);
/// Frames queued in the transport for a peer past which more wait in the driver's backlog,
/// so a burst (a long DIFF, a surge of proposals) never overflows the transport's queue.
const QUEUE_SOFT_MAX: usize = 1024;
/// Bytes that may wait in one peer's backlog; past it the peer is too slow to keep up, and
/// its stream starts over (it re-syncs).
const BACKLOG_BYTES_MAX: usize = 256 << 20;

/// Replication frames for a peer waiting for room in its queue, oldest first.
#[derive(Default)]
pub(super) struct Backlog {
    frames: std::collections::VecDeque<Bytes>,
    bytes: usize,
}

/// Whether `peer` is the leader a member with `role` follows or observes.
fn leads_us(role: Role, peer: PeerId) -> bool {
    matches!(role, Role::Following { leader } | Role::Observing { leader } if leader == peer)
}

/// What woke the driver.
enum Input {
    Timeout,
    Notice(Notice),
    Tick,
    Event(Event),
    /// A proposer queued actions.
    Wake,
    /// Time to send more of a snapshot to a learner.
    Pump,
}

pub(super) struct Driver<T: Transport, O> {
    pub(super) shared: Arc<Shared<O>>,
    pub(super) forwarded: tmpsc::Sender<Forwarded>,
    /// The last txn handed to the apply thread.
    pub(super) applied_issued: Zxid,
    /// Snapshots being serialized for learners, and what waits behind each.
    pub(super) snapshots_out: HashMap<PeerId, OutgoingSnap>,
    pub(super) snapshot_seq: u64,
    /// The epoch this member leads and the commit point it must have applied before it
    /// serves: a new leader answers nothing from a state behind what its predecessors
    /// committed.
    pub(super) lead_target: Option<(Epoch, Zxid)>,
    /// The data dir, where snapshots for and from learners are staged.
    pub(super) dir: std::path::PathBuf,
    /// A snapshot arriving from the leader.
    pub(super) incoming: Option<IncomingSnap>,
    /// A snapshot from the leader is whole and its writer is syncing it: nothing more is read
    /// from the peers until the core has it, so that what followed it stays behind it.
    pub(super) finishing_snapshot: bool,
    /// Frames for peers whose queues are long.
    pub(super) backlog: HashMap<PeerId, Backlog>,
    /// A snapshot received whole, handed to the core; installed from this file.
    pub(super) received: Option<(Zxid, TempFile)>,
    pub(super) transport: T,
    pub(super) notices: tmpsc::UnboundedReceiver<Notice>,
    /// For the snapshot writer thread's report.
    pub(super) notice_tx: tmpsc::UnboundedSender<Notice>,
    pub(super) disk_tx: mpsc::Sender<DiskJob>,
    pub(super) apply_tx: mpsc::Sender<ApplyJob<O>>,
    /// Grows with every TRUNC and SNAP install: a durability notice for an append issued
    /// before one of them says nothing about the log after it.
    pub(super) generation: u64,
    pub(super) tick: Duration,
    pub(super) started: Instant,
    pub(super) threads: Vec<JoinHandle<()>>,
}

impl<T: Transport, O: Send + 'static> Driver<T, O> {
    pub(super) async fn run(mut self, mut stop: watch::Receiver<bool>) {
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
            let streaming = self.snapshots_out.values().any(OutgoingSnap::is_moving)
                || !self.backlog.is_empty()
                || self.incoming.is_some();
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
                () = tokio::time::sleep(PUMP_EVERY), if streaming => Input::Pump,
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
                Input::Timeout | Input::Wake | Input::Pump => {}
            }
            if let Err(reason) = self.run_actions().await {
                self.fail(reason);
                break;
            }
            // A SNAP the core did not install when it got it (it was not expecting one) is
            // not kept for later: the next comes in its own file.
            self.received = None;
            self.pump_snapshots();
            self.publish_status();
        }
        self.finish().await;
    }

    /// Whether to stop reading from peers until the disk or the apply thread catches up.
    /// Never while looking for a leader: the election's notifications share the transport's
    /// queue with replication frames, and an election must not wait for a backlog (the old
    /// leader's frames read meanwhile are dropped by the core anyway).
    fn backlogged(&self) -> bool {
        let looking = || self.shared.core.lock().replica.role() == Role::Looking;
        // Frames after a snapshot wait behind it; once this member looks again, the sync is
        // over and they no longer matter, while elections do.
        if (self.finishing_snapshot || self.incoming.as_ref().is_some_and(IncomingSnap::is_full))
            && !looking()
        {
            return true;
        }
        let s = &self.shared;
        let disk = s.disk_sent.load(Ordering::Acquire) - s.disk_done.load(Ordering::Acquire);
        let apply = s.apply_sent.load(Ordering::Acquire) - s.apply_done.load(Ordering::Acquire);
        let behind = disk > DISK_BACKLOG_TXNS_MAX || apply > APPLY_BACKLOG_TXNS_MAX;
        behind && self.shared.core.lock().replica.role() != Role::Looking
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
            } => {
                if self.incoming.as_ref().is_some_and(|i| i.from == peer) {
                    self.incoming = None;
                }
                // A snapshot or frames for that peer belong to a sync that is over: what is left
                // must not reach the next stream, so ours starts over too.
                let stale = self.snapshots_out.remove(&peer).is_some();
                if self.backlog.remove(&peer).is_some() || stale {
                    self.transport.reset(peer, Stream::Replication);
                }
                self.shared.core.lock().replica.handle_link_reset(peer)
            }
            // Election notifications are repeated every tick: a gap needs nothing.
            Event::Reset { .. } => {}
        }
    }

    fn handle_forwarding(&mut self, from: PeerId, message: Forwarding) {
        let message = match message {
            Forwarding::SnapBegin { .. }
            | Forwarding::SnapChunk { .. }
            | Forwarding::SnapEnd { .. } => {
                if let Err(reason) = self.receive_snapshot(from, message) {
                    tracing::warn!(peer = from.0, %reason, "a snapshot from the leader failed; syncing again");
                    self.incoming = None;
                    self.transport.reset(from, Stream::Replication);
                    self.shared.core.lock().replica.handle_link_reset(from);
                }
                return;
            }
            message => message,
        };
        let mut core = self.shared.core.lock();
        let from_leader = leads_us(core.replica.role(), from);
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
            Forwarding::SnapBegin { .. }
            | Forwarding::SnapChunk { .. }
            | Forwarding::SnapEnd { .. } => {}
        }
    }

    /// A piece of a snapshot from the leader. Once whole and checked, the core gets the SNAP
    /// (its bytes stay in the file).
    fn receive_snapshot(&mut self, from: PeerId, message: Forwarding) -> Result<(), String> {
        let from_leader = leads_us(self.shared.core.lock().replica.role(), from);
        if !from_leader {
            return Ok(());
        }
        match message {
            Forwarding::SnapBegin { epoch, zxid, len } => {
                self.snapshot_seq += 1;
                let path = self
                    .dir
                    .join(format!("snapshot.incoming.{}.tmp", self.snapshot_seq));
                let notices = self.notice_tx.clone();
                let done = move |result| {
                    let _ = notices.send(Notice::SnapshotReceived {
                        from,
                        epoch,
                        zxid,
                        result,
                    });
                };
                self.incoming = Some(IncomingSnap::begin(path, from, len, done)?);
            }
            Forwarding::SnapChunk { data } => match &mut self.incoming {
                Some(incoming) => incoming.chunk(data)?,
                None => return Err("a snapshot chunk without its beginning".into()),
            },
            Forwarding::SnapEnd { crc } => {
                let incoming = self
                    .incoming
                    .take()
                    .ok_or("a snapshot end without its beginning")?;
                incoming.end(crc)?;
                self.finishing_snapshot = true;
            }
            _ => {}
        }
        Ok(())
    }

    /// Sends more of the snapshots on their way to learners, and what waited behind each once
    /// it is all out.
    fn pump_snapshots(&mut self) {
        self.pump_backlogs();
        let peers: Vec<PeerId> = self
            .snapshots_out
            .iter()
            // Frames queued before the snapshot go first.
            .filter(|(peer, out)| out.is_moving() && !self.backlog.contains_key(*peer))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in peers {
            let Some(out) = self.snapshots_out.get_mut(&peer) else {
                continue;
            };
            match out.pump(peer, &self.transport) {
                Ok(Pumped::More) => {}
                Ok(Pumped::Done) => {
                    self.snapshots_out.remove(&peer);
                }
                Err(reason) => {
                    tracing::warn!(peer = peer.0, %reason, "sending a snapshot failed; the learner will sync again");
                    self.snapshots_out.remove(&peer);
                    self.transport.reset(peer, Stream::Replication);
                }
            }
        }
    }

    /// The writer of a snapshot from the leader is done: once checked and durable, the core
    /// gets the SNAP (its bytes stay in the file).
    fn snapshot_received(
        &mut self,
        from: PeerId,
        epoch: Epoch,
        zxid: Zxid,
        result: super::snapstream::Received,
    ) {
        self.finishing_snapshot = false;
        let mut core = self.shared.core.lock();
        match result {
            Ok(file) if leads_us(core.replica.role(), from) => {
                self.received = Some((zxid, file));
                let snap = Message::Snap {
                    epoch,
                    zxid,
                    data: Bytes::new(),
                };
                core.replica.handle_message(from, snap);
            }
            // The leader changed meanwhile: the file goes, the next leader syncs this member.
            Ok(_) => {}
            Err(reason) => {
                tracing::warn!(peer = from.0, %reason, "a snapshot from the leader failed; syncing again");
                self.transport.reset(from, Stream::Replication);
                core.replica.handle_link_reset(from);
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
            Notice::SnapshotReceived {
                from,
                epoch,
                zxid,
                result,
            } => {
                drop(core);
                self.snapshot_received(from, epoch, zxid, result);
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
            // Consecutive applies go to the apply thread as one message, consecutive appends
            // to the disk thread as one.
            let mut applies = Vec::new();
            let mut appends = Vec::new();
            for action in actions {
                match action {
                    Action::Apply { zxid, txn } => {
                        self.applied_issued = zxid;
                        let waiter = self.shared.core.lock().waiters.remove(&zxid);
                        applies.push((zxid, txn, waiter));
                    }
                    Action::Append { zxid, txn } => appends.push((zxid, txn)),
                    action => {
                        self.flush_applies(&mut applies)?;
                        self.flush_appends(&mut appends)?;
                        self.run_action(action).await?;
                    }
                }
            }
            self.flush_applies(&mut applies)?;
            self.flush_appends(&mut appends)?;
        }
    }

    async fn run_action(&mut self, action: Action) -> Result<(), String> {
        match action {
            Action::Send { to, message } => self.send(to, &message),
            Action::Disconnect { peer } => {
                self.snapshots_out.remove(&peer);
                self.backlog.remove(&peer);
                self.transport.reset(peer, Stream::Replication);
            }
            Action::PersistAcceptedEpoch(epoch) => {
                self.to_disk(DiskJob::Epoch(EpochFile::Accepted, epoch))?
            }
            Action::PersistCurrentEpoch(epoch) => {
                self.to_disk(DiskJob::Epoch(EpochFile::Current, epoch))?
            }
            Action::Append { zxid, txn } => self.flush_appends(&mut vec![(zxid, txn)])?,
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
                // A streamed SNAP reached the core without its bytes: they are in a file.
                let file = match self.received.take() {
                    Some((received, file)) if data.is_empty() && received == zxid => Some(file),
                    _ => None,
                };
                // The machine first: a snapshot it cannot read must not replace the history on
                // disk (the member stops instead, its disk as it was).
                let (apply_done, apply_wait) = oneshot::channel();
                self.to_apply(match &file {
                    Some(file) => ApplyJob::RestoreFile {
                        zxid,
                        path: file.path.clone(),
                        done: apply_done,
                    },
                    None => ApplyJob::Restore {
                        zxid,
                        data: data.clone(),
                        done: apply_done,
                    },
                })?;
                apply_wait.await.map_err(|_| "the apply thread is gone")??;
                let (disk_done, disk_wait) = oneshot::channel();
                self.to_disk(match &file {
                    Some(file) => DiskJob::InstallFile {
                        zxid,
                        path: file.path.clone(),
                        done: disk_done,
                    },
                    None => DiskJob::Install {
                        zxid,
                        data,
                        done: disk_done,
                    },
                })?;
                disk_wait.await.map_err(|_| "the disk thread is gone")??;
            }
            Action::SendSnapshot { to, epoch, zxid } => {
                if self.snapshots_out.len() >= OUTGOING_SNAPSHOTS_MAX {
                    tracing::warn!(
                        peer = to.0,
                        max = OUTGOING_SNAPSHOTS_MAX,
                        "too many snapshots on their way to learners; this one syncs again later"
                    );
                    self.transport.reset(to, Stream::Replication);
                    return Ok(());
                }
                // Serialized off the driver (a big tree takes a while, and heartbeats must go
                // on); what follows for `to` on its stream waits for it, in order.
                self.snapshot_seq += 1;
                let seq = self.snapshot_seq;
                self.snapshots_out
                    .insert(to, OutgoingSnap::new(seq, epoch, zxid));
                let path = self
                    .dir
                    .join(format!("snapshot.outgoing.{}.{seq}.tmp", to.0));
                self.to_apply(ApplyJob::Serialize {
                    zxid,
                    peer: to,
                    seq,
                    path,
                })?;
            }
            Action::Commit { .. } => {}
            Action::LogTrusted => self.to_disk(DiskJob::TrustLog)?,
            Action::Apply { zxid, txn } => {
                self.applied_issued = zxid;
                let waiter = self.shared.core.lock().waiters.remove(&zxid);
                self.flush_applies(&mut vec![(zxid, txn, waiter)])?;
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
                if out.hold(frame) {
                    return;
                }
                // Too far behind to catch up this way: it starts over with a new sync.
                tracing::warn!(
                    peer = to.0,
                    "too much waits behind a snapshot; resetting the stream"
                );
                self.snapshots_out.remove(&to);
                self.backlog.remove(&to);
                self.transport.reset(to, Stream::Replication);
                return;
            }
            let waiting = self.backlog.contains_key(&to);
            if waiting || self.transport.queued(to, stream) >= QUEUE_SOFT_MAX {
                let backlog = self.backlog.entry(to).or_default();
                if backlog.bytes + frame.len() <= BACKLOG_BYTES_MAX {
                    backlog.bytes += frame.len();
                    backlog.frames.push_back(frame);
                    return;
                }
                tracing::warn!(
                    peer = to.0,
                    "a peer is too slow to keep up; resetting its stream"
                );
                self.backlog.remove(&to);
                self.transport.reset(to, Stream::Replication);
                return;
            }
        }
        if let Err(err) = self.transport.send(to, stream, frame) {
            // A peer that is unreachable is retried by the transport and by the core's ticks;
            // a full queue resets the stream and the core re-syncs on the reset.
            tracing::debug!(peer = to.0, error = %err, "send to a peer failed");
        }
    }

    /// Moves backlogged frames into the peers' queues as they drain.
    fn pump_backlogs(&mut self) {
        let mut drained = Vec::new();
        for (peer, backlog) in &mut self.backlog {
            while self.transport.queued(*peer, Stream::Replication) < QUEUE_SOFT_MAX {
                let Some(frame) = backlog.frames.pop_front() else {
                    break;
                };
                backlog.bytes -= frame.len();
                if let Err(err) = self.transport.send(*peer, Stream::Replication, frame) {
                    tracing::debug!(peer = peer.0, error = %err, "send to a peer failed");
                }
            }
            if backlog.frames.is_empty() {
                drained.push(*peer);
            }
        }
        for peer in drained {
            self.backlog.remove(&peer);
        }
    }

    /// A snapshot for a learner is serialized to a file: it starts going out, in chunks.
    fn snapshot_ready(&mut self, peer: PeerId, seq: u64, result: Result<SnapFile, String>) {
        if self.snapshots_out.get(&peer).map(|out| out.seq) != Some(seq) {
            return;
        }
        // It starts when what was queued for the learner before it is out (see the pump).
        let started = match (self.snapshots_out.get_mut(&peer), result) {
            (Some(out), Ok(snap)) => {
                out.ready(snap);
                Ok(())
            }
            (_, Err(reason)) => Err(reason),
            (None, Ok(_)) => return,
        };
        if let Err(reason) = started {
            tracing::error!(peer = peer.0, %reason, "snapshot for a learner failed; it will sync again");
            self.snapshots_out.remove(&peer);
            self.transport.reset(peer, Stream::Replication);
        }
    }

    fn flush_applies(
        &self,
        applies: &mut Vec<(Zxid, Bytes, Option<super::Pending<O>>)>,
    ) -> Result<(), String> {
        if applies.is_empty() {
            return Ok(());
        }
        self.shared
            .apply_sent
            .fetch_add(applies.len() as u64, Ordering::AcqRel);
        self.to_apply(ApplyJob::Txns(std::mem::take(applies)))
    }

    fn flush_appends(&self, appends: &mut Vec<(Zxid, Bytes)>) -> Result<(), String> {
        if appends.is_empty() {
            return Ok(());
        }
        self.shared
            .disk_sent
            .fetch_add(appends.len() as u64, Ordering::AcqRel);
        self.to_disk(DiskJob::Appends {
            txns: std::mem::take(appends),
            generation: self.generation,
        })
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
