//! The append-only txn log.
//!
//! # On-disk format
//!
//! The log is a sequence of segment files `log.<zxid of its first record, 16 hex digits>` in the
//! data dir. All integers are big-endian; every checksum is crc32c.
//!
//! ```text
//! segment = segment header, batch*
//! segment header (32 bytes):
//!     magic "COORDLOG" | version: u32 (1) | salt: u64 | prev zxid: u64 | crc: u32 (over the 28 bytes before it)
//! batch = batch header, body, body crc
//! batch header (28 bytes):
//!     salt: u64 | body length: u32 | record count: u32 | first zxid: u64 | crc: u32 (over the 24 bytes before it)
//! body = record{record count}, exactly `body length` bytes
//! record (12-byte header):
//!     payload length: u32 | zxid: u64 | payload
//! body crc: u32 (over the body)
//! ```
//!
//! - **History is chained.** A segment's `prev zxid` is the last zxid logged before it (the
//!   previous segment's last record, or the snapshot the log continued from; `Zxid::ZERO` for
//!   the first segment ever). [`Log::open`] requires every segment's `prev zxid` to equal the
//!   previous segment's last zxid, so a lost segment is found even at an epoch boundary, and
//!   [`Log::base`] tells the caller where the surviving history starts.
//! - **Batches frame group commits.** One [`Log::append_batch`] is one batch: one `write`, one
//!   `sync_data`. Zxids strictly increase within and across batches and segments.
//! - **The salt** is random per segment and repeated in each batch header. Client bytes inside a
//!   payload cannot carry it, so they can never pass for a batch header of this segment.
//! - A new segment's header is made durable (file, then directory) before its first batch is
//!   written, so a bad segment header in a file longer than the header is damage, not a crash.
//! - **Segments are preallocated**: zeros are written [`PREALLOCATE_BYTES`] at a time ahead of
//!   the batches, so that most `sync_data` calls overwrite blocks the file already has and need
//!   not also commit a new file size and new blocks (on ext4 here: 79 µs for a 4 KiB overwrite
//!   and `fdatasync`, 142 µs for an append; `fallocate` alone gives no gain, its extents still
//!   change at the first write). A segment is trimmed to its batches when it is closed, and at
//!   the next open if a crash came first.
//!
//! # Recovery
//!
//! [`Log::open`] tells a crash from corruption. Only the last batch of the last segment can be
//! in flight at a crash, and nothing in it was acknowledged; a crash can leave it cut short or,
//! after power loss, with holes (pages that never reached the disk) before pages that did.
//! Zeros from a bad batch to the end of a segment are preallocated space that was never
//! written (or a batch none of whose pages reached the disk), and are dropped quietly. The
//! price of preallocation: a durable last batch that a faulty disk later returns as all zeros
//! (a lost write) looks the same, where an unpreallocated file's synced size would have told.
//! So, batch by batch: a bad batch (header or body checksum fails, or it runs past the end of
//! the file) with no valid batch header of this segment's salt anywhere after it is a torn tail
//! and is truncated with a warning; a bad batch with such a header after it, or in any earlier
//! segment, is [`LogError::Corrupt`] (naming the file and the bad batch's byte offset) and the
//! server must refuse to start. The search for a later header checks a fixed-size header at
//! each offset, so recovery stays linear in the segment size.

use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::storage::{write_atomically, OsStorage, Storage, StorageFile};
use crate::Zxid;

mod format;
mod recovery;

use format::{decode_segment_header, encode_batch, encode_segment_header, HeaderError};
use recovery::Scan;

/// The largest payload a record may carry.
pub const RECORD_PAYLOAD_MAX: usize = 64 * 1024 * 1024;

/// Bytes of a record before its payload: payload length, zxid.
pub const RECORD_HEADER_LEN: usize = 12;

/// Bytes of a segment header: magic, version, salt, prev zxid, crc.
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Bytes of a batch header: salt, body length, record count, first zxid, crc.
pub const BATCH_HEADER_LEN: usize = 28;

/// Bytes after a batch's body: its crc.
pub const BATCH_TRAILER_LEN: usize = 4;

/// The largest batch body: the length field is a u32.
pub const BATCH_BODY_MAX: usize = u32::MAX as usize;

/// A segment that has grown past this is closed and the next batch starts a new one, which
/// keeps recovery (it reads a segment at once) and purging fine-grained.
pub const SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Zeros written ahead of the batches of a segment at a time (see the module docs). Each
/// extension costs one slower `sync_data`, so this trades that stall against how often it comes.
pub const PREALLOCATE_BYTES: u64 = 1024 * 1024;

/// The segment format version this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;

const SEGMENT_MAGIC: &[u8; 8] = b"COORDLOG";
const SEGMENT_PREFIX: &str = "log.";

