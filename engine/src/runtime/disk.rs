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

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::epoch::{self, ACCEPTED_EPOCH_FILE, CURRENT_EPOCH_FILE};
use super::{drop_covered, io_err, lock_dir, remove_tmp_files, EngineError};
use crate::fsutil::{create_dir_all_durably, sync_dir, write_atomically};
use crate::log::{Log, LogError};
use crate::snapshot;
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
    dir: PathBuf,
    log: Log,
    /// Held for as long as the dir is open.
    _lock: File,
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
        remove_tmp_files(dir)?;
        let installing = read_install_marker(dir)?;
        if let Some(zxid) = installing {
            let snapshot = dir.join(snapshot::snapshot_name(zxid));
            if snapshot.exists() {
                tracing::warn!(
                    zxid = %zxid,
                    "a snapshot install was interrupted after its snapshot was written; finishing it"
                );
                let mut log = Log::open(dir, |_, _| {})?;
                log.reset_after(zxid)?;
            } else {
                tracing::warn!(
                    zxid = %zxid,
                    "a snapshot install was interrupted before its snapshot was written; the old state stands"
                );
            }
            remove_install_marker(dir)?;
        }

        let snapshot_zxid = snapshot::restore_newest(dir, machine)?.unwrap_or(Zxid::ZERO);
        let mut records = Vec::new();
        let suspect_path = dir.join(LOG_SUSPECT_FILE);
        // Marked before the cut, which makes the log look whole: a crash in between must not
        // leave a shortened log that nobody suspects.
        let mark = || {
            write_atomically(&suspect_path, b"the end of the txn log was damaged\n").map_err(
                |source| LogError::Io {
                    path: suspect_path.clone(),
                    source,
                },
            )
        };
        let mut log = Log::open_with(
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
        let log_suspect = suspect_path.exists();
        let durable = Durable {
            log_suspect,
            accepted_epoch: epoch::read(dir, ACCEPTED_EPOCH_FILE)?,
            current_epoch: epoch::read(dir, CURRENT_EPOCH_FILE)?,
            snapshot_zxid,
            log: records,
        };
        let disk = Disk {
            dir: dir.to_path_buf(),
            log,
            _lock: lock,
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
        Ok(epoch::write(&self.dir, name, epoch)?)
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
        let marker = self.dir.join(INSTALL_MARKER_FILE);
        write_atomically(&marker, format!("{:016x}\n", zxid.as_u64()).as_bytes())
            .map_err(io_err(&marker))?;
        snapshot::write(&self.dir, zxid, snapshot)?;
        // Snapshots of this member's own history past the new one cannot exist (it never
        // applied past what it committed, and a SNAP is never behind that), but a newer file
        // would win at the next start, so make sure.
        for file in snapshot::list(&self.dir)? {
            if file.zxid > zxid {
                fs::remove_file(&file.path).map_err(io_err(&file.path))?;
            }
        }
        self.log.reset_after(zxid)?;
        remove_install_marker(&self.dir)
    }

    /// A leader synced this member: its log counts again.
    pub(crate) fn trust_log(&self) -> Result<(), EngineError> {
        let path = self.dir.join(LOG_SUSPECT_FILE);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(EngineError::Io { path, source }),
        }
        tracing::info!("a leader synced this member; its txn log counts again");
        sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// A snapshot of this member's own state was written: drops the log and the older
    /// snapshots it makes redundant.
    pub(crate) fn drop_covered(&mut self) -> Result<(), EngineError> {
        drop_covered(&self.dir, &mut self.log)
    }
}

fn read_install_marker(dir: &Path) -> Result<Option<Zxid>, EngineError> {
    let path = dir.join(INSTALL_MARKER_FILE);
    let content = match fs::read_to_string(&path) {
        Ok(content) => content,
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

fn remove_install_marker(dir: &Path) -> Result<(), EngineError> {
    let path = dir.join(INSTALL_MARKER_FILE);
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(EngineError::Io { path, source }),
    }
    sync_dir(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
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
        write_atomically(&dir.path().join(INSTALL_MARKER_FILE), b"0000000100000003\n").unwrap();
        snapshot::write(dir.path(), z(3), &Received(Bytes::from_static(b"leader"))).unwrap();
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
        write_atomically(&dir.path().join(INSTALL_MARKER_FILE), b"0000000100000003\n").unwrap();
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
        snapshot::write(dir.path(), z(4), &Received(Bytes::from_static(b"abcd"))).unwrap();
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
}
