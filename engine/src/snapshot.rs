//! Snapshot files: `snapshot.<zxid as 16 hex digits>` in the data dir.
//!
//! ```text
//! magic "COORDSNP" | version: u32 BE | zxid: u64 BE | machine bytes | crc32c: u32 BE (over all before it)
//! ```
//!
//! A snapshot is written to a tmp file, fsynced, renamed into place and the directory fsynced, so
//! a visible snapshot file is always complete; the checksum catches later damage.
//!
//! Restoring takes the newest snapshot that verifies, skipping damaged newer ones with a
//! warning. A snapshot of another format version is not damage (it is an upgrade or downgrade
//! gone wrong) and fails the restore, as does a dir whose snapshots are all damaged: starting
//! from an empty state there would silently drop the history they held.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::tmp_path;
use crate::storage::{SequentialWriter, Storage};
use crate::{RestoreError, Snapshot, StateMachine, Zxid};

const MAGIC: &[u8; 8] = b"COORDSNP";
/// The snapshot format version this build writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: u64 = 8 + 4 + 8;
const TRAILER_LEN: u64 = 4;
const SNAPSHOT_PREFIX: &str = "snapshot.";

/// Why a snapshot could not be written or restored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    #[error("snapshot {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file's checksum verified but the machine could not read it: a bug in the machine's
    /// format, not disk damage, so the engine does not silently fall back.
    #[error("restoring snapshot {}: {source}", path.display())]
    Restore {
        path: PathBuf,
        #[source]
        source: RestoreError,
    },
    /// A snapshot written by another format version: refuse rather than fall back.
    #[error(
        "snapshot {} has format version {version}; this build reads version {VERSION}",
        path.display()
    )]
    UnsupportedVersion { path: PathBuf, version: u32 },
    /// Snapshot files exist but none verifies: the history they held is gone.
    #[error(
        "none of the snapshots in {} can be restored: {}",
        dir.display(),
        describe_failures(failures)
    )]
    NoneUsable {
        dir: PathBuf,
        /// Each snapshot file and why it is unusable, newest first.
        failures: Vec<(PathBuf, String)>,
    },
}

fn describe_failures(failures: &[(PathBuf, String)]) -> String {
    failures
        .iter()
        .map(|(path, reason)| format!("{}: {reason}", path.display()))
        .collect::<Vec<_>>()
        .join("; ")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshot file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    /// The last txn the snapshot includes.
    pub zxid: Zxid,
    pub path: PathBuf,
}

/// The file name of the snapshot taken at `zxid`.
pub fn snapshot_name(zxid: Zxid) -> String {
    format!("{SNAPSHOT_PREFIX}{:016x}", zxid.as_u64())
}

fn parse_snapshot_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_prefix(SNAPSHOT_PREFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Zxid::from_u64)
}

/// The snapshot files in `dir`, oldest first.
pub fn list(storage: &dyn Storage, dir: &Path) -> Result<Vec<SnapshotFile>, SnapshotError> {
    let mut files = Vec::new();
    for path in storage.list(dir).map_err(io_err(dir))? {
        let Some(zxid) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_snapshot_name)
        else {
            continue;
        };
        files.push(SnapshotFile { zxid, path });
    }
    files.sort_by_key(|file| file.zxid);
    Ok(files)
}

