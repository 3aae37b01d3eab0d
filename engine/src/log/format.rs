//! The bytes of a segment: headers, batches, records, salts. See the module docs of `log`.

use super::{
    BATCH_HEADER_LEN, BATCH_TRAILER_LEN, RECORD_HEADER_LEN, RECORD_PAYLOAD_MAX, SEGMENT_HEADER_LEN,
    SEGMENT_MAGIC, SEGMENT_VERSION,
};
use crate::Zxid;

pub(super) fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut field = [0; 4];
    field.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(field)
}

pub(super) fn be_u64(bytes: &[u8], at: usize) -> u64 {
    let mut field = [0; 8];
    field.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(field)
}

pub(super) fn encode_segment_header(salt: u64, prev_zxid: Zxid) -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_be_bytes());
    header[12..20].copy_from_slice(&salt.to_be_bytes());
    header[20..28].copy_from_slice(&prev_zxid.as_u64().to_be_bytes());
    let crc = crc32c::crc32c(&header[..28]);
    header[28..].copy_from_slice(&crc.to_be_bytes());
    header
}

pub(super) struct SegmentHeader {
    pub(super) salt: u64,
    pub(super) prev_zxid: Zxid,
}

pub(super) enum HeaderError {
    Bad(String),
    Unsupported(u32),
}

pub(super) fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
    let Some(header) = bytes.get(..SEGMENT_HEADER_LEN) else {
        return Err(HeaderError::Bad(format!(
            "short segment header: {} of {SEGMENT_HEADER_LEN} bytes",
            bytes.len()
        )));
    };
    if &header[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::Bad(
            "bad magic (not a coord txn log segment, or one from before format version 1)"
                .to_string(),
        ));
    }
    let version = be_u32(header, 8);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::Unsupported(version));
    }
    let stored = be_u32(header, 28);
    let crc = crc32c::crc32c(&header[..28]);
    if crc != stored {
        return Err(HeaderError::Bad(format!(
            "segment header checksum mismatch: stored {stored:#010x}, computed {crc:#010x}"
        )));
    }
    Ok(SegmentHeader {
        salt: be_u64(header, 12),
        prev_zxid: Zxid::from_u64(be_u64(header, 20)),
    })
}

/// Encodes one batch: header, records, body crc. `body_len` is the records' total length.
pub(super) fn encode_batch(salt: u64, batch: &[(Zxid, &[u8])], body_len: usize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + body_len + BATCH_TRAILER_LEN);
    let first_zxid = batch.first().map_or(Zxid::ZERO, |&(zxid, _)| zxid);
    // Both fit: append_batch asserted body_len <= BATCH_BODY_MAX = u32::MAX, and each record
    // takes at least RECORD_HEADER_LEN of it, so the count is below that too.
    buf.extend_from_slice(&salt.to_be_bytes());
    buf.extend_from_slice(&(body_len as u32).to_be_bytes());
    buf.extend_from_slice(&(batch.len() as u32).to_be_bytes());
    buf.extend_from_slice(&first_zxid.as_u64().to_be_bytes());
    let crc = crc32c::crc32c(&buf);
    buf.extend_from_slice(&crc.to_be_bytes());
    for &(zxid, payload) in batch {
        // Fits: append_batch asserted payload.len() <= RECORD_PAYLOAD_MAX < u32::MAX.
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&zxid.as_u64().to_be_bytes());
        buf.extend_from_slice(payload);
    }
    let body_crc = crc32c::crc32c(&buf[BATCH_HEADER_LEN..]);
    buf.extend_from_slice(&body_crc.to_be_bytes());
    buf
}
const _: () = assert!(RECORD_PAYLOAD_MAX < u32::MAX as usize);

pub(super) struct BatchHeader {
    pub(super) body_len: usize,
    pub(super) count: usize,
    pub(super) first_zxid: Zxid,
}

