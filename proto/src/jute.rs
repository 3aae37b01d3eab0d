//! The jute binary encoding (`BinaryInputArchive` / `BinaryOutputArchive`): big-endian `int` and
//! `long`, `boolean` as one byte, `buffer` and `ustring` as an `int` length then the bytes (-1 =
//! null), `vector` as an `int` count then the items (-1 = null).
//!
//! [`Reader`] is a bounded cursor over one frame: every length and count is checked against the
//! bytes that remain before anything is allocated, so a lying prefix costs nothing.

use bytes::BufMut;

use crate::types::{Acl, Id, Stat};

/// Why bytes could not be decoded. Every variant means "malformed"; "need more bytes" is handled
/// by the framing layer before a frame ever reaches a decoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A fixed-size field (int, long, bool) runs past the end of the input.
    #[error("truncated: needed {needed} bytes, {remaining} remain")]
    Truncated { needed: usize, remaining: usize },
    /// A length or count below -1 (-1 itself means null).
    #[error("negative length {0}")]
    NegativeLength(i32),
    /// A length or count that the remaining bytes cannot hold.
    #[error("length {len} exceeds the {remaining} bytes remaining")]
    LengthTooLarge { len: i32, remaining: usize },
    /// A `ustring` that is not UTF-8.
    #[error("string is not valid UTF-8")]
    BadUtf8,
    /// A null string, buffer or vector where the protocol needs a value.
    #[error("unexpected null {0}")]
    UnexpectedNull(&'static str),
    /// An operation code ZooKeeper does not define.
    #[error("unknown op code {0}")]
    UnknownOpCode(i32),
    /// A ZooKeeper operation code that is not a client request this crate decodes (reconfig, sasl,
    /// deleteContainer, createSession, notification, error). The server answers `Unimplemented`.
    #[error("unsupported op {0:?}")]
    Unsupported(crate::types::OpCode),
    /// An operation that may not appear inside this kind of multi (`MultiOperationRecord` takes
    /// only create*/delete/setData/check in a multi, only getChildren/getData in a multiRead).
    #[error("op code {op} is not allowed in a {within}")]
    BadMultiOp { op: i32, within: &'static str },
    /// An enumerated field (event type, keeper state, watch mode, watcher type) with an unknown value.
    #[error("unknown {field} value {value}")]
    BadEnum { field: &'static str, value: i32 },
}

/// A bounded, zero-copy cursor over one jute-encoded message.
///
/// Reads consume bytes from the front; on error the cursor position is unspecified and the whole
/// message should be discarded.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes not yet read, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// Consumes exactly `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated {
                needed: n,
                remaining: self.buf.len(),
            });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// jute `byte`.
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>()?[0])
    }

    /// jute `int`: 4 bytes, big-endian.
    pub fn read_i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    /// jute `long`: 8 bytes, big-endian.
    pub fn read_i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    /// jute `boolean`: one byte, any non-zero value is true (Java's `DataInput.readBoolean`).
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.read_u8()? != 0)
    }

    /// Reads a length prefix: `None` for -1 (null), an error for other negatives or for a length
    /// the remaining bytes cannot hold when each unit is at least `unit_bytes_min` bytes.
    fn read_len(&mut self, unit_bytes_min: usize) -> Result<Option<usize>, DecodeError> {
        let len = self.read_i32()?;
        if len == -1 {
            return Ok(None);
        }
        let Ok(n) = usize::try_from(len) else {
            return Err(DecodeError::NegativeLength(len));
        };
        let fits = n
            .checked_mul(unit_bytes_min)
            .is_some_and(|bytes| bytes <= self.remaining());
        if !fits {
            return Err(DecodeError::LengthTooLarge {
                len,
                remaining: self.remaining(),
            });
        }
        Ok(Some(n))
    }

    /// jute `buffer`: `None` is the null buffer (length -1).
    pub fn read_buffer(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        match self.read_len(1)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// jute `ustring`: `None` is the null string (length -1). Invalid UTF-8 is an error (Java
    /// would substitute U+FFFD; we refuse rather than alter a path).
    pub fn read_string(&mut self) -> Result<Option<&'a str>, DecodeError> {
        match self.read_buffer()? {
            None => Ok(None),
            Some(bytes) => std::str::from_utf8(bytes)
                .map(Some)
                .map_err(|_| DecodeError::BadUtf8),
        }
    }

    /// A `ustring` that must not be null; `field` names it in the error.
    pub fn read_string_required(&mut self, field: &'static str) -> Result<String, DecodeError> {
        self.read_string()?
            .map(str::to_owned)
            .ok_or(DecodeError::UnexpectedNull(field))
    }

    /// A `ustring` where null means the same as empty (e.g. the getEphemerals prefix).
    pub fn read_string_or_empty(&mut self) -> Result<String, DecodeError> {
        Ok(self.read_string()?.unwrap_or_default().to_owned())
    }

    /// A `buffer` where null is read as empty (the znode tree does not keep null data apart).
    pub fn read_buffer_or_empty(&mut self) -> Result<Vec<u8>, DecodeError> {
        Ok(self.read_buffer()?.unwrap_or_default().to_vec())
    }

    /// jute `vector`: `None` is the null vector (count -1). `item_bytes_min` is the least number
    /// of bytes one encoded item takes; the count is checked against it before anything is
    /// allocated, and capacity grows only as items are actually decoded.
    pub fn read_vec<T>(
        &mut self,
        item_bytes_min: usize,
        mut read_item: impl FnMut(&mut Self) -> Result<T, DecodeError>,
    ) -> Result<Option<Vec<T>>, DecodeError> {
        // An item of zero bytes would let a count pass unchecked.
        let unit = item_bytes_min.max(1);
        let Some(count) = self.read_len(unit)? else {
            return Ok(None);
        };
        let mut items = Vec::with_capacity(count.min(VEC_PREALLOC_MAX));
        for _ in 0..count {
            items.push(read_item(self)?);
        }
        Ok(Some(items))
    }

    /// A `vector<ustring>` where null is read as empty.
    pub fn read_string_vec(&mut self) -> Result<Vec<String>, DecodeError> {
        Ok(self
            .read_vec(4, |r| r.read_string_required("vector<ustring> item"))?
            .unwrap_or_default())
    }

    /// A record.
    pub fn read<T: Record>(&mut self) -> Result<T, DecodeError> {
        T::read(self)
    }
}