/// A writer that checksums what passes through it.
struct CrcWriter<W> {
    inner: W,
    crc: u32,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.crc = crc32c::crc32c_append(self.crc, &buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `snapshot`, taken at `zxid`, durably into `dir`; returns its path.
pub fn write(
    storage: &dyn Storage,
    dir: &Path,
    zxid: Zxid,
    snapshot: &dyn Snapshot,
) -> Result<PathBuf, SnapshotError> {
    let path = dir.join(snapshot_name(zxid));
    let tmp = tmp_path(&path);
    let result = write_tmp(storage, &tmp, zxid, snapshot)
        .and_then(|()| storage.rename(&tmp, &path))
        .and_then(|()| storage.sync_dir(dir));
    if let Err(source) = result {
        // Best effort: a leftover tmp file is also removed at the next start.
        let _ = storage.remove(&tmp);
        return Err(SnapshotError::Io { path, source });
    }
    Ok(path)
}

fn write_tmp(
    storage: &dyn Storage,
    tmp: &Path,
    zxid: Zxid,
    snapshot: &dyn Snapshot,
) -> io::Result<()> {
    match storage.remove(tmp) {
        Ok(()) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let file = SequentialWriter::new(storage.create_new(tmp)?);
    let mut writer = CrcWriter {
        inner: BufWriter::with_capacity(256 * 1024, file),
        crc: 0,
    };
    writer.write_all(MAGIC)?;
    writer.write_all(&VERSION.to_be_bytes())?;
    writer.write_all(&zxid.as_u64().to_be_bytes())?;
    snapshot.write_to(&mut writer)?;
    let crc = writer.crc;
    let mut inner = writer.inner;
    inner.write_all(&crc.to_be_bytes())?;
    let file = inner.into_inner().map_err(|err| err.into_error())?;
    file.sync()
}

/// Why a snapshot file cannot be restored.
enum Unusable {
    /// Damaged (or unreadable): an older snapshot may stand in.
    Damaged(String),
    /// Another format version.
    Version(u32),
}

impl From<String> for Unusable {
    fn from(reason: String) -> Self {
        Unusable::Damaged(reason)
    }
}

/// Checks a snapshot file's header and checksum; returns the length of the machine bytes.
fn verify(storage: &dyn Storage, file: &SnapshotFile) -> Result<u64, Unusable> {
    let (reader, len) = storage
        .open_read(&file.path)
        .map_err(|err| err.to_string())?;
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let Some(body_len) = len.checked_sub(HEADER_LEN + TRAILER_LEN) else {
        if len >= 12 {
            // Long enough to say its version: an unknown one is not damage.
            let mut start = [0; 12];
            reader
                .read_exact(&mut start)
                .map_err(|err| err.to_string())?;
            if &start[..8] == MAGIC {
                let version = u32::from_be_bytes([start[8], start[9], start[10], start[11]]);
                if version != VERSION {
                    return Err(Unusable::Version(version));
                }
            }
        }
        return Err(format!("only {len} bytes long").into());
    };
    let mut header = [0; HEADER_LEN as usize];
    reader
        .read_exact(&mut header)
        .map_err(|err| err.to_string())?;
    check_header(&header, file.zxid)?;
    let mut crc = crc32c::crc32c(&header);
    let mut remaining = body_len;
    let mut buf = vec![0; 256 * 1024];
    while remaining > 0 {
        let want = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        let chunk = &mut buf[..want];
        reader.read_exact(chunk).map_err(|err| err.to_string())?;
        crc = crc32c::crc32c_append(crc, chunk);
        remaining -= want as u64;
    }
    let mut trailer = [0; TRAILER_LEN as usize];
    reader
        .read_exact(&mut trailer)
        .map_err(|err| err.to_string())?;
    let stored = u32::from_be_bytes(trailer);
    if stored != crc {
        return Err(
            format!("checksum mismatch: stored {stored:#010x}, computed {crc:#010x}").into(),
        );
    }
    Ok(body_len)
}

fn check_header(header: &[u8; HEADER_LEN as usize], name_zxid: Zxid) -> Result<(), Unusable> {
    if &header[..8] != MAGIC {
        return Err("bad magic".to_string().into());
    }
    let mut version = [0; 4];
    version.copy_from_slice(&header[8..12]);
    let version = u32::from_be_bytes(version);
    if version != VERSION {
        return Err(Unusable::Version(version));
    }
    let mut zxid = [0; 8];
    zxid.copy_from_slice(&header[12..20]);
    let zxid = Zxid::from_u64(u64::from_be_bytes(zxid));
    if zxid != name_zxid {
        return Err(
            format!("header zxid {zxid} does not match the file name's {name_zxid}").into(),
        );
    }
    Ok(())
}

/// Restores the newest snapshot in `dir` whose checksum verifies into `machine`, skipping (with
/// a warning) damaged newer ones. Returns its zxid, or `None` if there are no snapshot files.
///
/// Fails with [`SnapshotError::UnsupportedVersion`] at a snapshot of another format version,
/// and with [`SnapshotError::NoneUsable`] if snapshot files exist but every one is damaged.
pub fn restore_newest<M: StateMachine>(
    storage: &dyn Storage,
    dir: &Path,
    machine: &mut M,
) -> Result<Option<Zxid>, SnapshotError> {
    let files = list(storage, dir)?;
    let mut failures = Vec::new();
    for file in files.iter().rev() {
        let body_len = match verify(storage, file) {
            Ok(body_len) => body_len,
            Err(Unusable::Version(version)) => {
                return Err(SnapshotError::UnsupportedVersion {
                    path: file.path.clone(),
                    version,
                })
            }
            Err(Unusable::Damaged(reason)) => {
                tracing::warn!(
                    file = %file.path.display(),
                    %reason,
                    "skipping unusable snapshot; falling back to an older one"
                );
                failures.push((file.path.clone(), reason));
                continue;
            }
        };
        let (reader, _) = storage.open_read(&file.path).map_err(io_err(&file.path))?;
        let mut reader = BufReader::with_capacity(256 * 1024, reader);
        io::copy(&mut (&mut reader).take(HEADER_LEN), &mut io::sink())
            .map_err(io_err(&file.path))?;
        let mut body = reader.take(body_len);
        machine
            .restore(&mut body)
            .map_err(|source| SnapshotError::Restore {
                path: file.path.clone(),
                source,
            })?;
        tracing::info!(file = %file.path.display(), zxid = %file.zxid, "restored snapshot");
        return Ok(Some(file.zxid));
    }
    if failures.is_empty() {
        Ok(None)
    } else {
        Err(SnapshotError::NoneUsable {
            dir: dir.to_path_buf(),
            failures,
        })
    }
}

/// Deletes all but the newest `keep` snapshots; returns the zxid of the oldest one kept.
pub fn retain_newest(
    storage: &dyn Storage,
    dir: &Path,
    keep: usize,
) -> Result<Option<Zxid>, SnapshotError> {
    let files = list(storage, dir)?;
    let excess = files.len().saturating_sub(keep);
    for file in &files[..excess] {
        storage.remove(&file.path).map_err(io_err(&file.path))?;
    }
    if excess > 0 {
        storage.sync_dir(dir).map_err(io_err(dir))?;
    }
    Ok(files.get(excess).map(|file| file.zxid))
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};

    use super::*;
    use crate::storage::OsStorage;
    use crate::Epoch;

    struct Bytes(Vec<u8>);
    impl Snapshot for Bytes {
        fn write_to(&self, writer: &mut dyn Write) -> io::Result<()> {
            writer.write_all(&self.0)
        }
    }

    /// A machine whose whole state is a byte string.
    #[derive(Default)]
    struct Blob(Vec<u8>);
    impl StateMachine for Blob {
        type Output = ();
        type Snapshot = Bytes;
        fn apply(&mut self, _: Zxid, txn: &[u8]) {
            self.0.extend_from_slice(txn);
        }
        fn snapshot(&self) -> Bytes {
            Bytes(self.0.clone())
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

    #[test]
    fn written_snapshot_restores() {
        let dir = tempfile::tempdir().unwrap();
        write(&OsStorage, dir.path(), z(3), &Bytes(b"hello".to_vec())).unwrap();
        let mut machine = Blob::default();
        assert_eq!(
            restore_newest(&OsStorage, dir.path(), &mut machine).unwrap(),
            Some(z(3))
        );
        assert_eq!(machine.0, b"hello");
    }

    #[test]
    fn no_snapshot_restores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut machine = Blob(b"fresh".to_vec());
        assert_eq!(
            restore_newest(&OsStorage, dir.path(), &mut machine).unwrap(),
            None
        );
        assert_eq!(machine.0, b"fresh");
    }

    #[test]
    fn damaged_newest_snapshot_falls_back_to_older() {
        let dir = tempfile::tempdir().unwrap();
        write(&OsStorage, dir.path(), z(1), &Bytes(b"old".to_vec())).unwrap();
        let newest = write(&OsStorage, dir.path(), z(2), &Bytes(b"new state".to_vec())).unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        bytes[HEADER_LEN as usize + 2] ^= 0x40;
        fs::write(&newest, bytes).unwrap();

        let mut machine = Blob::default();
        assert_eq!(
            restore_newest(&OsStorage, dir.path(), &mut machine).unwrap(),
            Some(z(1))
        );
        assert_eq!(machine.0, b"old");
    }

    #[test]
    fn truncated_only_snapshot_fails_the_restore() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&OsStorage, dir.path(), z(1), &Bytes(b"state".to_vec())).unwrap();
        let len = fs::metadata(&path).unwrap().len();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let mut machine = Blob::default();
        let err = restore_newest(&OsStorage, dir.path(), &mut machine).unwrap_err();
        let SnapshotError::NoneUsable { failures, .. } = &err else {
            panic!("expected NoneUsable, got {err}");
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].0, path);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn unknown_version_is_an_error_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        write(&OsStorage, dir.path(), z(1), &Bytes(b"old".to_vec())).unwrap();
        let newest = write(&OsStorage, dir.path(), z(2), &Bytes(b"new".to_vec())).unwrap();
        let mut bytes = fs::read(&newest).unwrap();
        bytes[8..12].copy_from_slice(&(VERSION + 1).to_be_bytes());
        fs::write(&newest, bytes).unwrap();

        let mut machine = Blob::default();
        let err = restore_newest(&OsStorage, dir.path(), &mut machine).unwrap_err();
        assert!(
            matches!(&err, SnapshotError::UnsupportedVersion { path, version }
                if path == &newest && *version == VERSION + 1),
            "{err}"
        );
        assert!(machine.0.is_empty(), "no fallback to the older snapshot");
    }

    #[test]
    fn retain_newest_deletes_older_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        for counter in 1..=5 {
            write(
                &OsStorage,
                dir.path(),
                z(counter),
                &Bytes(vec![counter as u8]),
            )
            .unwrap();
        }
        assert_eq!(
            retain_newest(&OsStorage, dir.path(), 3).unwrap(),
            Some(z(3))
        );
        let zxids: Vec<Zxid> = list(&OsStorage, dir.path())
            .unwrap()
            .iter()
            .map(|f| f.zxid)
            .collect();
        assert_eq!(zxids, vec![z(3), z(4), z(5)]);
    }
}