const _: () = assert!(RECORD_PAYLOAD_MAX + RECORD_HEADER_LEN <= BATCH_BODY_MAX);
const _: () = assert!(SEGMENT_HEADER_LEN == 8 + 4 + 8 + 8 + 4);
const _: () = assert!(BATCH_HEADER_LEN == 8 + 4 + 4 + 8 + 4);

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
    /// A batch that is not a torn tail is unreadable: refuse to serve rather than serve wrong
    /// data. `offset` is where the bad batch (or segment header) starts.
    #[error("txn log {} is corrupt at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A segment does not continue the one before it: the txns in between are missing.
    #[error(
        "txn log {} follows zxid {recorded}, but the previous segment ends at {after}: \
         txns are missing (a deleted or lost segment?)",
        file.display()
    )]
    Gap {
        file: PathBuf,
        /// The last zxid of the previous segment.
        after: Zxid,
        /// The previous zxid this segment's header records.
        recorded: Zxid,
        /// This segment's first zxid.
        first: Zxid,
    },
    /// A segment written by a newer (or unknown) format version.
    #[error(
        "txn log {} has format version {version}; this build reads version {SEGMENT_VERSION}",
        file.display()
    )]
    UnsupportedVersion { file: PathBuf, version: u32 },
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

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The zxid of its first record (its name).
    pub first_zxid: Zxid,
    /// The last zxid logged before it, from its header.
    pub prev_zxid: Zxid,
    /// The zxid of its last record.
    pub last_zxid: Zxid,
    pub path: PathBuf,
}

/// The segment batches are appended to.
#[derive(Debug)]
struct Active {
    file: Box<dyn StorageFile>,
    /// Bytes of header and batches.
    len: u64,
    /// The file's length: zeros from `len` on.
    preallocated: u64,
    salt: u64,
}

impl Active {
    /// Writes zeros from the end of the file on, so that it holds `len + more` bytes and,
    /// rounded up, a multiple of [`PREALLOCATE_BYTES`]. Durable with the next `sync_data`.
    fn preallocate(&mut self, more: u64) -> io::Result<()> {
        let needed = self.len.saturating_add(more);
        if needed <= self.preallocated {
            return Ok(());
        }
        let target = needed.div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let mut at = self.preallocated;
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64);
            self.file.write_all_at(&ZEROS[..n as usize], at)?;
            at += n;
        }
        self.preallocated = target;
        Ok(())
    }
}

impl Drop for Active {
    /// Trims the zeros after the last batch: a closed segment is never written again. Not
    /// synced: after a crash, recovery drops the zeros instead.
    fn drop(&mut self) {
        if self.preallocated > self.len {
            if let Err(err) = self.file.set_len(self.len) {
                tracing::debug!(%err, "could not trim a txn log segment's preallocated zeros");
            }
        }
    }
}

/// An open txn log.
#[derive(Debug)]
pub struct Log {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    /// Every segment on disk, in first-zxid order, each one's `prev_zxid` the last zxid of the
    /// one before. Invariant: if `active` is some, it is the last.
    segments: Vec<Segment>,
    /// `None`: the next append creates a new segment named after its first zxid.
    active: Option<Active>,
    /// The zxid of the last record in the log; with no segments, what the next segment will
    /// record as its previous zxid (`Zxid::ZERO`, or set by [`Log::start_after`]).
    last_zxid: Zxid,
    /// Set when a write or sync failed: what is on disk past `last_zxid` is unknown.
    failed: bool,
    /// With no segments left after recovery removed a last segment that held no batches: the
    /// previous zxid its header recorded, i.e. where the history it continued ends.
    stub_base: Option<Zxid>,
    /// Recovery dropped bytes after the valid prefix of the last segment (a torn or damaged
    /// last batch): records there may have been durable, and acknowledged, before the damage.
    dropped_tail: bool,
}

impl Log {
    /// Opens the log in `dir`, validating every batch and calling `visit` with each record in
    /// zxid order. A torn tail of the last segment is truncated (a `warn!` names the file and
    /// offset); a last segment left with no batches is removed. Any other bad batch fails with
    /// [`LogError::Corrupt`]; a segment that does not continue the previous one with
    /// [`LogError::Gap`].
    ///
    /// Appends after `open` go to a new segment: recovered segments are never written again.
    pub fn open(dir: &Path, visit: impl FnMut(Zxid, &[u8])) -> Result<Log, LogError> {
        Log::open_with(dir, visit, || Ok(()))
    }

    /// [`Log::open`], calling `before_cut` once before a torn or damaged tail is cut off (so
    /// a caller can make durable that it was: after the cut the log looks whole).
    pub fn open_with(
        dir: &Path,
        visit: impl FnMut(Zxid, &[u8]),
        before_cut: impl FnMut() -> Result<(), LogError>,
    ) -> Result<Log, LogError> {
        Log::open_in(Arc::new(OsStorage), dir, visit, before_cut)
    }

