//! The append-only txn log.
//!
//! The log is a sequence of segment files `log.<first zxid as 16 hex digits>` in the data dir.
//! Each holds records, back to back:
//!
//! ```text
//! length: u32 BE (payload bytes) | crc32c: u32 BE (over zxid + payload) | zxid: u64 BE | payload
//! ```
//!
//! Zxids strictly increase within and across segments. A batch of records is written with one
//! `write` and made durable with one `sync_data` (group commit).
//!
//! Recovery ([`Log::open`]) tells a crash from corruption: a crash can only tear the end of the
//! last segment, so a bad record there with nothing valid after it is cut off (with a warning);
//! a bad record anywhere else is [`LogError::Corrupt`] and the server must refuse to start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::fsutil::sync_dir;
use crate::Zxid;

/// The largest payload a record may carry. A length field above it is garbage, so a corrupt
/// length can never make recovery allocate or skip an absurd amount.
pub const RECORD_PAYLOAD_MAX: usize = 64 * 1024 * 1024;

/// Bytes before the payload: length, crc32c, zxid.
pub const RECORD_HEADER_LEN: usize = 16;

/// A segment that has grown past this is closed and the next batch starts a new one, which
/// keeps recovery (it reads a segment at once) and purging fine-grained.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

const SEGMENT_PREFIX: &str = "log.";

/// Why the log could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("txn log {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A record that is not a torn tail is unreadable: refuse to serve rather than serve wrong data.
    #[error("txn log {} is corrupt at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier append failed; the log is in an unknown state and accepts no more writes.
    #[error("txn log {} is unusable after an earlier write error", dir.display())]
    Failed { dir: PathBuf },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One segment file and the zxid of its first record (its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub first_zxid: Zxid,
    pub path: PathBuf,
}

/// The segment batches are appended to.
#[derive(Debug)]
struct Active {
    file: File,
    len: u64,
}

/// An open txn log.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    /// Every segment on disk, in first-zxid order. Invariant: if `active` is some, it is the last.
    segments: Vec<Segment>,
    /// `None`: the next append creates a new segment named after its first zxid.
    active: Option<Active>,
    /// The zxid of the last record in the log, `Zxid::ZERO` if none.
    last_zxid: Zxid,
    /// Set when a write or sync failed: what is on disk past `last_zxid` is unknown.
    failed: bool,
}