/// The most items [`Reader::read_vec`] reserves room for up front; beyond it the vector grows as
/// items decode, so capacity never runs far ahead of the bytes consumed.
const VEC_PREALLOC_MAX: usize = 64;

/// A jute record: a fixed sequence of fields.
pub trait Record: Sized {
    /// Decodes the record from the front of `r`.
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
    /// Appends the record's encoding to `buf`.
    fn write(&self, buf: &mut impl BufMut);

    /// Decodes the record from `bytes`, ignoring any bytes after it (as ZooKeeper does when it
    /// deserializes a record from a packet).
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::read(&mut Reader::new(bytes))
    }

    /// The record's encoding in a fresh vector.
    fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.write(&mut v);
        v
    }
}

/// jute `int`.
pub fn write_i32(buf: &mut impl BufMut, v: i32) {
    buf.put_i32(v);
}

/// jute `long`.
pub fn write_i64(buf: &mut impl BufMut, v: i64) {
    buf.put_i64(v);
}

/// jute `boolean`: 1 or 0.
pub fn write_bool(buf: &mut impl BufMut, v: bool) {
    buf.put_u8(u8::from(v));
}

/// Encodes a length prefix.
///
/// # Panics
/// If `len` exceeds `i32::MAX`: nothing we send may be that large (frames are bounded far below).
fn write_len(buf: &mut impl BufMut, len: usize) {
    let Ok(len) = i32::try_from(len) else {
        panic!("jute length {len} exceeds i32::MAX");
    };
    buf.put_i32(len);
}

/// jute `buffer`.
///
/// # Panics
/// If `v` is longer than `i32::MAX` bytes.
pub fn write_buffer(buf: &mut impl BufMut, v: &[u8]) {
    write_len(buf, v.len());
    buf.put_slice(v);
}