    /// [`Log::open_with`] on `storage`.
    pub fn open_in(
        storage: Arc<dyn Storage>,
        dir: &Path,
        mut visit: impl FnMut(Zxid, &[u8]),
        mut before_cut: impl FnMut() -> Result<(), LogError>,
    ) -> Result<Log, LogError> {
        let storage_ref: &dyn Storage = &*storage;
        let found = list_segments(storage_ref, dir)?;
        let count = found.len();
        let mut segments: Vec<Segment> = Vec::with_capacity(count);
        let mut last_zxid = Zxid::ZERO;
        let mut stub_base = None;
        let mut dropped_tail = false;
        for (index, (first_zxid, path)) in found.into_iter().enumerate() {
            let is_last = index + 1 == count;
            let bytes = storage_ref.read(&path).map_err(io_err(&path))?;
            let header = match decode_segment_header(&bytes) {
                Ok(header) => header,
                Err(HeaderError::Unsupported(version)) => {
                    return Err(LogError::UnsupportedVersion {
                        file: path,
                        version,
                    })
                }
                // The header was synced before any batch was written: a bad one before
                // batches is damage; before nothing but preallocated zeros, a crash while
                // creating the segment.
                Err(HeaderError::Bad(reason))
                    if is_last
                        && bytes
                            .get(SEGMENT_HEADER_LEN..)
                            .is_none_or(|rest| rest.iter().all(|b| *b == 0)) =>
                {
                    tracing::warn!(
                        file = %path.display(),
                        %reason,
                        "txn log segment was being created at a crash; removing it"
                    );
                    remove_segment(storage_ref, dir, &path)?;
                    continue;
                }
                Err(HeaderError::Bad(reason)) => {
                    return Err(LogError::Corrupt {
                        file: path,
                        offset: 0,
                        reason: format!("bad segment header: {reason}"),
                    })
                }
            };
            if segments.is_empty() {
                last_zxid = header.prev_zxid;
            } else if header.prev_zxid != last_zxid {
                return Err(LogError::Gap {
                    file: path,
                    after: last_zxid,
                    recorded: header.prev_zxid,
                    first: first_zxid,
                });
            }
            let prev_zxid = header.prev_zxid;
            let mut scan = Scan {
                path: &path,
                bytes: &bytes,
                salt: header.salt,
                first_zxid,
                is_last,
                last_zxid,
                torn: false,
            };
            let valid_len = scan.run(&mut visit)?;
            if scan.torn {
                dropped_tail = true;
                before_cut()?;
            }
            if scan.torn {
                // Only a torn tail of the last segment gets here; `Scan::run` fails otherwise.
                tracing::warn!(
                    file = %path.display(),
                    offset = valid_len,
                    dropped_bytes = bytes.len() - valid_len,
                    "txn log has a torn tail (a crash during a write); truncating it"
                );
            }
            if valid_len == SEGMENT_HEADER_LEN {
                if !is_last {
                    return Err(LogError::Corrupt {
                        file: path,
                        offset: SEGMENT_HEADER_LEN as u64,
                        reason: "segment holds no txns but is not the last one".to_string(),
                    });
                }
                // A crash before the segment's first batch was durable: it holds nothing, so
                // drop it; no segment then exists without a first record matching its name.
                // Its header still says where the history it continued ends.
                if segments.is_empty() {
                    stub_base = Some(prev_zxid);
                }
                remove_segment(storage_ref, dir, &path)?;
                continue;
            }
            if valid_len < bytes.len() {
                truncate(storage_ref, &path, valid_len as u64)?;
            }
            last_zxid = scan.last_zxid;
            segments.push(Segment {
                first_zxid,
                prev_zxid,
                last_zxid,
                path,
            });
        }
        Ok(Log {
            storage,
            dir: dir.to_path_buf(),
            segments,
            active: None,
            last_zxid,
            failed: false,
            stub_base,
            dropped_tail,
        })
    }

    /// Whether [`Log::open`] cut a torn or damaged last batch off. A crash during a write
    /// leaves one, and nothing in it was acknowledged; damage to a batch that was durable looks
    /// the same, and that one may have been. A replica must not count on its log until it is
    /// synced again (see `runtime::disk`).
    pub fn dropped_tail(&self) -> bool {
        self.dropped_tail
    }

    /// The zxid of the last record, or what the log continues from if it has no segments
    /// (`Zxid::ZERO` unless set by [`Log::start_after`]).
    pub fn last_zxid(&self) -> Zxid {
        self.last_zxid
    }

    /// The zxid the surviving history starts after: the first segment's previous zxid (or,
    /// with no segments, that of a segment holding no txns that recovery removed). `None` if
    /// the log has no history at all.
    pub fn base(&self) -> Option<Zxid> {
        self.segments
            .first()
            .map(|segment| segment.prev_zxid)
            .or(self.stub_base)
    }

    /// Makes an empty log continue the history up to `zxid` (held by a snapshot): the first
    /// segment will record `zxid` as its previous zxid, and appends must follow it.
    ///
    /// # Panics
    /// If the log has a history ([`Log::base`] is some) or `zxid` is below [`Log::last_zxid`].
    pub fn start_after(&mut self, zxid: Zxid) {
        assert!(
            self.base().is_none(),
            "txn log {}: start_after({zxid}) on a log with a history",
            self.dir.display()
        );
        assert!(
            zxid >= self.last_zxid,
            "txn log {}: start_after({zxid}) goes back from {}",
            self.dir.display(),
            self.last_zxid
        );
        self.last_zxid = zxid;
    }