impl Log {
    /// Opens the log in `dir`, validating every record and calling `visit` with each one in zxid
    /// order. A torn tail of the last segment is truncated (a `warn!` names the file and
    /// offset); any other bad record fails with [`LogError::Corrupt`].
    ///
    /// Appends after `open` go to a new segment: recovered segments are never written again.
    pub fn open(dir: &Path, mut visit: impl FnMut(Zxid, &[u8])) -> Result<Log, LogError> {
        let mut segments = list_segments(dir)?;
        let mut last_zxid = Zxid::ZERO;
        let mut index = 0;
        while index < segments.len() {
            let is_last = index + 1 == segments.len();
            let segment = &segments[index];
            let bytes = fs::read(&segment.path).map_err(io_err(&segment.path))?;
            let valid_len = scan_segment(segment, &bytes, is_last, &mut last_zxid, &mut visit)?;
            if valid_len < bytes.len() {
                // Only a torn tail of the last segment gets here; `scan_segment` fails otherwise.
                tracing::warn!(
                    file = %segment.path.display(),
                    offset = valid_len,
                    dropped_bytes = bytes.len() - valid_len,
                    "txn log has a torn tail (a crash during a write); truncating it"
                );
                truncate(&segment.path, valid_len as u64)?;
            }
            if valid_len == 0 && is_last {
                // An empty last segment (crash right after creating it): drop it, so that no
                // segment exists without a first record matching its name.
                let path = segment.path.clone();
                fs::remove_file(&path).map_err(io_err(&path))?;
                sync_dir(dir).map_err(io_err(dir))?;
                segments.pop();
            }
            index += 1;
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            segments,
            active: None,
            last_zxid,
            failed: false,
        })
    }

    /// The zxid of the last record, `Zxid::ZERO` if the log is empty.
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// The segments on disk, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Appends `batch` with one write and one `sync_data`. On return the records are durable.
    ///
    /// # Panics
    /// If zxids do not strictly increase (within the batch and after [`Log::last_zxid`]) or a
    /// payload exceeds [`RECORD_PAYLOAD_MAX`]: the caller assigns zxids, so that is our bug.
    pub fn append_batch(&mut self, batch: &[(Zxid, &[u8])]) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        let Some(&(first_zxid, _)) = batch.first() else {
            return Ok(());
        };
        let mut prev = self.last_zxid;
        let mut bytes_len = 0;
        for &(zxid, payload) in batch {
            assert!(
                zxid > prev,
                "txn log {}: append of zxid {zxid} after {prev}: zxids must strictly increase",
                self.dir.display()
            );
            assert!(
                payload.len() <= RECORD_PAYLOAD_MAX,
                "txn log {}: zxid {zxid} payload of {} bytes exceeds {RECORD_PAYLOAD_MAX}",
                self.dir.display(),
                payload.len()
            );
            prev = zxid;
            bytes_len += RECORD_HEADER_LEN + payload.len();
        }
        let mut buf = Vec::with_capacity(bytes_len);
        for &(zxid, payload) in batch {
            encode_record(&mut buf, zxid, payload);
        }

        let result = self.write_synced(first_zxid, &buf);
        if result.is_err() {
            self.failed = true;
        } else {
            self.last_zxid = prev;
        }
        result
    }

    fn write_synced(&mut self, first_zxid: Zxid, buf: &[u8]) -> Result<(), LogError> {
        if self
            .active
            .as_ref()
            .is_some_and(|active| active.len >= SEGMENT_BYTES_MAX)
        {
            self.active = None;
        }
        let created = self.active.is_none();
        if created {
            let path = self.dir.join(segment_name(first_zxid));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            self.segments.push(Segment { first_zxid, path });
            self.active = Some(Active { file, len: 0 });
        }
        let path = self.active_path().to_path_buf();
        let Some(active) = self.active.as_mut() else {
            unreachable!("an active segment was just ensured");
        };
        active.file.write_all(buf).map_err(io_err(&path))?;
        active.file.sync_data().map_err(io_err(&path))?;
        active.len += buf.len() as u64;
        if created {
            // The new file's directory entry must be durable too, or a crash could lose it.
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(())
    }

    fn active_path(&self) -> &Path {
        self.segments
            .last()
            .map(|segment| segment.path.as_path())
            .unwrap_or(&self.dir)
    }

    /// Makes every later append fail, as after a disk error.
    #[cfg(test)]
    pub(crate) fn fail_for_test(&mut self) {
        self.failed = true;
    }

    /// Closes the current segment: the next append starts a new one.
    pub fn roll(&mut self) {
        self.active = None;
    }

    /// Deletes the segments whose every record has a zxid below `zxid` (some later segment
    /// starts at or before it). The last segment is never deleted. Returns the deleted paths.
    pub fn purge_covered_by(&mut self, zxid: Zxid) -> Result<Vec<PathBuf>, LogError> {
        let mut deletable = 0;
        while deletable + 1 < self.segments.len() && self.segments[deletable + 1].first_zxid <= zxid
        {
            deletable += 1;
        }
        let mut deleted = Vec::with_capacity(deletable);
        for segment in self.segments.drain(..deletable) {
            fs::remove_file(&segment.path).map_err(io_err(&segment.path))?;
            deleted.push(segment.path);
        }
        if !deleted.is_empty() {
            sync_dir(&self.dir).map_err(io_err(&self.dir))?;
        }
        Ok(deleted)
    }
}

/// The file name of the segment whose first record is `first_zxid`.
pub fn segment_name(first_zxid: Zxid) -> String {
    format!("{SEGMENT_PREFIX}{:016x}", first_zxid.as_u64())
}

/// Parses `log.<16 hex digits>`; anything else is not a segment.
fn parse_segment_name(name: &str) -> Option<Zxid> {
    let hex = name.strip_prefix(SEGMENT_PREFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(Zxid::from_u64)
}

fn list_segments(dir: &Path) -> Result<Vec<Segment>, LogError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(first_zxid) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segments.push(Segment {
            first_zxid,
            path: entry.path(),
        });
    }
    segments.sort_by_key(|segment| segment.first_zxid);
    Ok(segments)
}

