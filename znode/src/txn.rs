//! Txns: everything the write path decided, so that applying one is deterministic.
//!
//! Encoding (all integers big-endian): `u8` format version (1), `i64` txn time in ms, then the
//! op: a `u8` tag and its fields. Strings and byte buffers are a `u32` length and the bytes; an
//! ACL list is a `u32` count of (`i32` perms, scheme, id). A multi is a `u32` count of ops,
//! which may not themselves be multis or session ops.

use bytes::Bytes;
use coord_proto::{Acl, Id};

use crate::{Error, ZPath};

const FORMAT: u8 = 1;
/// Most ops in one multi (ZooKeeper bounds multi only by jute.maxbuffer; this is far above it).
pub const MULTI_OPS_MAX: usize = 1 << 20;

/// One txn: the leader's clock when it was prepared and what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// Milliseconds since the Unix epoch; the ctime/mtime of nodes this txn creates or changes.
    pub time_ms: i64,
    pub op: TxnOp,
}

/// What a txn does. Versions and names are final: the prepare step already resolved them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    CreateSession {
        session_id: i64,
        timeout_ms: i32,
        passwd: Vec<u8>,
    },
    /// Ends the session and deletes its ephemeral nodes (in path order).
    CloseSession {
        session_id: i64,
    },
    Create {
        /// The final path, sequence number included.
        path: String,
        data: Bytes,
        acl: Vec<Acl>,
        /// A session id, [`crate::ephemeral::CONTAINER_OWNER`], a TTL encoding, or 0.
        ephemeral_owner: i64,
        /// The parent's cversion after this create.
        parent_cversion: i32,
    },
    Delete {
        path: String,
    },
    SetData {
        path: String,
        data: Bytes,
        /// The node's new version.
        version: i32,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        /// The node's new aversion.
        version: i32,
    },
    /// A version check that passed (only meaningful inside a multi).
    Check {
        path: String,
        version: i32,
    },
    Multi(Vec<TxnOp>),
}

const T_CREATE_SESSION: u8 = 1;
const T_CLOSE_SESSION: u8 = 2;
const T_CREATE: u8 = 3;
const T_DELETE: u8 = 4;
const T_SET_DATA: u8 = 5;
const T_SET_ACL: u8 = 6;
const T_CHECK: u8 = 7;
const T_MULTI: u8 = 8;

impl Txn {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        encode_op(&self.op, &mut out);
        out
    }

    /// The length of [`Txn::encode`]'s output, computed without encoding.
    pub fn encoded_len(&self) -> usize {
        TXN_HEADER_LEN + self.op.encoded_len()
    }

    /// Decodes [`Txn::encode`]'s output; any malformed or truncated input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Txn, Error> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let format = r.u8()?;
        if format != FORMAT {
            return Err(malformed(format!("unknown txn format {format}")));
        }
        let time_ms = r.i64()?;
        let op = decode_op(&mut r, true)?;
        if r.pos != bytes.len() {
            return Err(malformed(format!(
                "{} trailing bytes after txn",
                bytes.len() - r.pos
            )));
        }
        Ok(Txn { time_ms, op })
    }
}

pub(crate) fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths come from in-memory values; a u32 covers jute.maxbuffer many times over.
    let len = u32::try_from(b.len()).unwrap_or_else(|_| panic!("txn field of {} bytes", b.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b);
}

pub(crate) fn put_acl(out: &mut Vec<u8>, acl: &[Acl]) {
    out.extend_from_slice(&(acl.len() as u32).to_be_bytes());
    for a in acl {
        out.extend_from_slice(&a.perms.to_be_bytes());
        put_bytes(out, a.id.scheme.as_bytes());
        put_bytes(out, a.id.id.as_bytes());
    }
}

/// The format byte and the time.
pub(crate) const TXN_HEADER_LEN: usize = 1 + 8;

/// The encoded length of a byte string: its `u32` length and the bytes.
pub(crate) fn bytes_len(b: &[u8]) -> usize {
    4 + b.len()
}

/// The encoded length of an ACL list (see [`put_acl`]).
pub(crate) fn acl_len(acl: &[Acl]) -> usize {
    4 + acl
        .iter()
        .map(|a| 4 + bytes_len(a.id.scheme.as_bytes()) + bytes_len(a.id.id.as_bytes()))
        .sum::<usize>()
}