    /// The segments on disk, oldest first.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Appends `batch` as one framed batch with one write and one `sync_data`. On return the
    /// records are durable.
    ///
    /// # Panics
    /// If zxids do not strictly increase (within the batch and after [`Log::last_zxid`]), a
    /// payload exceeds [`RECORD_PAYLOAD_MAX`] or the batch body exceeds [`BATCH_BODY_MAX`]:
    /// the caller assigns zxids and sizes batches, so that is our bug.
    pub fn append_batch(&mut self, batch: &[(Zxid, &[u8])]) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        let (Some(&(first_zxid, _)), Some(&(last_zxid, _))) = (batch.first(), batch.last()) else {
            return Ok(());
        };
        let mut prev = self.last_zxid;
        let mut body_len: usize = 0;
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
            body_len = body_len.saturating_add(RECORD_HEADER_LEN + payload.len());
        }
        assert!(
            body_len <= BATCH_BODY_MAX,
            "txn log {}: batch body of {body_len} bytes exceeds {BATCH_BODY_MAX}",
            self.dir.display()
        );
        let result = self.write_synced(first_zxid, batch, body_len);
        if result.is_err() {
            self.failed = true;
        } else {
            self.last_zxid = last_zxid;
            if let Some(segment) = self.segments.last_mut() {
                segment.last_zxid = last_zxid;
            }
        }
        result
    }

    fn write_synced(
        &mut self,
        first_zxid: Zxid,
        batch: &[(Zxid, &[u8])],
        body_len: usize,
    ) -> Result<(), LogError> {
        if self
            .active
            .as_ref()
            .is_some_and(|active| active.len >= SEGMENT_BYTES_MAX)
        {
            self.active = None;
        }
        if self.active.is_none() {
            self.create_segment(first_zxid)?;
        }
        let path = self.active_path().to_path_buf();
        let Some(active) = self.active.as_mut() else {
            unreachable!("an active segment was just ensured");
        };
        let buf = encode_batch(active.salt, batch, body_len);
        active
            .preallocate(buf.len() as u64)
            .map_err(io_err(&path))?;
        active
            .file
            .write_all_at(&buf, active.len)
            .map_err(io_err(&path))?;
        active.file.sync_data().map_err(io_err(&path))?;
        active.len += buf.len() as u64;
        Ok(())
    }

    /// Creates the segment whose first record will be `first_zxid` and makes its header and
    /// directory entry durable before any batch goes in: recovery relies on that order.
    fn create_segment(&mut self, first_zxid: Zxid) -> Result<(), LogError> {
        let path = self.dir.join(segment_name(first_zxid));
        let salt = self.storage.new_salt();
        let prev_zxid = self.last_zxid;
        let file = self.storage.create_new(&path).map_err(io_err(&path))?;
        let mut active = Active {
            file,
            len: 0,
            preallocated: 0,
            salt,
        };
        active
            .preallocate(PREALLOCATE_BYTES)
            .map_err(io_err(&path))?;
        active
            .file
            .write_all_at(&encode_segment_header(salt, prev_zxid), 0)
            .map_err(io_err(&path))?;
        active.len = SEGMENT_HEADER_LEN as u64;
        active.file.sync_data().map_err(io_err(&path))?;
        self.storage
            .sync_dir(&self.dir)
            .map_err(io_err(&self.dir))?;
        self.segments.push(Segment {
            first_zxid,
            prev_zxid,
            last_zxid: prev_zxid,
            path,
        });
        self.active = Some(active);
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
    /// starts at or before it), oldest first. The last segment is never deleted. Returns the
    /// deleted paths.
    ///
    /// Each deletion is made durable before the next, so a crash leaves the surviving segments
    /// a suffix of the log (a chain [`Log::open`] accepts). If a deletion fails, the segments
    /// deleted before it are forgotten and the rest kept.
    pub fn purge_covered_by(&mut self, zxid: Zxid) -> Result<Vec<PathBuf>, LogError> {
        let mut deletable = 0;
        while deletable + 1 < self.segments.len() && self.segments[deletable + 1].first_zxid <= zxid
        {
            deletable += 1;
        }
        let mut removed = 0;
        let mut result = Ok(());
        for segment in &self.segments[..deletable] {
            match self.storage.remove(&segment.path) {
                Ok(()) => {}
                // Already gone: nothing to delete.
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    result = Err(LogError::Io {
                        path: segment.path.clone(),
                        source,
                    });
                    break;
                }
            }
            removed += 1;
            if let Err(source) = self.storage.sync_dir(&self.dir) {
                result = Err(LogError::Io {
                    path: self.dir.clone(),
                    source,
                });
                break;
            }
        }
        let deleted = self
            .segments
            .drain(..removed)
            .map(|segment| segment.path)
            .collect();
        result.map(|()| deleted)
    }

    /// Drops every record after `to`, durably: Zab's TRUNC. The segments wholly after `to`
    /// are deleted newest first, each deletion made durable before the next; the segment
    /// holding `to` is then rewritten without its later records (a tmp file, fsynced, renamed
    /// over it). A crash at any point leaves a log that ends between `to` and where it ended
    /// before, i.e. a prefix of the old one, which [`Log::open`] accepts. The next append
    /// starts a new segment chained to `to`.
    ///
    /// # Panics
    /// If `to` is before the log's history ([`Log::base`]): a caller never truncates into a
    /// snapshot, so that is our bug.
    pub fn truncate_after(&mut self, to: Zxid) -> Result<(), LogError> {
        if self.failed {
            return Err(LogError::Failed {
                dir: self.dir.clone(),
            });
        }
        if to >= self.last_zxid {
            return Ok(());
        }
        assert!(
            self.base().is_none_or(|base| base <= to),
            "txn log {}: truncate after {to}, before its history starts",
            self.dir.display()
        );
        self.active = None;
        let result = self.truncate_segments(to);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn truncate_segments(&mut self, to: Zxid) -> Result<(), LogError> {
        while let Some(segment) = self.segments.last() {
            if segment.first_zxid <= to {
                break;
            }
            let path = segment.path.clone();
            remove_segment(&*self.storage, &self.dir, &path)?;
            // What it continued from is where the history now ends.
            self.last_zxid = segment.prev_zxid;
            if self.segments.len() == 1 {
                self.stub_base = Some(segment.prev_zxid);
            }
            self.segments.pop();
        }
        if let Some(segment) = self.segments.last_mut() {
            if segment.last_zxid > to {
                rewrite_prefix(&*self.storage, segment, to)?;
                segment.last_zxid = to;
            }
            self.last_zxid = segment.last_zxid;
        }
        // Not `to` itself: a log with a hole (txns a snapshot covers were never logged) may end
        // before it, and the next segment must chain to the record that is really last.
        Ok(())
    }

    /// Deletes every segment, newest first, and makes the log continue after `zxid`: what a
    /// follower does once a snapshot at `zxid` replaced its state. The caller makes that
    /// snapshot durable first, and marks the reset so that a crash in the middle is finished
    /// at the next start (a surviving prefix of the old log does not continue the snapshot).
    pub fn reset_after(&mut self, zxid: Zxid) -> Result<(), LogError> {
        self.active = None;
        while let Some(segment) = self.segments.last() {
            let path = segment.path.clone();
            if let Err(err) = remove_segment(&*self.storage, &self.dir, &path) {
                self.failed = true;
                return Err(err);
            }
            self.segments.pop();
        }
        self.stub_base = None;
        self.last_zxid = zxid;
        self.failed = false;
        self.dropped_tail = false;
        Ok(())
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

fn list_segments(storage: &dyn Storage, dir: &Path) -> Result<Vec<(Zxid, PathBuf)>, LogError> {
    let mut segments = Vec::new();
    for path in storage.list(dir).map_err(io_err(dir))? {
        let Some(first_zxid) = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_segment_name)
        else {
            continue;
        };
        segments.push((first_zxid, path));
    }
    segments.sort_by_key(|(first_zxid, _)| *first_zxid);
    Ok(segments)
}

fn remove_segment(storage: &dyn Storage, dir: &Path, path: &Path) -> Result<(), LogError> {
    storage.remove(path).map_err(io_err(path))?;
    storage.sync_dir(dir).map_err(io_err(dir))
}

/// Rewrites `segment` keeping only its records up to `to` (it holds at least its first), as one
/// batch in a new file with the same name and previous zxid, replacing the old one atomically.
fn rewrite_prefix(storage: &dyn Storage, segment: &Segment, to: Zxid) -> Result<(), LogError> {
    let path = &segment.path;
    let bytes = storage.read(path).map_err(io_err(path))?;
    let header = decode_segment_header(&bytes).map_err(|err| LogError::Corrupt {
        file: path.clone(),
        offset: 0,
        reason: match err {
            HeaderError::Bad(reason) => reason,
            HeaderError::Unsupported(version) => format!("format version {version}"),
        },
    })?;
    let mut kept: Vec<(Zxid, Vec<u8>)> = Vec::new();
    let mut scan = Scan {
        path,
        bytes: &bytes,
        salt: header.salt,
        first_zxid: segment.first_zxid,
        is_last: true,
        last_zxid: header.prev_zxid,
        torn: false,
    };
    scan.run(&mut |zxid, payload| {
        if zxid <= to {
            kept.push((zxid, payload.to_vec()));
        }
    })?;
    let records: Vec<(Zxid, &[u8])> = kept.iter().map(|(z, p)| (*z, p.as_slice())).collect();
    let body_len = records
        .iter()
        .map(|(_, p)| RECORD_HEADER_LEN + p.len())
        .sum();
    let salt = storage.new_salt();
    let mut contents = encode_segment_header(salt, header.prev_zxid).to_vec();
    contents.extend_from_slice(&encode_batch(salt, &records, body_len));
    write_atomically(storage, path, &contents).map_err(io_err(path))
}

fn truncate(storage: &dyn Storage, path: &Path, len: u64) -> Result<(), LogError> {
    let mut file = storage.open_write(path).map_err(io_err(path))?;
    file.set_len(len).map_err(io_err(path))?;
    file.sync_data().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    use super::format::{decode_batch, decode_records};
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

    fn payload(counter: u32) -> Vec<u8> {
        format!("txn-{counter}").into_bytes()
    }

    fn append(log: &mut Log, counters: std::ops::RangeInclusive<u32>) {
        let payloads: Vec<(Zxid, Vec<u8>)> = counters.map(|c| (z(c), payload(c))).collect();
        let batch: Vec<(Zxid, &[u8])> = payloads.iter().map(|(z, p)| (*z, p.as_slice())).collect();
        log.append_batch(&batch).unwrap();
    }

    /// The on-disk length of a batch of txns `counters`.
    fn batch_len(counters: std::ops::RangeInclusive<u32>) -> usize {
        BATCH_HEADER_LEN
            + counters
                .map(|c| RECORD_HEADER_LEN + payload(c).len())
                .sum::<usize>()
            + BATCH_TRAILER_LEN
    }

    fn set_len(path: &Path, len: u64) {
        OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(len)
            .unwrap();
    }

    #[test]
    fn appended_records_are_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, records) = read_all(dir.path()).unwrap();
        assert!(records.is_empty());
        assert_eq!(log.base(), None);
        append(&mut log, 1..=3);
        append(&mut log, 4..=4);
        assert_eq!(log.last_zxid(), z(4));
        drop(log);

        let (log, records) = read_all(dir.path()).unwrap();
        let zxids: Vec<Zxid> = records.iter().map(|r| r.0).collect();
        assert_eq!(zxids, vec![z(1), z(2), z(3), z(4)]);
        assert_eq!(records[2].1, b"txn-3");
        assert_eq!(log.last_zxid(), z(4));
        assert_eq!(log.base(), Some(Zxid::ZERO));
        assert_eq!(log.segments().len(), 1);
        let segment = &log.segments()[0];
        assert!(segment.path.ends_with(segment_name(z(1))));
        assert_eq!((segment.prev_zxid, segment.last_zxid), (Zxid::ZERO, z(4)));
        assert_eq!(
            fs::metadata(&segment.path).unwrap().len() as usize,
            SEGMENT_HEADER_LEN + batch_len(1..=3) + batch_len(4..=4)
        );
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
        assert_eq!(log.segments()[1].prev_zxid, z(3));
        assert_eq!(log.segments()[2].prev_zxid, z(6));

        // Snapshot at 5: segment 1..=3 is covered, 4..=6 holds 6 which is not.
        let deleted = log.purge_covered_by(z(5)).unwrap();
        assert_eq!(deleted.len(), 1);
        assert_eq!(log.segments()[0].first_zxid, z(4));
        assert_eq!(log.base(), Some(z(3)));
        // The last segment is never purged, even if wholly covered.
        log.purge_covered_by(z(100)).unwrap();
        assert_eq!(log.segments().len(), 1);
        assert_eq!(log.segments()[0].first_zxid, z(7));
        drop(log);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.first().map(|r| r.0), Some(z(7)));
        assert_eq!(records.len(), 3);
        assert_eq!(log.base(), Some(z(6)));
    }

    #[test]
    fn failed_purge_forgets_only_the_segments_it_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        for first in [1, 4, 7] {
            append(&mut log, first..=first + 2);
            log.roll();
        }
        append(&mut log, 10..=10);
        // The second segment cannot be removed: a non-empty directory now has its name.
        let stuck = log.segments()[1].path.clone();
        fs::remove_file(&stuck).unwrap();
        fs::create_dir(&stuck).unwrap();
        fs::write(stuck.join("keep"), b"x").unwrap();

        let err = log.purge_covered_by(z(9)).unwrap_err();
        assert!(
            matches!(&err, LogError::Io { path, .. } if path == &stuck),
            "{err}"
        );
        let firsts: Vec<Zxid> = log.segments().iter().map(|s| s.first_zxid).collect();
        assert_eq!(firsts, vec![z(4), z(7), z(10)]);
        assert!(!dir.path().join(segment_name(z(1))).exists());
    }

    #[test]
    fn reopened_log_appends_to_a_new_segment_chained_to_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        drop(log);
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 3..=3);
        assert_eq!(log.segments().len(), 2);
        assert_eq!(log.segments()[1].prev_zxid, z(2));
        drop(log);
        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn start_after_makes_the_first_segment_continue_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        log.start_after(z(7));
        assert_eq!(log.last_zxid(), z(7));
        append(&mut log, 8..=8);
        drop(log);
        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(log.base(), Some(z(7)));
    }

    #[test]
    #[should_panic(expected = "zxids must strictly increase")]
    fn append_out_of_order_panics() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 2..=2);
        append(&mut log, 1..=1);
    }

    /// A closed log of records 1..=3 with `tail` after its batches; its segment and the
    /// segment's length without the tail.
    fn log_with_tail(dir: &Path, tail: &[u8]) -> (PathBuf, u64) {
        let (mut log, _) = read_all(dir).unwrap();
        append(&mut log, 1..=3);
        let path = log.segments()[0].path.clone();
        drop(log);
        let good_len = fs::metadata(&path).unwrap().len();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(tail).unwrap();
        (path, good_len)
    }

    #[test]
    fn zeros_after_the_last_batch_are_unwritten_space_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (path, good_len) = log_with_tail(dir.path(), &[0; 4096]);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(log.last_zxid(), z(3));
        assert!(!log.dropped_tail());
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn garbage_before_zeros_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut tail = vec![7; 100];
        tail.extend_from_slice(&[0; 4096]);
        let (path, good_len) = log_with_tail(dir.path(), &tail);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
        assert!(log.dropped_tail());
        assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    }

    #[test]
    fn segments_are_preallocated_and_trimmed_when_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=3);
        let first = log.segments()[0].path.clone();
        let data_len = (SEGMENT_HEADER_LEN + batch_len(1..=3)) as u64;
        assert_eq!(fs::metadata(&first).unwrap().len(), PREALLOCATE_BYTES);
        // A batch past the preallocated space extends it by whole steps.
        let big = vec![9u8; PREALLOCATE_BYTES as usize + 10];
        log.append_batch(&[(z(4), &big)]).unwrap();
        assert_eq!(fs::metadata(&first).unwrap().len(), 2 * PREALLOCATE_BYTES);
        log.roll();
        let data_len = data_len + (BATCH_HEADER_LEN + RECORD_HEADER_LEN + big.len()) as u64 + 4;
        assert_eq!(fs::metadata(&first).unwrap().len(), data_len);
        append(&mut log, 5..=5);
        let second = log.segments()[1].path.clone();
        drop(log);
        assert_eq!(
            fs::metadata(&second).unwrap().len(),
            (SEGMENT_HEADER_LEN + batch_len(5..=5)) as u64
        );
        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 5);
        assert!(!log.dropped_tail());
    }

    #[test]
    fn preallocated_zeros_left_by_a_crash_are_dropped_in_any_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        log.roll();
        append(&mut log, 3..=3);
        let first = log.segments()[0].path.clone();
        let last = log.segments()[1].path.clone();
        // A crash: nothing was trimmed, and the closed segment's trim was not durable.
        std::mem::forget(log);
        set_len(&first, PREALLOCATE_BYTES);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
        assert!(!log.dropped_tail());
        assert_eq!(
            fs::metadata(&last).unwrap().len(),
            (SEGMENT_HEADER_LEN + batch_len(3..=3)) as u64
        );
    }

    #[test]
    fn a_segment_created_at_a_crash_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        drop(log);
        // Zeros preallocated, the header not yet on disk.
        let path = dir.path().join(segment_name(z(2)));
        fs::write(&path, vec![0; PREALLOCATE_BYTES as usize]).unwrap();

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(log.segments().len(), 1);
        assert!(!log.dropped_tail());
        assert!(!path.exists());
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
        // A crash while writing the segment header.
        set_len(&path, 7);

        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(log.segments().len(), 1);
        assert!(!path.exists());
    }

    #[test]
    fn last_segment_whose_first_batch_is_torn_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        log.roll();
        append(&mut log, 2..=2);
        let path = log.segments()[1].path.clone();
        drop(log);
        set_len(&path, (SEGMENT_HEADER_LEN + 10) as u64);

        let (mut log, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert!(!path.exists());
        assert_eq!(log.last_zxid(), z(1));
        // The next append continues the chain from what survived.
        append(&mut log, 2..=2);
        drop(log);
        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
    }

    #[test]
    fn removed_only_segment_still_tells_where_its_history_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        log.start_after(z(5));
        append(&mut log, 6..=6);
        let path = log.segments()[0].path.clone();
        drop(log);
        set_len(&path, SEGMENT_HEADER_LEN as u64 + 3);

        let (log, records) = read_all(dir.path()).unwrap();
        assert!(records.is_empty());
        assert!(log.segments().is_empty());
        assert!(!path.exists());
        assert_eq!(log.base(), Some(z(5)));
        assert_eq!(log.last_zxid(), z(5));
    }

    #[test]
    fn bad_batch_in_an_earlier_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        log.roll();
        append(&mut log, 3..=3);
        let path = log.segments()[0].path.clone();
        drop(log);
        // Cut the earlier segment's last batch short: that can't be a crash, it was synced
        // before the next segment was written.
        let len = fs::metadata(&path).unwrap().len();
        set_len(&path, len - 1);

        let err = read_all(dir.path()).unwrap_err();
        let LogError::Corrupt { file, offset, .. } = &err else {
            panic!("expected Corrupt, got {err}");
        };
        assert_eq!(file, &path);
        assert_eq!(*offset, SEGMENT_HEADER_LEN as u64);
    }

    #[test]
    fn bad_segment_header_with_batches_after_it_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        let path = log.segments()[0].path.clone();
        drop(log);
        let mut bytes = fs::read(&path).unwrap();
        bytes[21] ^= 0x01; // inside prev zxid
        fs::write(&path, &bytes).unwrap();

        let err = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&err, LogError::Corrupt { offset: 0, reason, .. } if reason.contains("segment header")),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "a corrupt log is left untouched"
        );
    }

    #[test]
    fn unknown_segment_version_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        let path = log.segments()[0].path.clone();
        drop(log);
        let mut bytes = fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&(SEGMENT_VERSION + 1).to_be_bytes());
        fs::write(&path, &bytes).unwrap();

        let err = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&err, LogError::UnsupportedVersion { version, .. } if *version == SEGMENT_VERSION + 1),
            "{err}"
        );
    }

    #[test]
    fn lost_middle_segment_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=2);
        log.roll();
        append(&mut log, 3..=4);
        log.roll();
        append(&mut log, 5..=5);
        let lost = log.segments()[1].path.clone();
        let after = log.segments()[2].path.clone();
        drop(log);
        fs::remove_file(&lost).unwrap();

        let err = read_all(dir.path()).unwrap_err();
        let LogError::Gap {
            file,
            after: last,
            recorded,
            first,
        } = &err
        else {
            panic!("expected Gap, got {err}");
        };
        assert_eq!((file, *last, *recorded, *first), (&after, z(2), z(4), z(5)));
    }

    #[test]
    fn empty_middle_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        log.roll();
        append(&mut log, 2..=2);
        log.roll();
        append(&mut log, 3..=3);
        let middle = log.segments()[1].path.clone();
        drop(log);
        set_len(&middle, SEGMENT_HEADER_LEN as u64);
        let err = read_all(dir.path()).unwrap_err();
        assert!(
            matches!(&err, LogError::Corrupt { file, .. } if file == &middle),
            "{err}"
        );
    }

    #[test]
    fn forged_batch_inside_a_torn_payload_is_still_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=1);
        // A client stores bytes that are a complete, well-formed batch with some other salt.
        let forged = encode_batch(0x1234_5678_9abc_def0, &[(z(100), b"forged")], 12 + 6);
        let mut big = b"/node\0".to_vec();
        big.extend_from_slice(&forged);
        big.extend_from_slice(&[b'p'; 100]);
        log.append_batch(&[(z(2), big.as_slice())]).unwrap();
        let path = log.segments()[0].path.clone();
        drop(log);
        let len = fs::metadata(&path).unwrap().len();
        set_len(&path, len - 10);

        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().len() as usize,
            SEGMENT_HEADER_LEN + batch_len(1..=1)
        );
    }

    #[test]
    fn checksummed_batch_with_bad_records_is_corrupt() {
        let mut buf = encode_batch(7, &[(z(1), b"abc")], RECORD_HEADER_LEN + 3);
        // Claim a payload longer than the body, then fix the body checksum: not a torn write.
        let at = BATCH_HEADER_LEN;
        buf[at..at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        let body_end = buf.len() - BATCH_TRAILER_LEN;
        let crc = crc32c::crc32c(&buf[BATCH_HEADER_LEN..body_end]);
        buf[body_end..].copy_from_slice(&crc.to_be_bytes());
        let batch = decode_batch(&buf, 7).ok().unwrap();
        let err = decode_records(&batch).unwrap_err();
        assert!(err.contains("exceeds the maximum"), "{err}");
        // Another segment's salt does not pass.
        let err = decode_batch(&buf, 8).err().unwrap();
        assert!(err.contains("salt"), "{err}");
    }

    #[test]
    fn truncate_after_cuts_inside_a_batch_and_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
        append(&mut log, 1..=3);
        append(&mut log, 4..=6);
        log.roll();
        append(&mut log, 7..=9);
        log.truncate_after(z(5)).unwrap();
        assert_eq!(log.last_zxid(), z(5));
        assert_eq!(log.segments().len(), 1);
        // Appends continue after the cut, in a new segment chained to it.
        append(&mut log, 6..=7);
        drop(log);
        let (log, records) = read_all(dir.path()).unwrap();
        let zxids: Vec<Zxid> = records.iter().map(|(z, _)| *z).collect();
        assert_eq!(zxids, (1..=7).map(z).collect::<Vec<_>>());
        assert_eq!(records[2].1, payload(3));
        assert_eq!(log.segments().len(), 2);
    }

    /// Found by the simulator once it ran on the runtime's data dir: a TRUNC to a zxid inside
    /// a hole of the log (txns a snapshot covered were never logged there) left the log
    /// claiming to end at that zxid, so the next segment did not chain to the real last
    /// record and the member could not start again.
    #[test]
    fn truncate_into_a_hole_chains_the_next_segment_to_the_last_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = read_all(dir.path()).unwrap();
        append(&mut log, 1..=3);
        log.roll();
        append(&mut log, 7..=8);
        log.truncate_after(z(5)).unwrap();
        assert_eq!(log.last_zxid(), z(3));
        append(&mut log, 6..=6);
        drop(log);
        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(
            records.iter().map(|(zxid, _)| *zxid).collect::<Vec<_>>(),
            [z(1), z(2), z(3), z(6)]
        );
        assert_eq!(log.last_zxid(), z(6));
    }

    #[test]
    fn truncate_to_a_segment_boundary_or_to_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
        append(&mut log, 1..=2);
        log.roll();
        append(&mut log, 3..=4);
        log.truncate_after(z(2)).unwrap();
        assert_eq!(log.segments().len(), 1);
        log.truncate_after(Zxid::ZERO).unwrap();
        assert_eq!(log.last_zxid(), Zxid::ZERO);
        assert!(log.segments().is_empty());
        append(&mut log, 1..=1);
        drop(log);
        let (_, records) = read_all(dir.path()).unwrap();
        assert_eq!(records, vec![(z(1), payload(1))]);
    }

    #[test]
    fn reset_after_continues_from_a_snapshot_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), |_, _| {}).unwrap();
        append(&mut log, 1..=3);
        log.reset_after(z(10)).unwrap();
        append(&mut log, 11..=12);
        drop(log);
        let (log, records) = read_all(dir.path()).unwrap();
        assert_eq!(log.base(), Some(z(10)));
        assert_eq!(records.len(), 2);
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

    #[test]
    fn salts_differ() {
        let salts: std::collections::HashSet<u64> =
            (0..100).map(|_| OsStorage.new_salt()).collect();
        assert_eq!(salts.len(), 100);
        assert!(!salts.contains(&0));
    }
}
