//! A member's data dir: the txn log, snapshots and epoch files, with the recovery rules an
//! ensemble member needs.
//!
//! Unlike the standalone engine, a member does not replay its log at start: only the snapshot
//! is known committed, and the log's tail may hold txns no quorum accepted (PITFALLS 16). The
//! log is handed to the Zab core, which applies each txn once a leader says it is committed.
//!
//! Every change is crash-safe at each step:
//! - appends are group commits ([`Log::append_batch`]);
//! - a TRUNC ([`Disk::truncate_after`]) leaves a prefix of the old log at every step;
//! - a SNAP install ([`Disk::install_snapshot`]) is bracketed by a marker file: it is written
//!   before anything changes and removed after everything has, and [`Disk::open`] finishes an
//!   install the marker names if its snapshot made it to disk, or forgets it if not. Without
//!   the marker, a crash between writing the snapshot and deleting the old log would leave old,
//!   possibly divergent txns after the snapshot, which a restart would take for its history.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::epoch::{self, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
use super::{drop_covered, io_err, lock_dir, remove_tmp_files, EngineError};
use crate::fsutil::create_dir_all_durably;
use crate::log::{Log, LogError};
use crate::snapshot;
use crate::storage::{write_atomically, OsStorage, Storage};
use crate::zab::{Durable, EpochFile};
use crate::{Snapshot, StateMachine, Zxid};

/// Names the snapshot being installed while an install is under way.
const INSTALL_MARKER_FILE: &str = "snapshot.installing";
/// Present while the log is suspect: recovery cut a damaged tail off it, which may have held
/// acknowledged txns. The member does not count until a leader synced it; then it is removed.
pub(crate) const LOG_SUSPECT_FILE: &str = "log.suspect";

/// Machine bytes received from a leader, written as a snapshot file as they are.
struct Received(Bytes);

impl Snapshot for Received {
    fn write_to(&self, writer: &mut dyn io::Write) -> io::Result<()> {
        writer.write_all(&self.0)
    }
}

/// An open data dir, locked for this process.
#[derive(Debug)]
pub(crate) struct Disk {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    log: Log,
    /// Held for as long as the dir is open (on the real file system).
    _lock: Option<File>,
}

impl Disk {
    /// Opens (creating) `dir`, finishes or forgets an interrupted snapshot install, restores the
    /// newest snapshot into `machine` and reads the log after it without applying it.
    pub(crate) fn open<M: StateMachine>(
        dir: &Path,
        machine: &mut M,
    ) -> Result<(Disk, Durable), EngineError> {
        create_dir_all_durably(dir).map_err(io_err(dir))?;
        let lock = lock_dir(dir)?;
        let (mut disk, durable) = Disk::open_in(Arc::new(OsStorage), dir, machine)?;
        disk._lock = Some(lock);
        Ok((disk, durable))
    }