fn encode_record(buf: &mut Vec<u8>, zxid: Zxid, payload: &[u8]) {
    let zxid_bytes = zxid.as_u64().to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&zxid_bytes), payload);
    // The length fits: append_batch asserted payload.len() <= RECORD_PAYLOAD_MAX < u32::MAX.
    let len = payload.len() as u32;
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(&crc.to_be_bytes());
    buf.extend_from_slice(&zxid_bytes);
    buf.extend_from_slice(payload);
}
const _: () = assert!(RECORD_PAYLOAD_MAX < u32::MAX as usize);

/// A record decoded from the front of a buffer.
struct Record<'a> {
    zxid: Zxid,
    payload: &'a [u8],
    /// Header plus payload.
    len: usize,
}

/// Decodes the record at the front of `buf`, or says why it is not one.
fn decode_record(buf: &[u8]) -> Result<Record<'_>, String> {
    let Some(header) = buf.get(..RECORD_HEADER_LEN) else {
        return Err(format!(
            "short record header: {} of {RECORD_HEADER_LEN} bytes",
            buf.len()
        ));
    };
    let field =
        |at: usize| -> [u8; 4] { [header[at], header[at + 1], header[at + 2], header[at + 3]] };
    let payload_len = u32::from_be_bytes(field(0)) as usize;
    if payload_len > RECORD_PAYLOAD_MAX {
        return Err(format!(
            "record length {payload_len} exceeds the maximum {RECORD_PAYLOAD_MAX}"
        ));
    }
    let stored_crc = u32::from_be_bytes(field(4));
    let len = RECORD_HEADER_LEN + payload_len;
    let Some(checked) = buf.get(8..len) else {
        return Err(format!(
            "short record: {len} bytes expected, {} present",
            buf.len()
        ));
    };
    let crc = crc32c::crc32c(checked);
    if crc != stored_crc {
        return Err(format!(
            "checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"
        ));
    }
    let mut zxid_bytes = [0; 8];
    zxid_bytes.copy_from_slice(&checked[..8]);
    Ok(Record {
        zxid: Zxid::from_u64(u64::from_be_bytes(zxid_bytes)),
        payload: &checked[8..],
        len,
    })
}

/// Validates one segment's records, visiting each; returns the length of its valid prefix.
/// That is shorter than `bytes` only for a torn tail of the last segment.
fn scan_segment(
    segment: &Segment,
    bytes: &[u8],
    is_last: bool,
    last_zxid: &mut Zxid,
    visit: &mut impl FnMut(Zxid, &[u8]),
) -> Result<usize, LogError> {
    let corrupt = |offset: usize, reason: String| LogError::Corrupt {
        file: segment.path.clone(),
        offset: offset as u64,
        reason,
    };
    let mut offset = 0;
    while offset < bytes.len() {
        match decode_record(&bytes[offset..]) {
            Ok(record) => {
                if offset == 0 && record.zxid != segment.first_zxid {
                    return Err(corrupt(
                        offset,
                        format!(
                            "first record has zxid {}, but the file name says {}",
                            record.zxid, segment.first_zxid
                        ),
                    ));
                }
                if record.zxid <= *last_zxid {
                    return Err(corrupt(
                        offset,
                        format!(
                            "zxid {} does not follow the previous record's {}",
                            record.zxid, last_zxid
                        ),
                    ));
                }
                visit(record.zxid, record.payload);
                *last_zxid = record.zxid;
                offset += record.len;
            }
            Err(reason) => {
                if !is_last {
                    return Err(corrupt(
                        offset,
                        format!("{reason} (not in the last segment)"),
                    ));
                }
                if let Some(later) = valid_record_after(bytes, offset + 1, *last_zxid) {
                    return Err(corrupt(
                        offset,
                        format!("{reason}; a valid record follows at byte offset {later}"),
                    ));
                }
                return Ok(offset);
            }
        }
    }
    Ok(offset)
}

/// The offset of a valid record starting anywhere at or after `from` whose zxid follows
/// `after`: its presence means the bad record before it is damage, not a torn write.
fn valid_record_after(bytes: &[u8], from: usize, after: Zxid) -> Option<usize> {
    (from..bytes.len())
        .find(|&offset| decode_record(&bytes[offset..]).is_ok_and(|record| record.zxid > after))
}

