//! The wire form of a write a follower forwards to its leader, and of the leader's refusal.
//!
//! Only the leader decides writes (ZooKeeper's PrepRequestProcessor runs on the leader), so a
//! follower sends it the [`Write`] and who asked; a refused write comes back as its
//! [`Rejection`]. Paths travel as the client sent them: the leader's checks judge them, with the
//! same errors a client of the leader would get. Decoding is bounded like [`crate::Txn::decode`].

use bytes::Bytes;
use coord_proto::{ErrorCode, Id};

use crate::prep::{Rejection, Write};
use crate::tree::OpResult;
use crate::txn::{put_acl, put_bytes, Reader};
use crate::{Error, MULTI_OPS_MAX};

const W_CREATE: u8 = 1;
const W_DELETE: u8 = 2;
const W_SET_DATA: u8 = 3;
const W_SET_ACL: u8 = 4;
const W_CHECK: u8 = 5;
const W_MULTI: u8 = 6;
const W_CREATE_SESSION: u8 = 7;
const W_CLOSE_SESSION: u8 = 8;
const W_REAP: u8 = 9;

const R_ERROR: u8 = 1;
const R_MULTI: u8 = 2;

/// The most identities a forwarded caller may carry: a connection holds at most 16.
pub const CALLER_IDS_MAX: usize = 64;

fn malformed(msg: impl Into<String>) -> Error {
    Error::Malformed(msg.into())
}

/// A write and who asked for it, as a follower forwards it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteWrite {
    pub session_id: i64,
    pub is_super: bool,
    pub ids: Vec<Id>,
    pub write: Write,
}