    /// [`Disk::open`] on `storage`, where `dir` exists and nothing else uses it.
    pub(crate) fn open_in<M: StateMachine>(
        storage: Arc<dyn Storage>,
        dir: &Path,
        machine: &mut M,
    ) -> Result<(Disk, Durable), EngineError> {
        let fs: &dyn Storage = &*storage;
        remove_tmp_files(fs, dir)?;
        let installing = read_install_marker(fs, dir)?;
        if let Some(zxid) = installing {
            let snapshot = dir.join(snapshot::snapshot_name(zxid));
            if exists(fs, &snapshot)? {
                tracing::warn!(
                    zxid = %zxid,
                    "a snapshot install was interrupted after its snapshot was written; finishing it"
                );
                let mut log = Log::open_in(storage.clone(), dir, |_, _| {}, || Ok(()))?;
                log.reset_after(zxid)?;
            } else {
                tracing::warn!(
                    zxid = %zxid,
                    "a snapshot install was interrupted before its snapshot was written; the old state stands"
                );
            }
            remove_install_marker(fs, dir)?;
        }

        let snapshot_zxid = snapshot::restore_newest(fs, dir, machine)?.unwrap_or(Zxid::ZERO);
        let mut records = Vec::new();
        let suspect_path = dir.join(LOG_SUSPECT_FILE);
        // Marked before the cut, which makes the log look whole: a crash in between must not
        // leave a shortened log that nobody suspects.
        let mark = || {
            write_atomically(fs, &suspect_path, b"the end of the txn log was damaged\n").map_err(
                |source| LogError::Io {
                    path: suspect_path.clone(),
                    source,
                },
            )
        };
        let mut log = Log::open_in(
            storage.clone(),
            dir,
            |zxid, txn| {
                if zxid > snapshot_zxid {
                    records.push((zxid, Bytes::copy_from_slice(txn)));
                }
            },
            mark,
        )
        .map_err(|err| match err {
            LogError::Gap { after, first, .. } => EngineError::LogGap {
                dir: dir.to_path_buf(),
                after,
                found: first,
            },
            err => err.into(),
        })?;
        let dropped_tail = log.dropped_tail();
        match log.base() {
            None => log.start_after(snapshot_zxid),
            Some(base) if base > snapshot_zxid => {
                return Err(EngineError::LogGap {
                    dir: dir.to_path_buf(),
                    after: snapshot_zxid,
                    found: records.first().map_or(base, |(zxid, _)| *zxid),
                });
            }
            Some(_) if log.last_zxid() < snapshot_zxid => {
                // A member applies what is committed, which may run ahead of its own disk: a
                // snapshot can be durable before the log reached it. The snapshot is committed
                // state and holds everything the log does, so the history continues from it.
                tracing::info!(
                    log_last = %log.last_zxid(),
                    snapshot = %snapshot_zxid,
                    "the txn log ends before the newest snapshot; continuing from the snapshot"
                );
                records.clear();
                log.reset_after(snapshot_zxid)?;
            }
            Some(_) => {}
        }
        if dropped_tail {
            tracing::warn!(
                dir = %dir.display(),
                "the txn log's last batch was damaged and cut off; this member will not vote \
                 until a leader has synced it (if no quorum of undamaged members is left, see \
                 README: Durability)"
            );
        }
        let log_suspect = exists(fs, &suspect_path)?;
        let durable = Durable {
            log_suspect,
            accepted_epoch: epoch::read(fs, dir, ACCEPTED_EPOCH_FILE)?,
            current_epoch: epoch::read(fs, dir, CURRENT_EPOCH_FILE)?,
            snapshot_zxid,
            log: records,
        };
        let disk = Disk {
            storage: storage.clone(),
            dir: dir.to_path_buf(),
            log,
            _lock: None,
        };
        Ok((disk, durable))
    }

    pub(crate) fn append(&mut self, batch: &[(Zxid, &[u8])]) -> Result<(), EngineError> {
        Ok(self.log.append_batch(batch)?)
    }

    /// Drops every logged txn after `to`; returns where the log now ends.
    pub(crate) fn truncate_after(&mut self, to: Zxid) -> Result<Zxid, EngineError> {
        self.log.truncate_after(to)?;
        Ok(self.log.last_zxid())
    }

    pub(crate) fn write_epoch(
        &self,
        file: EpochFile,
        epoch: crate::Epoch,
    ) -> Result<(), EngineError> {
        let name = match file {
            EpochFile::Accepted => ACCEPTED_EPOCH_FILE,
            EpochFile::Current => CURRENT_EPOCH_FILE,
        };
        Ok(epoch::write(&*self.storage, &self.dir, name, epoch)?)
    }

    /// As [`Disk::install_snapshot`], from a snapshot received into a file.
    pub(crate) fn install_snapshot_file(
        &mut self,
        zxid: Zxid,
        path: std::path::PathBuf,
    ) -> Result<(), EngineError> {
        self.install(zxid, &super::member::FileSnapshot(path))
    }

    /// Replaces the history with a leader's snapshot at `zxid`: marker, snapshot, no log,
    /// no marker. See the module docs.
    pub(crate) fn install_snapshot(&mut self, zxid: Zxid, data: Bytes) -> Result<(), EngineError> {
        self.install(zxid, &Received(data))
    }