/// The null `buffer` (length -1).
pub fn write_null(buf: &mut impl BufMut) {
    buf.put_i32(-1);
}

/// jute `ustring`.
///
/// # Panics
/// If `v` is longer than `i32::MAX` bytes.
pub fn write_string(buf: &mut impl BufMut, v: &str) {
    write_buffer(buf, v.as_bytes());
}

/// jute `vector`, each item written by `write_item`.
///
/// # Panics
/// If `items` has more than `i32::MAX` entries.
pub fn write_vec<T, B: BufMut>(buf: &mut B, items: &[T], mut write_item: impl FnMut(&mut B, &T)) {
    write_len(buf, items.len());
    for item in items {
        write_item(buf, item);
    }
}

/// jute `vector<ustring>`.
pub fn write_string_vec<B: BufMut>(buf: &mut B, items: &[String]) {
    write_vec(buf, items, |b, s| write_string(b, s));
}

/// jute `vector` of records.
pub fn write_record_vec<B: BufMut, T: Record>(buf: &mut B, items: &[T]) {
    write_vec(buf, items, |b, item| item.write(b));
}

/// Encoded size of a `Stat`: 6 longs and 5 ints.
pub const STAT_BYTES: usize = 6 * 8 + 5 * 4;

impl Record for Stat {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Stat {
            czxid: r.read_i64()?,
            mzxid: r.read_i64()?,
            ctime: r.read_i64()?,
            mtime: r.read_i64()?,
            version: r.read_i32()?,
            cversion: r.read_i32()?,
            aversion: r.read_i32()?,
            ephemeral_owner: r.read_i64()?,
            data_length: r.read_i32()?,
            num_children: r.read_i32()?,
            pzxid: r.read_i64()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i64(buf, self.czxid);
        write_i64(buf, self.mzxid);
        write_i64(buf, self.ctime);
        write_i64(buf, self.mtime);
        write_i32(buf, self.version);
        write_i32(buf, self.cversion);
        write_i32(buf, self.aversion);
        write_i64(buf, self.ephemeral_owner);
        write_i32(buf, self.data_length);
        write_i32(buf, self.num_children);
        write_i64(buf, self.pzxid);
    }
}

impl Record for Id {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        // kazoo writes an empty string as null (e.g. the id of an "auth" ACL); Java reads it back
        // as null and ZooKeeper treats that as empty.
        Ok(Id {
            scheme: r.read_string_or_empty()?,
            id: r.read_string_or_empty()?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_string(buf, &self.scheme);
        write_string(buf, &self.id);
    }
}

/// Least encoded size of an `ACL`: perms and two string lengths.
pub const ACL_BYTES_MIN: usize = 12;

impl Record for Acl {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Acl {
            perms: r.read_i32()?,
            id: Id::read(r)?,
        })
    }

    fn write(&self, buf: &mut impl BufMut) {
        write_i32(buf, self.perms);
        self.id.write(buf);
    }
}

