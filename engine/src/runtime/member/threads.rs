//! The member's threads: the disk (group commit), the apply thread and the snapshot writer.

use std::collections::VecDeque;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use parking_lot::Mutex;
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::super::disk::Disk;
use super::super::{EngineError, BATCH_BYTES_MAX, BATCH_TXNS_MAX};
use super::snapstream::serialize_to_file;
use super::{ApplyJob, DiskJob, Notice, Shared, SnapshotJob, SNAPSHOTS_QUEUED_MAX};
use crate::{Snapshot, StateMachine, Zxid};

/// Answers a job the driver waits for; a failure also stops the member (the returned notice).
fn answer<T>(
    done: oneshot::Sender<Result<T, String>>,
    result: Result<T, EngineError>,
) -> Option<Notice> {
    let result = result.map_err(|e| e.to_string());
    let failed = result.as_ref().err().cloned();
    let _ = done.send(result);
    failed.map(Notice::Failed)
}

pub(super) fn disk_loop<T>(
    jobs: mpsc::Receiver<DiskJob>,
    disk: &Mutex<Disk>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<T>,
) {
    let mut queue: VecDeque<DiskJob> = VecDeque::new();
    let enqueue = |queue: &mut VecDeque<DiskJob>, job: DiskJob| match job {
        DiskJob::Appends { txns, generation } => {
            queue.extend(txns.into_iter().map(|(zxid, txn)| DiskJob::Append {
                zxid,
                txn,
                generation,
            }));
        }
        job => queue.push_back(job),
    };
    loop {
        if queue.is_empty() {
            match jobs.recv() {
                Ok(job) => enqueue(&mut queue, job),
                Err(_) => return,
            }
        }
        for job in jobs.try_iter() {
            enqueue(&mut queue, job);
        }
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
            // Taken apart as they are queued; this keeps their order if one ever is not.
            DiskJob::Appends { txns, generation } => {
                for (zxid, txn) in txns.into_iter().rev() {
                    queue.push_front(DiskJob::Append {
                        zxid,
                        txn,
                        generation,
                    });
                }
                continue;
            }
            DiskJob::Epoch(file, epoch) => disk
                .lock()
                .write_epoch(file, epoch)
                .map(|()| Notice::EpochPersisted(file, epoch)),
            DiskJob::TrustLog => match disk.lock().trust_log() {
                Ok(()) => continue,
                Err(err) => Err(err),
            },
            DiskJob::Truncate { to, done } => match answer(done, disk.lock().truncate_after(to)) {
                Some(failed) => Ok(failed),
                None => continue,
            },
            DiskJob::InstallFile { zxid, path, done } => {
                match answer(done, disk.lock().install_snapshot_file(zxid, path)) {
                    Some(failed) => Ok(failed),
                    None => continue,
                }
            }
            DiskJob::Install { zxid, data, done } => {
                match answer(done, disk.lock().install_snapshot(zxid, data)) {
                    Some(failed) => Ok(failed),
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

/// Txns until the next snapshot: between half and all of `every`, at random, as ZooKeeper
/// does, so that members do not all write snapshots (and contend for the disk) at once.
fn snapshot_interval(every: u64) -> u64 {
    use rand::Rng;
    let half = every / 2;
    half + rand::thread_rng().gen_range(0..=every - half)
}

pub(super) fn apply_loop<M: StateMachine>(
    mut machine: M,
    jobs: mpsc::Receiver<ApplyJob<M::Output>>,
    snapshots: mpsc::SyncSender<SnapshotJob<M::Snapshot>>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<M::Output>,
    snapshot_every_txns: u64,
    mut last_applied: Zxid,
) {
    let mut since_snapshot: u64 = 0;
    let mut next_snapshot = snapshot_interval(snapshot_every_txns);
    while let Ok(job) = jobs.recv() {
        match job {
            ApplyJob::Txns(txns) => {
                for (zxid, txn, waiter) in txns {
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
                    if snapshot_every_txns > 0 && since_snapshot >= next_snapshot {
                        since_snapshot = 0;
                        next_snapshot = snapshot_interval(snapshot_every_txns);
                        // Not while the last one is still being written: a frozen view costs
                        // the whole state, and the next interval takes it anyway.
                        if shared.snapshots_in_flight.load(Ordering::Acquire) < SNAPSHOTS_QUEUED_MAX
                        {
                            shared.snapshots_in_flight.fetch_add(1, Ordering::AcqRel);
                            let job = SnapshotJob {
                                zxid,
                                snapshot: machine.snapshot(),
                            };
                            if snapshots.try_send(job).is_err() {
                                shared.snapshots_in_flight.fetch_sub(1, Ordering::AcqRel);
                            }
                        }
                    }
                }
            }
            ApplyJob::Serialize {
                zxid,
                peer,
                seq,
                path,
            } => {
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
                        let result = serialize_to_file(&snapshot, path);
                        let _ = to_driver.send(Notice::Serialized { peer, seq, result });
                    });
                if let Err(err) = spawned {
                    let result = Err(format!("starting a snapshot thread: {err}"));
                    let _ = notices.send(Notice::Serialized { peer, seq, result });
                }
            }
            ApplyJob::RestoreFile { zxid, path, done } => {
                let result = File::open(&path)
                    .map_err(|err| format!("{}: {err}", path.display()))
                    .and_then(|file| {
                        let mut reader = BufReader::with_capacity(1 << 20, file);
                        machine.restore(&mut reader).map_err(|err| {
                            format!("restoring the leader's snapshot at {zxid}: {err}")
                        })
                    });
                if result.is_ok() {
                    last_applied = zxid;
                    since_snapshot = 0;
                    shared.applied.send_replace(zxid);
                }
                let _ = done.send(result);
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

pub(super) fn snapshot_loop<S: Snapshot, T>(
    jobs: mpsc::Receiver<SnapshotJob<S>>,
    dir: &Path,
    disk: &Mutex<Disk>,
    notices: &tmpsc::UnboundedSender<Notice>,
    shared: &Shared<T>,
) {
    while let Ok(job) = jobs.recv() {
        let written =
            crate::snapshot::write(&crate::storage::OsStorage, dir, job.zxid, &job.snapshot)
                .map_err(EngineError::from)
                .and_then(|_| disk.lock().drop_covered());
        shared.snapshots_in_flight.fetch_sub(1, Ordering::AcqRel);
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