    fn install(&mut self, zxid: Zxid, snapshot: &dyn Snapshot) -> Result<(), EngineError> {
        let fs: &dyn Storage = &*self.storage;
        let marker = self.dir.join(INSTALL_MARKER_FILE);
        write_atomically(fs, &marker, format!("{:016x}\n", zxid.as_u64()).as_bytes())
            .map_err(io_err(&marker))?;
        snapshot::write(fs, &self.dir, zxid, snapshot)?;
        // Snapshots of this member's own history past the new one cannot exist (it never
        // applied past what it committed, and a SNAP is never behind that), but a newer file
        // would win at the next start, so make sure.
        for file in snapshot::list(fs, &self.dir)? {
            if file.zxid > zxid {
                fs.remove(&file.path).map_err(io_err(&file.path))?;
            }
        }
        self.log.reset_after(zxid)?;
        remove_install_marker(fs, &self.dir)
    }

    /// A leader synced this member: its log counts again.
    pub(crate) fn trust_log(&self) -> Result<(), EngineError> {
        let path = self.dir.join(LOG_SUSPECT_FILE);
        match self.storage.remove(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(EngineError::Io { path, source }),
        }
        tracing::info!("a leader synced this member; its txn log counts again");
        self.storage.sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// A snapshot of this member's own state was written: drops the log and the older
    /// snapshots it makes redundant.
    pub(crate) fn drop_covered(&mut self) -> Result<(), EngineError> {
        drop_covered(&*self.storage, &self.dir, &mut self.log)
    }
}

/// Whether `path` exists (without reading it: it may be a snapshot as big as the state).
fn exists(storage: &dyn Storage, path: &Path) -> Result<bool, EngineError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let files = storage.list(dir).map_err(io_err(dir))?;
    Ok(files.iter().any(|file| file == path))
}

fn read_install_marker(storage: &dyn Storage, dir: &Path) -> Result<Option<Zxid>, EngineError> {
    let path = dir.join(INSTALL_MARKER_FILE);
    let content = match storage.read(&path) {
        Ok(content) => String::from_utf8_lossy(&content).into_owned(),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(EngineError::Io { path, source }),
    };
    match u64::from_str_radix(content.trim(), 16) {
        Ok(zxid) => Ok(Some(Zxid::from_u64(zxid))),
        // The marker is written atomically, so this is damage: the install's state is unknown.
        Err(_) => Err(EngineError::Io {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, "malformed install marker"),
        }),
    }
}