/// A `vector<ACL>`, null read as empty (ZooKeeper rejects both with `InvalidACL`).
pub fn read_acl_vec(r: &mut Reader<'_>) -> Result<Vec<Acl>, DecodeError> {
    Ok(r.read_vec(ACL_BYTES_MIN, Acl::read)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_are_big_endian() {
        let mut v = Vec::new();
        write_i32(&mut v, 0x0102_0304);
        write_i64(&mut v, -2);
        write_bool(&mut v, true);
        write_bool(&mut v, false);
        assert_eq!(
            v,
            [1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, 1, 0]
        );
        let mut r = Reader::new(&v);
        assert_eq!(r.read_i32(), Ok(0x0102_0304));
        assert_eq!(r.read_i64(), Ok(-2));
        assert_eq!(r.read_bool(), Ok(true));
        assert_eq!(r.read_bool(), Ok(false));
        assert!(r.is_empty());
    }

    #[test]
    fn any_nonzero_byte_is_true() {
        assert_eq!(Reader::new(&[7]).read_bool(), Ok(true));
    }

    #[test]
    fn null_and_empty_buffers_differ() {
        let mut v = Vec::new();
        write_null(&mut v);
        write_buffer(&mut v, b"");
        write_string(&mut v, "zk");
        assert_eq!(
            v,
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 2, b'z', b'k']
        );
        let mut r = Reader::new(&v);
        assert_eq!(r.read_buffer(), Ok(None));
        assert_eq!(r.read_buffer(), Ok(Some(&b""[..])));
        assert_eq!(r.read_string(), Ok(Some("zk")));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn length_below_minus_one_is_an_error() {
        let v = (-2i32).to_be_bytes();
        assert_eq!(
            Reader::new(&v).read_buffer(),
            Err(DecodeError::NegativeLength(-2))
        );
        assert_eq!(
            Reader::new(&v).read_vec(1, |r| r.read_u8()),
            Err(DecodeError::NegativeLength(-2))
        );
    }

    #[test]
    fn lying_buffer_length_is_refused_before_reading() {
        let mut v = i32::MAX.to_be_bytes().to_vec();
        v.extend_from_slice(&[0; 4]);
        assert_eq!(
            Reader::new(&v).read_buffer(),
            Err(DecodeError::LengthTooLarge {
                len: i32::MAX,
                remaining: 4
            })
        );
    }

    #[test]
    fn lying_vector_count_is_refused_without_allocating() {
        let mut v = i32::MAX.to_be_bytes().to_vec();
        v.extend_from_slice(&[0; 4]);
        let mut calls = 0;
        let res = Reader::new(&v).read_vec(4, |r| {
            calls += 1;
            r.read_i32()
        });
        assert_eq!(
            res,
            Err(DecodeError::LengthTooLarge {
                len: i32::MAX,
                remaining: 4
            })
        );
        assert_eq!(calls, 0);
    }

    #[test]
    fn count_times_item_size_overflow_is_an_error() {
        let v = i32::MAX.to_be_bytes();
        assert!(Reader::new(&v)
            .read_vec(usize::MAX, |r| r.read_u8())
            .is_err());
    }

    #[test]
    fn zero_sized_items_still_bound_the_count() {
        let mut v = 1000i32.to_be_bytes().to_vec();
        v.extend_from_slice(&[0; 10]);
        let res = Reader::new(&v).read_vec(0, |_| Ok(()));
        assert!(matches!(res, Err(DecodeError::LengthTooLarge { .. })));
    }

    #[test]
    fn bad_utf8_is_an_error() {
        let v = [0, 0, 0, 2, 0xc3, 0x28];
        assert_eq!(Reader::new(&v).read_string(), Err(DecodeError::BadUtf8));
    }

    #[test]
    fn truncated_int_reports_need() {
        assert_eq!(
            Reader::new(&[0, 0]).read_i32(),
            Err(DecodeError::Truncated {
                needed: 4,
                remaining: 2
            })
        );
    }

    #[test]
    fn stat_is_68_bytes_in_field_order() {
        let stat = Stat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let v = stat.to_vec();
        assert_eq!(v.len(), STAT_BYTES);
        assert_eq!(STAT_BYTES, 68);
        let mut expected = Vec::new();
        for long in [1i64, 2, 3, 4] {
            expected.extend_from_slice(&long.to_be_bytes());
        }
        for int in [5i32, 6, 7] {
            expected.extend_from_slice(&int.to_be_bytes());
        }
        expected.extend_from_slice(&8i64.to_be_bytes());
        expected.extend_from_slice(&9i32.to_be_bytes());
        expected.extend_from_slice(&10i32.to_be_bytes());
        expected.extend_from_slice(&11i64.to_be_bytes());
        assert_eq!(v, expected);
        assert_eq!(Stat::decode(&v), Ok(stat));
    }

    #[test]
    fn acl_encoding_matches_jute() {
        let acl = Acl::open_unsafe();
        let mut v = Vec::new();
        write_record_vec(&mut v, &acl);
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 31, 0, 0, 0, 5];
        expected.extend_from_slice(b"world");
        expected.extend_from_slice(&[0, 0, 0, 6]);
        expected.extend_from_slice(b"anyone");
        assert_eq!(v, expected);
        assert_eq!(read_acl_vec(&mut Reader::new(&v)), Ok(acl));
    }
}