impl TxnOp {
    /// The length of this op as [`Txn::encode`] writes it.
    pub fn encoded_len(&self) -> usize {
        let bytes = bytes_len;
        1 + match self {
            TxnOp::CreateSession { passwd, .. } => 8 + 4 + bytes(passwd),
            TxnOp::CloseSession { .. } => 8,
            TxnOp::Create {
                path, data, acl, ..
            } => bytes(path.as_bytes()) + bytes(data) + acl_len(acl) + 8 + 4,
            TxnOp::Delete { path } => bytes(path.as_bytes()),
            TxnOp::SetData { path, data, .. } => bytes(path.as_bytes()) + bytes(data) + 4,
            TxnOp::SetAcl { path, acl, .. } => bytes(path.as_bytes()) + acl_len(acl) + 4,
            TxnOp::Check { path, .. } => bytes(path.as_bytes()) + 4,
            TxnOp::Multi(ops) => 4 + ops.iter().map(TxnOp::encoded_len).sum::<usize>(),
        }
    }
}

fn encode_op(op: &TxnOp, out: &mut Vec<u8>) {
    match op {
        TxnOp::CreateSession {
            session_id,
            timeout_ms,
            passwd,
        } => {
            out.push(T_CREATE_SESSION);
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&timeout_ms.to_be_bytes());
            put_bytes(out, passwd);
        }
        TxnOp::CloseSession { session_id } => {
            out.push(T_CLOSE_SESSION);
            out.extend_from_slice(&session_id.to_be_bytes());
        }
        TxnOp::Create {
            path,
            data,
            acl,
            ephemeral_owner,
            parent_cversion,
        } => {
            out.push(T_CREATE);
            put_bytes(out, path.as_bytes());
            put_bytes(out, data);
            put_acl(out, acl);
            out.extend_from_slice(&ephemeral_owner.to_be_bytes());
            out.extend_from_slice(&parent_cversion.to_be_bytes());
        }
        TxnOp::Delete { path } => {
            out.push(T_DELETE);
            put_bytes(out, path.as_bytes());
        }
        TxnOp::SetData {
            path,
            data,
            version,
        } => {
            out.push(T_SET_DATA);
            put_bytes(out, path.as_bytes());
            put_bytes(out, data);
            out.extend_from_slice(&version.to_be_bytes());
        }
        TxnOp::SetAcl { path, acl, version } => {
            out.push(T_SET_ACL);
            put_bytes(out, path.as_bytes());
            put_acl(out, acl);
            out.extend_from_slice(&version.to_be_bytes());
        }
        TxnOp::Check { path, version } => {
            out.push(T_CHECK);
            put_bytes(out, path.as_bytes());
            out.extend_from_slice(&version.to_be_bytes());
        }
        TxnOp::Multi(ops) => {
            out.push(T_MULTI);
            out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
            for op in ops {
                encode_op(op, out);
            }
        }
    }
}

fn decode_op(r: &mut Reader<'_>, top: bool) -> Result<TxnOp, Error> {
    let tag = r.u8()?;
    let op = match tag {
        T_CREATE_SESSION if top => TxnOp::CreateSession {
            session_id: r.i64()?,
            timeout_ms: r.i32()?,
            passwd: r.bytes()?.to_vec(),
        },
        T_CLOSE_SESSION if top => TxnOp::CloseSession {
            session_id: r.i64()?,
        },
        T_CREATE => TxnOp::Create {
            path: r.path()?,
            data: Bytes::copy_from_slice(r.bytes()?),
            acl: r.acl()?,
            ephemeral_owner: r.i64()?,
            parent_cversion: r.i32()?,
        },
        T_DELETE => TxnOp::Delete { path: r.path()? },
        T_SET_DATA => TxnOp::SetData {
            path: r.path()?,
            data: Bytes::copy_from_slice(r.bytes()?),
            version: r.i32()?,
        },
        T_SET_ACL => TxnOp::SetAcl {
            path: r.path()?,
            acl: r.acl()?,
            version: r.i32()?,
        },
        T_CHECK => TxnOp::Check {
            path: r.path()?,
            version: r.i32()?,
        },
        T_MULTI if top => {
            let n = r.count(MULTI_OPS_MAX, 1)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(decode_op(r, false)?);
            }
            TxnOp::Multi(ops)
        }
        _ => return Err(malformed(format!("txn op tag {tag} not allowed here"))),
    };
    Ok(op)
}

