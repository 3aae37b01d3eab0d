//! Recovery: telling a torn tail (a crash during a write) from damage. See the module docs
//! of `log`.

use std::path::Path;

use super::format::{decode_batch, decode_batch_header, decode_records};
use super::{LogError, BATCH_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::Zxid;

/// Validates one segment's batches, visiting each record.
pub(super) struct Scan<'a> {
    pub(super) path: &'a Path,
    pub(super) bytes: &'a [u8],
    pub(super) salt: u64,
    /// From the file name.
    pub(super) first_zxid: Zxid,
    pub(super) is_last: bool,
    /// The last zxid seen (before the first batch: the segment's previous zxid).
    pub(super) last_zxid: Zxid,
    /// Set by `run` if the segment ends in a bad batch that is not just zeros: a torn write,
    /// or damage to a batch that may have been durable.
    pub(super) torn: bool,
}

impl Scan<'_> {
    fn corrupt(&self, offset: usize, reason: String) -> LogError {
        LogError::Corrupt {
            file: self.path.to_path_buf(),
            offset: offset as u64,
            reason,
        }
    }

    /// Returns the length of the segment's valid prefix. That is shorter than the file for
    /// preallocated zeros after the last batch, and for a torn tail of the last segment.
    pub(super) fn run(&mut self, visit: &mut impl FnMut(Zxid, &[u8])) -> Result<usize, LogError> {
        let bytes = self.bytes;
        let mut offset = SEGMENT_HEADER_LEN;
        while offset < bytes.len() {
            let batch = match decode_batch(&bytes[offset..], self.salt) {
                Ok(batch) => batch,
                Err(_) if bytes[offset..].iter().all(|b| *b == 0) => return Ok(offset),
                Err(reason) => {
                    if !self.is_last {
                        return Err(self.corrupt(
                            offset,
                            format!("bad batch: {reason} (not in the last segment)"),
                        ));
                    }
                    if let Some(later) = batch_header_after(bytes, offset + 1, self.salt) {
                        return Err(self.corrupt(
                            offset,
                            format!(
                                "bad batch: {reason}; a valid batch follows at byte offset {later}"
                            ),
                        ));
                    }
                    self.torn = true;
                    return Ok(offset);
                }
            };
            let records = decode_records(&batch).map_err(|reason| self.corrupt(offset, reason))?;
            for &(zxid, _) in &records {
                if zxid <= self.last_zxid {
                    return Err(self.corrupt(
                        offset,
                        format!(
                            "zxid {zxid} does not follow the previous record's {}",
                            self.last_zxid
                        ),
                    ));
                }
                self.last_zxid = zxid;
            }
            if offset == SEGMENT_HEADER_LEN && batch.header.first_zxid != self.first_zxid {
                return Err(self.corrupt(
                    offset,
                    format!(
                        "first record has zxid {}, but the file name says {}",
                        batch.header.first_zxid, self.first_zxid
                    ),
                ));
            }
            for (zxid, payload) in records {
                visit(zxid, payload);
            }
            offset += batch.len;
        }
        Ok(offset)
    }
}

/// The offset of a valid batch header with `salt` at or after `from`: its presence means the
/// bad batch before it is damage, not a torn write. Client bytes cannot forge one (they do not
/// know the salt), and each offset costs one fixed-size check: linear in the segment.
pub(super) fn batch_header_after(bytes: &[u8], from: usize, salt: u64) -> Option<usize> {
    let last_start = bytes.len().checked_sub(BATCH_HEADER_LEN)?;
    let salt_bytes = salt.to_be_bytes();
    (from..=last_start).find(|&offset| {
        bytes[offset..offset + 8] == salt_bytes
            && decode_batch_header(&bytes[offset..], salt).is_ok()
    })
}