fn truncate(path: &Path, len: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Epoch;

    fn z(counter: u32) -> Zxid {
        Zxid::new(Epoch(1), counter)
    }

    type Records = Vec<(Zxid, Vec<u8>)>;

    fn read_all(dir: &Path) -> Result<(Log, Records), LogError> {
        let mut records = Vec::new();
        let log = Log::open(dir, |zxid, payload| records.push((zxid, payload.to_vec())))?;
        Ok((log, records))
    }

    fn append(log: &mut Log, counters: std::ops::RangeInclusive<u32>) {
        let payloads: Vec<(Zxid, Vec<u8>)> = counters
            .map(|c| (z(c), format!("txn-{c}").into_bytes()))
            .collect();
        let batch: Vec<(Zxid, &[u8])> = payloads.iter().map(|(z, p)| (*z, p.as_slice())).collect();
        log.append_batch(&batch).unwrap();
    }

    #[test]
    fn appended_records_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records) = read_all(dir.path()).unwrap();
        assert!(records.is_empty());
        append(&mut log, 1..=3);
        append(&mut log, 4..=4);
        assert_eq!(log.last_zxid(), z(4));
        drop(log);

        let (log, records) = read_all(dir.path()).unwrap();
        let zxids: Vec<Zxid> = records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, vec![z(1), z(2), z(3), z(4)]);
        assert_eq!(records[2].1, b"txn-3");
        assert_eq!(log.last_zxid(), z(4));
        assert_eq!(log.segments().len(), 1);
        assert!(log.segments()[0].path.ends_with(segment_name(z(1))));
    }

    #[test]
    fn roll_starts_a_new_segment_and_purge_keeps_the_covering_one() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=3);
        log.roll();
        append(&mut log, 4..=6);
        log.roll();
        append(&mut log, 7..=9);
        assert_eq!(log.segments().len(), 3);

        // Snapshot at 5: segment 1..=3 is covered, 4..=6 holds 6 which is not.
        let deleted = log.purge_covered_by(z(5)).unwrap();
        assert_eq!(deleted.len(), 1);
        assert_eq!(log.segments()[0].first_zxid, z(4));
        // The last segment is never purged, even if wholly covered.
        log.purge_covered_by(z(100)).unwrap();
        assert_eq!(log.segments().len(), 1);
        assert_eq!(log.segments()[0].first_zxid, z(7));
        drop(log);

        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.first().map(|r| r.0), Some(z(7)));
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn reopened_log_appends_to_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        drop(log);
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 3..=3);
        assert_eq!(log.segments().len(), 2);
        drop(log);
        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    #[should_panic(expected = "zxids must strictly increase")]
    fn append_out_of_order_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 2..=2);
        append(&mut log, 1..=1);
    }

    #[test]
    fn torn_tail_of_zeros_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=3);
        let path = log.segments()[0].path.clone();
        drop(log);
        let good_len = fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[0; 4096]).unwrap();
        drop(file);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(log.last_zxid(), z(3));
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn wholly_torn_last_segment_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        log.roll();
        append(&mut log, 2..=2);
        let path = log.segments()[1].path.clone();
        drop(log);
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(7).unwrap();
        drop(file);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(log.segments().len(), 1);
        assert!(!path.exists());
    }

    #[test]
    fn bad_record_in_an_earlier_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        log.roll();
        append(&mut log, 3..=3);
        let path = log.segments()[0].path.clone();
        drop(log);
        // Cut the earlier segment's last record short: that can't be a crash, it was synced
        // before the next segment was written.
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();

        let err = read_all(dir.path()).unwrap_err();
        let LogError::Corrupt { file, offset, .. } = &err else {
            panic!("expected Corrupt, got {err}");
        };
        assert_eq!(file, &path);
        assert_eq!(*offset, (RECORD_HEADER_LEN + 5) as u64);
    }

    #[test]
    fn garbage_length_is_bounded() {
        let mut buf = Vec::new();
        encode_record(&mut buf, z(1), b"abc");
        buf[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = decode_record(&buf).err().unwrap();
        assert!(err.contains("exceeds the maximum"), "{err}");
    }

    #[test]
    fn segment_names_round_trip() {
        let zxid = Zxid::new(Epoch(0xab), 0x12);
        let name = segment_name(zxid);
        assert_eq!(name, "log.000000ab00000012");
        assert_eq!(parse_segment_name(&name), Some(zxid));
        assert_eq!(parse_segment_name("log.12"), None);
        assert_eq!(parse_segment_name("log.000000ab00000012.tmp"), None);
    }
}