fn remove_install_marker(storage: &dyn Storage, dir: &Path) -> Result<(), EngineError> {
    let path = dir.join(INSTALL_MARKER_FILE);
    match storage.remove(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(EngineError::Io { path, source }),
    }
    storage.sync_dir(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SimStorage;
    use crate::{Epoch, RestoreError};
    use std::io::Read;

    /// A machine whose state is the concatenation of the txns applied.
    #[derive(Default)]
    struct Text(Vec<u8>);
    struct TextSnapshot(Vec<u8>);
    impl Snapshot for TextSnapshot {
        fn write_to(&self, writer: &mut dyn io::Write) -> io::Result<()> {
            writer.write_all(&self.0)
        }
    }
    impl StateMachine for Text {
        type Output = ();
        type Snapshot = TextSnapshot;
        fn apply(&mut self, _: Zxid, txn: &[u8]) {
            self.0.extend_from_slice(txn);
        }
        fn snapshot(&self) -> TextSnapshot {
            TextSnapshot(self.0.clone())
        }
        fn restore(&mut self, reader: &mut dyn Read) -> Result<(), RestoreError> {
            self.0.clear();
            reader.read_to_end(&mut self.0)?;
            Ok(())
        }
    }

    fn z(counter: u32) -> Zxid {
        Zxid::new(Epoch(1), counter)
    }

    fn open(dir: &Path) -> (Disk, Durable, Text) {
        let mut machine = Text::default();
        let (disk, durable) = Disk::open(dir, &mut machine).unwrap();
        (disk, durable, machine)
    }

    fn append(disk: &mut Disk, counters: std::ops::RangeInclusive<u32>) {
        let txns: Vec<(Zxid, Vec<u8>)> = counters.map(|c| (z(c), vec![b'a' + c as u8])).collect();
        let batch: Vec<(Zxid, &[u8])> = txns.iter().map(|(z, t)| (*z, &t[..])).collect();
        disk.append(&batch).unwrap();
    }

    fn zxids(durable: &Durable) -> Vec<Zxid> {
        durable.log.iter().map(|(z, _)| *z).collect()
    }

    #[test]
    fn the_log_is_handed_over_unapplied_with_the_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _, _) = open(dir.path());
        append(&mut disk, 1..=3);
        disk.write_epoch(EpochFile::Accepted, Epoch(2)).unwrap();
        disk.write_epoch(EpochFile::Current, Epoch(1)).unwrap();
        assert_eq!(disk.truncate_after(z(2)).unwrap(), z(2));
        drop(disk);
        let (_, durable, machine) = open(dir.path());
        assert_eq!(zxids(&durable), vec![z(1), z(2)]);
        assert_eq!(
            (durable.accepted_epoch, durable.current_epoch),
            (Epoch(2), Epoch(1))
        );
        // Only a snapshot is known committed: nothing is applied at open.
        assert!(machine.0.is_empty());
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _, _) = open(dir.path());
        append(&mut disk, 1..=5);
        disk.install_snapshot(z(3), Bytes::from_static(b"leader"))
            .unwrap();
        append(&mut disk, 4..=4);
        drop(disk);
        let (_, durable, machine) = open(dir.path());
        assert_eq!(machine.0, b"leader");
        assert_eq!(durable.snapshot_zxid, z(3));
        assert_eq!(zxids(&durable), vec![z(4)]);
    }

    #[test]
    fn an_install_interrupted_after_its_snapshot_is_finished_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _, _) = open(dir.path());
        append(&mut disk, 1..=5);
        drop(disk);
        // The crash: marker and snapshot written, the old (divergent) log still there.
        write_atomically(
            &OsStorage,
            &dir.path().join(INSTALL_MARKER_FILE),
            b"0000000100000003\n",
        )
        .unwrap();
        snapshot::write(
            &OsStorage,
            dir.path(),
            z(3),
            &Received(Bytes::from_static(b"leader")),
        )
        .unwrap();
        let (_, durable, machine) = open(dir.path());
        assert_eq!(machine.0, b"leader");
        // The old txns 4 and 5 are not taken for the continuation of the snapshot.
        assert!(durable.log.is_empty(), "{:?}", zxids(&durable));
        assert!(!dir.path().join(INSTALL_MARKER_FILE).exists());
    }

    #[test]
    fn an_install_interrupted_before_its_snapshot_leaves_the_old_state() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _, _) = open(dir.path());
        append(&mut disk, 1..=5);
        drop(disk);
        write_atomically(
            &OsStorage,
            &dir.path().join(INSTALL_MARKER_FILE),
            b"0000000100000003\n",
        )
        .unwrap();
        let (_, durable, machine) = open(dir.path());
        assert!(machine.0.is_empty());
        assert_eq!(zxids(&durable), (1..=5).map(z).collect::<Vec<_>>());
        assert!(!dir.path().join(INSTALL_MARKER_FILE).exists());
    }

    #[test]
    fn a_snapshot_ahead_of_the_log_is_where_the_history_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, _, _) = open(dir.path());
        append(&mut disk, 1..=2);
        drop(disk);
        // Applied (committed elsewhere) and snapshotted before this member's log got there.
        snapshot::write(
            &OsStorage,
            dir.path(),
            z(4),
            &Received(Bytes::from_static(b"abcd")),
        )
        .unwrap();
        let (mut disk, durable, machine) = open(dir.path());
        assert_eq!(machine.0, b"abcd");
        assert_eq!(durable.snapshot_zxid, z(4));
        assert!(durable.log.is_empty());
        append(&mut disk, 5..=5);
        drop(disk);
        let (_, durable, _) = open(dir.path());
        assert_eq!(zxids(&durable), vec![z(5)]);
    }

    #[test]
    fn a_damaged_tail_makes_the_log_suspect_until_a_leader_synced_it() {
        let dir = tempfile::tempdir().unwrap();
        let (mut disk, durable, _) = open(dir.path());
        assert!(!durable.log_suspect);
        append(&mut disk, 1..=2);
        append(&mut disk, 3..=4);
        drop(disk);
        // The last batch loses its last bytes, as a torn write or bit rot leaves it.
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("log."))
            .unwrap();
        let len = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&segment)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (disk, durable, _) = open(dir.path());
        assert!(durable.log_suspect);
        assert_eq!(zxids(&durable), vec![z(1), z(2)]);
        drop(disk);
        // The cut log looks whole now; the marker remembers.
        let (disk, durable, _) = open(dir.path());
        assert!(durable.log_suspect);
        disk.trust_log().unwrap();
        drop(disk);
        let (_, durable, _) = open(dir.path());
        assert!(!durable.log_suspect);
    }

    /// What the crash test does to a disk, in order.
    #[derive(Debug, Clone)]
    enum Step {
        Epoch(EpochFile, u32),
        Append(Vec<u32>, &'static str),
        /// A leader's SNAP at a zxid inside this member's own log.
        Install(u32, &'static str),
        TruncateAfter(u32),
        /// This member's own snapshot, then the log and snapshots it covers dropped.
        Compact(u32),
    }

    fn txn(counter: u32, tag: &str) -> Vec<u8> {
        format!("{tag}{counter:02};").into_bytes()
    }

    /// A leader's state at `counter`: its txns up to there.
    fn image(counter: u32, tag: &str) -> Vec<u8> {
        (1..=counter).flat_map(|c| txn(c, tag)).collect()
    }

    fn steps() -> Vec<Step> {
        vec![
            Step::Epoch(EpochFile::Accepted, 1),
            Step::Epoch(EpochFile::Current, 1),
            Step::Append(vec![1, 2, 3], "a"),
            Step::Append(vec![4], "a"),
            Step::Install(2, "s"),
            Step::Append(vec![3, 4], "b"),
            Step::Epoch(EpochFile::Accepted, 2),
            Step::TruncateAfter(3),
            Step::Append(vec![4, 5], "c"),
            Step::Compact(5),
            Step::Append(vec![6], "c"),
        ]
    }

    /// What a disk holds, as a restart sees it: the epochs and the history (the machine's
    /// state from the snapshot, then the txns of the log after it).
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Held {
        accepted: u32,
        current: u32,
        history: String,
    }

    fn after(held: &Held, step: &Step) -> Held {
        let mut next = held.clone();
        match step {
            Step::Epoch(EpochFile::Accepted, e) => next.accepted = *e,
            Step::Epoch(EpochFile::Current, e) => next.current = *e,
            Step::Append(counters, tag) => {
                for c in counters {
                    next.history += &String::from_utf8(txn(*c, tag)).unwrap();
                }
            }
            Step::Install(c, tag) => next.history = String::from_utf8(image(*c, tag)).unwrap(),
            Step::TruncateAfter(to) => {
                // Every txn is 4 bytes: its counter is where it stands in the history.
                next.history.truncate(*to as usize * 4);
            }
            Step::Compact(_) => {}
        }
        next
    }

    fn run_steps(storage: &SimStorage, dir: &Path) -> (Held, Option<Step>) {
        let mut held = Held {
            accepted: 0,
            current: 0,
            history: String::new(),
        };
        let Ok((mut disk, _)) = Disk::open_in(Arc::new(storage.clone()), dir, &mut Text::default())
        else {
            return (held, None);
        };
        for step in steps() {
            let result = match &step {
                Step::Epoch(file, e) => disk.write_epoch(*file, Epoch(*e)),
                Step::Append(counters, tag) => {
                    let txns: Vec<(Zxid, Vec<u8>)> =
                        counters.iter().map(|c| (z(*c), txn(*c, tag))).collect();
                    let batch: Vec<(Zxid, &[u8])> =
                        txns.iter().map(|(zx, t)| (*zx, t.as_slice())).collect();
                    disk.append(&batch)
                }
                Step::Install(c, tag) => disk.install_snapshot(z(*c), Bytes::from(image(*c, tag))),
                Step::TruncateAfter(to) => disk.truncate_after(z(*to)).map(|_| ()),
                Step::Compact(at) => {
                    let image = held.history.as_bytes()[..*at as usize * 4].to_vec();
                    snapshot::write(&*disk.storage, dir, z(*at), &TextSnapshot(image))
                        .map_err(EngineError::from)
                        .and_then(|_| disk.drop_covered())
                }
            };
            match result {
                Ok(()) => held = after(&held, &step),
                Err(_) => return (held, Some(step)),
            }
        }
        (held, None)
    }

    /// Every step of a member's disk (epochs, appends, a SNAP install, a TRUNC, compaction)
    /// crashes at each storage operation, losing or tearing what was not synced: the disk
    /// opens, the core accepts what it holds, and that is what was acknowledged, or what the
    /// step in flight may leave.
    #[test]
    fn a_crash_at_every_operation_leaves_a_disk_the_core_accepts() {
        use crate::storage::{SimStorage, TornWrites};
        let dir = Path::new("/member");
        let total = {
            let storage = SimStorage::new(0, TornWrites::Lost);
            let (held, inflight) = run_steps(&storage, dir);
            assert!(inflight.is_none());
            assert_eq!(held.history, "s01;s02;b03;c04;c05;c06;");
            storage.ops()
        };
        for torn in [TornWrites::Lost, TornWrites::Pages] {
            for at in 0..total {
                // Only torn pages depend on the seed.
                let seeds = if torn == TornWrites::Lost { 1 } else { 3 };
                for seed in 0..seeds {
                    let storage = SimStorage::new(seed, torn);
                    storage.crash_at(at);
                    let (acked, inflight) = run_steps(&storage, dir);
                    storage.restart();
                    let context =
                        format!("{torn:?}, crash at {at}/{total}, seed {seed}, in {inflight:?}");
                    let mut machine = Text::default();
                    let (_, durable) = Disk::open_in(Arc::new(storage.clone()), dir, &mut machine)
                        .unwrap_or_else(|err| panic!("{context}: does not open: {err}"));
                    let mut config = crate::zab::Config {
                        id: crate::zab::PeerId(1),
                        voters: [crate::zab::PeerId(1)].into(),
                        observers: Default::default(),
                        tick: std::time::Duration::from_millis(50),
                        init_limit_ticks: 10,
                        sync_limit_ticks: 5,
                        diff_txns_max: crate::zab::DIFF_TXNS_MAX_DEFAULT,
                        diff_bytes_max: crate::zab::DIFF_BYTES_MAX_DEFAULT,
                        compacted_tail_txns: crate::zab::COMPACTED_TAIL_TXNS_DEFAULT,
                    };
                    config.voters.insert(crate::zab::PeerId(2));
                    let mut history = String::from_utf8(machine.0.clone()).unwrap();
                    for (_, t) in &durable.log {
                        history += std::str::from_utf8(t).unwrap();
                    }
                    let found = Held {
                        accepted: durable.accepted_epoch.0,
                        current: durable.current_epoch.0,
                        history,
                    };
                    crate::zab::Replica::new(config, durable, std::time::Duration::ZERO)
                        .unwrap_or_else(|err| panic!("{context}: the core refuses it: {err}"));
                    let allowed = match &inflight {
                        None | Some(Step::Compact(_)) => found == acked,
                        Some(Step::TruncateAfter(_)) => {
                            let cut = after(&acked, inflight.as_ref().unwrap());
                            acked.history.starts_with(&found.history)
                                && found.history.len() >= cut.history.len()
                                && (found.accepted, found.current)
                                    == (acked.accepted, acked.current)
                        }
                        Some(step) => found == acked || found == after(&acked, step),
                    };
                    assert!(
                        allowed,
                        "{context}: found {found:?}, acknowledged {acked:?}"
                    );
                }
            }
        }
    }
}