/// Decodes the batch header at the front of `buf` if its checksum holds and it carries `salt`.
pub(super) fn decode_batch_header(buf: &[u8], salt: u64) -> Result<BatchHeader, String> {
    let Some(header) = buf.get(..BATCH_HEADER_LEN) else {
        return Err(format!(
            "short batch header: {} of {BATCH_HEADER_LEN} bytes",
            buf.len()
        ));
    };
    let stored = be_u32(header, 24);
    let crc = crc32c::crc32c(&header[..24]);
    if crc != stored {
        return Err(format!(
            "batch header checksum mismatch: stored {stored:#010x}, computed {crc:#010x}"
        ));
    }
    let found_salt = be_u64(header, 0);
    if found_salt != salt {
        return Err(format!(
            "batch header carries salt {found_salt:#018x}, not this segment's {salt:#018x}"
        ));
    }
    Ok(BatchHeader {
        body_len: be_u32(header, 8) as usize,
        count: be_u32(header, 12) as usize,
        first_zxid: Zxid::from_u64(be_u64(header, 16)),
    })
}

/// A batch whose header and body checksums hold.
pub(super) struct Batch<'a> {
    pub(super) header: BatchHeader,
    pub(super) body: &'a [u8],
    /// Header, body and trailer.
    pub(super) len: usize,
}

/// Checks the batch at the front of `buf`: a failure here is what a torn write looks like.
pub(super) fn decode_batch(buf: &[u8], salt: u64) -> Result<Batch<'_>, String> {
    let header = decode_batch_header(buf, salt)?;
    let framed_len = header
        .body_len
        .checked_add(BATCH_HEADER_LEN + BATCH_TRAILER_LEN);
    let Some(framed) = framed_len.and_then(|len| buf.get(..len)) else {
        let len = header.body_len as u64 + (BATCH_HEADER_LEN + BATCH_TRAILER_LEN) as u64;
        return Err(format!(
            "batch of {len} bytes runs past the end of the file ({} bytes left)",
            buf.len()
        ));
    };
    let len = framed.len();
    let body = &framed[BATCH_HEADER_LEN..BATCH_HEADER_LEN + header.body_len];
    let stored = be_u32(framed, BATCH_HEADER_LEN + header.body_len);
    let crc = crc32c::crc32c(body);
    if crc != stored {
        return Err(format!(
            "batch body checksum mismatch: stored {stored:#010x}, computed {crc:#010x}"
        ));
    }
    Ok(Batch { header, body, len })
}

/// Splits a checksummed batch body into its records. A failure here is not a torn write (the
/// checksum held): it is damage or a bug.
pub(super) fn decode_records<'a>(batch: &Batch<'a>) -> Result<Vec<(Zxid, &'a [u8])>, String> {
    // Bounded by the body: each record takes at least RECORD_HEADER_LEN bytes.
    let mut records =
        Vec::with_capacity(batch.header.count.min(batch.body.len() / RECORD_HEADER_LEN));
    let mut rest = batch.body;
    while !rest.is_empty() {
        let Some(header) = rest.get(..RECORD_HEADER_LEN) else {
            return Err(format!(
                "record {} has a short header: {} of {RECORD_HEADER_LEN} bytes",
                records.len(),
                rest.len()
            ));
        };
        let payload_len = be_u32(header, 0) as usize;
        if payload_len > RECORD_PAYLOAD_MAX {
            return Err(format!(
                "record {} length {payload_len} exceeds the maximum {RECORD_PAYLOAD_MAX}",
                records.len()
            ));
        }
        let zxid = Zxid::from_u64(be_u64(header, 4));
        let Some(payload) = rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload_len) else {
            return Err(format!(
                "record {} runs past the batch body: {payload_len} payload bytes, {} present",
                records.len(),
                rest.len() - RECORD_HEADER_LEN
            ));
        };
        records.push((zxid, payload));
        rest = &rest[RECORD_HEADER_LEN + payload_len..];
    }
    if records.len() != batch.header.count {
        return Err(format!(
            "batch header says {} records, the body holds {}",
            batch.header.count,
            records.len()
        ));
    }
    match records.first() {
        None => return Err("batch holds no records".to_string()),
        Some(&(zxid, _)) if zxid != batch.header.first_zxid => {
            return Err(format!(
                "batch header says the first zxid is {}, the first record has {zxid}",
                batch.header.first_zxid
            ))
        }
        Some(_) => {}
    }
    Ok(records)
}