impl RemoteWrite {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.session_id.to_be_bytes());
        out.push(u8::from(self.is_super));
        out.extend_from_slice(&(self.ids.len() as u32).to_be_bytes());
        for id in &self.ids {
            put_bytes(out, id.scheme.as_bytes());
            put_bytes(out, id.id.as_bytes());
        }
        encode_write(&self.write, out);
    }

    /// Decodes [`RemoteWrite::encode`]'s output from the front of `r`.
    pub fn decode(r: &mut Reader<'_>) -> Result<RemoteWrite, Error> {
        let session_id = r.i64()?;
        let is_super = r.u8()? != 0;
        let n = r.count(CALLER_IDS_MAX, 8)?;
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let scheme = r.string()?;
            let id = r.string()?;
            ids.push(Id { scheme, id });
        }
        let write = decode_write(r, true)?;
        Ok(RemoteWrite {
            session_id,
            is_super,
            ids,
            write,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn encode_write(write: &Write, out: &mut Vec<u8>) {
    match write {
        Write::Create {
            path,
            data,
            acl,
            mode,
            ttl,
            container,
        } => {
            out.push(W_CREATE);
            put_str(out, path);
            put_bytes(out, data);
            put_acl(out, acl);
            out.extend_from_slice(&mode.to_be_bytes());
            match ttl {
                Some(ttl) => {
                    out.push(1);
                    out.extend_from_slice(&ttl.to_be_bytes());
                }
                None => out.push(0),
            }
            out.push(u8::from(*container));
        }
        Write::Delete { path, version } => {
            out.push(W_DELETE);
            put_str(out, path);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Write::SetData {
            path,
            data,
            version,
        } => {
            out.push(W_SET_DATA);
            put_str(out, path);
            put_bytes(out, data);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Write::SetAcl { path, acl, version } => {
            out.push(W_SET_ACL);
            put_str(out, path);
            put_acl(out, acl);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Write::Check { path, version } => {
            out.push(W_CHECK);
            put_str(out, path);
            out.extend_from_slice(&version.to_be_bytes());
        }
        Write::Multi(ops) => {
            out.push(W_MULTI);
            out.extend_from_slice(&(ops.len() as u32).to_be_bytes());
            for op in ops {
                encode_write(op, out);
            }
        }
        Write::CreateSession {
            session_id,
            timeout_ms,
            passwd,
        } => {
            out.push(W_CREATE_SESSION);
            out.extend_from_slice(&session_id.to_be_bytes());
            out.extend_from_slice(&timeout_ms.to_be_bytes());
            put_bytes(out, passwd);
        }
        Write::CloseSession { session_id } => {
            out.push(W_CLOSE_SESSION);
            out.extend_from_slice(&session_id.to_be_bytes());
        }
        Write::Reap { path } => {
            out.push(W_REAP);
            put_str(out, path);
        }
    }
}

fn decode_write(r: &mut Reader<'_>, top: bool) -> Result<Write, Error> {
    let tag = r.u8()?;
    let write = match tag {
        W_CREATE => Write::Create {
            path: r.string()?,
            data: Bytes::copy_from_slice(r.bytes()?),
            acl: r.acl()?,
            mode: r.i32()?,
            ttl: match r.u8()? {
                0 => None,
                _ => Some(r.i64()?),
            },
            container: r.u8()? != 0,
        },
        W_DELETE => Write::Delete {
            path: r.string()?,
            version: r.i32()?,
        },
        W_SET_DATA => Write::SetData {
            path: r.string()?,
            data: Bytes::copy_from_slice(r.bytes()?),
            version: r.i32()?,
        },
        W_SET_ACL => Write::SetAcl {
            path: r.string()?,
            acl: r.acl()?,
            version: r.i32()?,
        },
        W_CHECK => Write::Check {
            path: r.string()?,
            version: r.i32()?,
        },
        W_MULTI if top => {
            let n = r.count(MULTI_OPS_MAX, 1)?;
            let mut ops = Vec::with_capacity(n);
            for _ in 0..n {
                ops.push(decode_write(r, false)?);
            }
            Write::Multi(ops)
        }
        W_CREATE_SESSION if top => Write::CreateSession {
            session_id: r.i64()?,
            timeout_ms: r.i32()?,
            passwd: r.bytes()?.to_vec(),
        },
        W_CLOSE_SESSION if top => Write::CloseSession {
            session_id: r.i64()?,
        },
        W_REAP if top => Write::Reap { path: r.string()? },
        _ => return Err(malformed(format!("write tag {tag} not allowed here"))),
    };
    Ok(write)
}

/// Appends a refusal. A rejected multi carries only error results (see `failed_multi`).
pub fn encode_rejection(rejection: &Rejection, out: &mut Vec<u8>) {
    match rejection {
        Rejection::Error(code) => {
            out.push(R_ERROR);
            out.extend_from_slice(&code.code().to_be_bytes());
        }
        Rejection::Multi(results) => {
            out.push(R_MULTI);
            out.extend_from_slice(&(results.len() as u32).to_be_bytes());
            for result in results {
                let code = match result {
                    OpResult::Error(code) => *code,
                    _ => ErrorCode::Ok,
                };
                out.extend_from_slice(&code.code().to_be_bytes());
            }
        }
    }
}

pub fn decode_rejection(r: &mut Reader<'_>) -> Result<Rejection, Error> {
    let code = |r: &mut Reader<'_>| {
        let code = r.i32()?;
        ErrorCode::from_code(code).ok_or_else(|| malformed(format!("unknown error code {code}")))
    };
    match r.u8()? {
        R_ERROR => Ok(Rejection::Error(code(r)?)),
        R_MULTI => {
            let n = r.count(MULTI_OPS_MAX, 4)?;
            let mut results = Vec::with_capacity(n);
            for _ in 0..n {
                results.push(OpResult::Error(code(r)?));
            }
            Ok(Rejection::Multi(results))
        }
        tag => Err(malformed(format!("rejection tag {tag}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_proto::Acl;

    fn samples() -> Vec<Write> {
        let create = Write::Create {
            path: "/a/b".into(),
            data: Bytes::from_static(b"v"),
            acl: Acl::open_unsafe(),
            mode: 3,
            ttl: Some(5000),
            container: false,
        };
        vec![
            create.clone(),
            Write::Delete {
                path: "bad path".into(),
                version: -1,
            },
            Write::SetData {
                path: "/x".into(),
                data: Bytes::new(),
                version: 7,
            },
            Write::SetAcl {
                path: "/x".into(),
                acl: vec![],
                version: 1,
            },
            Write::Multi(vec![
                create,
                Write::Check {
                    path: "/x".into(),
                    version: 2,
                },
            ]),
            Write::CreateSession {
                session_id: -5,
                timeout_ms: 4000,
                passwd: vec![1; 16],
            },
            Write::CloseSession { session_id: 9 },
            Write::Reap { path: "/c".into() },
        ]
    }

    #[test]
    fn writes_and_rejections_round_trip() {
        for write in samples() {
            let remote = RemoteWrite {
                session_id: 42,
                is_super: true,
                ids: vec![Id::new("ip", "127.0.0.1"), Id::new("digest", "u:h")],
                write,
            };
            let mut buf = Vec::new();
            remote.encode(&mut buf);
            let mut r = Reader { buf: &buf, pos: 0 };
            assert_eq!(RemoteWrite::decode(&mut r).unwrap(), remote);
            assert_eq!(r.pos, buf.len());
            for cut in 0..buf.len() {
                let mut r = Reader {
                    buf: &buf[..cut],
                    pos: 0,
                };
                assert!(RemoteWrite::decode(&mut r).is_err(), "cut at {cut}");
            }
        }
        for rejection in [
            Rejection::Error(ErrorCode::NoNode),
            Rejection::Multi(vec![
                OpResult::Error(ErrorCode::Ok),
                OpResult::Error(ErrorCode::BadVersion),
            ]),
        ] {
            let mut buf = Vec::new();
            encode_rejection(&rejection, &mut buf);
            let mut r = Reader { buf: &buf, pos: 0 };
            assert_eq!(decode_rejection(&mut r).unwrap(), rejection);
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut r = Reader { buf: &bytes, pos: 0 };
            let _ = RemoteWrite::decode(&mut r);
            let mut r = Reader { buf: &bytes, pos: 0 };
            let _ = decode_rejection(&mut r);
        }
    }
}