fn malformed(msg: impl Into<String>) -> Error {
    Error::Malformed(msg.into())
}

/// A bounded big-endian reader over a byte slice: every read checks what is left first.
pub struct Reader<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| malformed(format!("truncated: need {n} bytes at {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, Error> {
        Ok(u32::from_be_bytes(self.arr()?))
    }
    pub fn i32(&mut self) -> Result<i32, Error> {
        Ok(i32::from_be_bytes(self.arr()?))
    }
    pub fn i64(&mut self) -> Result<i64, Error> {
        Ok(i64::from_be_bytes(self.arr()?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, Error> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| malformed("string is not UTF-8"))
    }
    fn path(&mut self) -> Result<String, Error> {
        let p = self.string()?;
        ZPath::parse(&p)?;
        Ok(p)
    }
    /// A count of items each at least `item_min` bytes long, bounded by `max` and by the bytes
    /// left, so a hostile count cannot make us allocate.
    pub fn count(&mut self, max: usize, item_min: usize) -> Result<usize, Error> {
        let n = self.u32()? as usize;
        let left = self.buf.len() - self.pos;
        if n > max || n.saturating_mul(item_min) > left {
            return Err(malformed(format!("count {n} exceeds what remains")));
        }
        Ok(n)
    }
    pub fn acl(&mut self) -> Result<Vec<Acl>, Error> {
        let n = self.count(usize::MAX, 12)?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let perms = self.i32()?;
            let scheme = self.string()?;
            let id = self.string()?;
            out.push(Acl {
                perms,
                id: Id { scheme, id },
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Txn> {
        let acl = vec![
            Acl {
                perms: 31,
                id: Id::new("world", "anyone"),
            },
            Acl {
                perms: 1,
                id: Id::new("digest", "u:h"),
            },
        ];
        let ops = vec![
            TxnOp::CreateSession {
                session_id: 0x1234,
                timeout_ms: 30000,
                passwd: vec![1, 2, 3],
            },
            TxnOp::CloseSession { session_id: -5 },
            TxnOp::Create {
                path: "/a/b0000000001".into(),
                data: Bytes::from_static(b"data"),
                acl: acl.clone(),
                ephemeral_owner: i64::MIN,
                parent_cversion: 2,
            },
            TxnOp::Delete { path: "/a".into() },
            TxnOp::SetData {
                path: "/a".into(),
                data: Bytes::new(),
                version: 4,
            },
            TxnOp::SetAcl {
                path: "/a".into(),
                acl,
                version: 1,
            },
            TxnOp::Check {
                path: "/".into(),
                version: -1,
            },
            TxnOp::Multi(vec![
                TxnOp::Delete { path: "/x".into() },
                TxnOp::Check {
                    path: "/y".into(),
                    version: 3,
                },
            ]),
            TxnOp::Multi(vec![]),
        ];
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| Txn {
                time_ms: 1_700_000_000_000 + i as i64,
                op,
            })
            .collect()
    }

    #[test]
    fn decode_inverts_encode() {
        for t in samples() {
            assert_eq!(Txn::decode(&t.encode()).unwrap(), t);
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        for t in samples() {
            let bytes = t.encode();
            for cut in 0..bytes.len() {
                assert!(Txn::decode(&bytes[..cut]).is_err(), "{t:?} cut at {cut}");
            }
            let mut long = bytes.clone();
            long.push(0);
            assert!(Txn::decode(&long).is_err());
        }
    }

    #[test]
    fn rejects_bad_paths_nesting_and_huge_counts() {
        let bad_path = Txn {
            time_ms: 0,
            op: TxnOp::Delete { path: "a/".into() },
        };
        assert!(Txn::decode(&bad_path.encode()).is_err());
        let nested = Txn {
            time_ms: 0,
            op: TxnOp::Multi(vec![TxnOp::Multi(vec![])]),
        };
        assert!(Txn::decode(&nested.encode()).is_err());
        let mut huge = vec![FORMAT];
        huge.extend_from_slice(&0i64.to_be_bytes());
        huge.push(T_MULTI);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(Txn::decode(&huge).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = Txn::decode(&bytes);
        }
    }
}
