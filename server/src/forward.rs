//! What a follower asks its leader, and the answers: the messages the server exchanges over
//! the engine's forwarding (`Member::forward`), with their bounded codec.
//!
//! - Writes from a follower's clients are forwarded ([`PeerRequest::Write`]) and decided by the
//!   leader alone; a refusal comes back as [`PeerAnswer::Refused`].
//! - A follower forwards the resumption of an existing session ([`PeerRequest::Resume`]) and
//!   reports the sessions its connections keep alive ([`PeerRequest::Touch`]).
//! - `sync` on a follower asks the leader for the last zxid it proposed ([`PeerRequest::Sync`]).

use bytes::Bytes;
use coord_engine::Zxid;
use coord_znode::{decode_rejection, encode_rejection, Reader, Rejection, RemoteWrite};

use crate::ids::{ConnId, SessionId};

/// Session ids a follower reports alive in one message.
pub const TOUCH_BATCH_MAX: usize = 8192;

/// What a follower asks its leader. Every request is bounded by the frame it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerRequest {
    /// A client's write; `owner` is the connection it came from, when a client sent it.
    Write {
        owner: Option<ConnId>,
        write: RemoteWrite,
    },
    /// A client reconnects with an existing session through connection `owner`.
    Resume {
        session_id: SessionId,
        passwd: Vec<u8>,
        timeout_ms: u64,
        owner: ConnId,
    },
    /// These sessions' clients are connected to the sender.
    Touch {
        sessions: Vec<SessionId>,
    },
    Sync,
}

/// The leader's answer to a [`PeerRequest`] that it did not propose a txn for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerAnswer {
    /// A write was refused; answer once `after` is applied.
    Refused {
        rejection: Rejection,
        after: Zxid,
    },
    /// The session moved to the connection; its earlier writes end at `last_proposed`.
    Resumed {
        last_proposed: Zxid,
    },
    /// The session is gone (expired, closing, or a wrong password).
    Gone,
    /// Every write proposed before the sync ends at `zxid`.
    Synced {
        zxid: Zxid,
    },
    Done,
    /// The request did not decode.
    Malformed,
}

const Q_WRITE: u8 = 1;
const Q_RESUME: u8 = 2;
const Q_TOUCH: u8 = 3;
const Q_SYNC: u8 = 4;
const A_REFUSED: u8 = 1;
const A_RESUMED: u8 = 2;
const A_GONE: u8 = 3;
const A_SYNCED: u8 = 4;
const A_DONE: u8 = 5;
const A_MALFORMED: u8 = 6;

/// Why bytes from a peer are not a request or an answer.
#[derive(Debug, thiserror::Error)]
#[error("malformed peer message: {0}")]
pub struct Malformed(String);

fn finish(r: &Reader<'_>) -> Result<(), Malformed> {
    match r.remaining() {
        0 => Ok(()),
        n => Err(Malformed(format!("{n} trailing bytes"))),
    }
}

impl PeerRequest {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            PeerRequest::Write { owner, write } => {
                out.push(Q_WRITE);
                out.extend_from_slice(&owner.map_or(0, |owner| owner.0).to_be_bytes());
                write.encode(&mut out);
            }
            PeerRequest::Resume {
                session_id,
                passwd,
                timeout_ms,
                owner,
            } => {
                out.push(Q_RESUME);
                out.extend_from_slice(&session_id.0.to_be_bytes());
                out.extend_from_slice(&(passwd.len() as u32).to_be_bytes());
                out.extend_from_slice(passwd);
                out.extend_from_slice(&timeout_ms.to_be_bytes());
                out.extend_from_slice(&owner.0.to_be_bytes());
            }
            PeerRequest::Touch { sessions } => {
                out.push(Q_TOUCH);
                out.extend_from_slice(&(sessions.len() as u32).to_be_bytes());
                for id in sessions {
                    out.extend_from_slice(&id.0.to_be_bytes());
                }
            }
            PeerRequest::Sync => out.push(Q_SYNC),
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerRequest, Malformed> {
        let m = |e: coord_znode::Error| Malformed(e.to_string());
        let mut r = Reader::new(bytes);
        let request = match r.u8().map_err(m)? {
            Q_WRITE => {
                // Connection ids start at 1: 0 means no connection.
                let owner = r.i64().map_err(m)? as u64;
                PeerRequest::Write {
                    owner: (owner != 0).then_some(ConnId(owner)),
                    write: RemoteWrite::decode(&mut r).map_err(m)?,
                }
            }
            Q_RESUME => PeerRequest::Resume {
                session_id: SessionId(r.i64().map_err(m)?),
                passwd: r.bytes().map_err(m)?.to_vec(),
                timeout_ms: r.i64().map_err(m)? as u64,
                owner: ConnId(r.i64().map_err(m)? as u64),
            },
            Q_TOUCH => {
                let n = r.count(TOUCH_BATCH_MAX, 8).map_err(m)?;
                let mut sessions = Vec::with_capacity(n);
                for _ in 0..n {
                    sessions.push(SessionId(r.i64().map_err(m)?));
                }
                PeerRequest::Touch { sessions }
            }
            Q_SYNC => PeerRequest::Sync,
            tag => return Err(Malformed(format!("request tag {tag}"))),
        };
        finish(&r)?;
        Ok(request)
    }
}

impl PeerAnswer {
    pub fn encode(&self) -> Bytes {
        let mut out = Vec::new();
        match self {
            PeerAnswer::Refused { rejection, after } => {
                out.push(A_REFUSED);
                out.extend_from_slice(&after.as_u64().to_be_bytes());
                encode_rejection(rejection, &mut out);
            }
            PeerAnswer::Resumed { last_proposed } => {
                out.push(A_RESUMED);
                out.extend_from_slice(&last_proposed.as_u64().to_be_bytes());
            }
            PeerAnswer::Gone => out.push(A_GONE),
            PeerAnswer::Synced { zxid } => {
                out.push(A_SYNCED);
                out.extend_from_slice(&zxid.as_u64().to_be_bytes());
            }
            PeerAnswer::Done => out.push(A_DONE),
            PeerAnswer::Malformed => out.push(A_MALFORMED),
        }
        Bytes::from(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<PeerAnswer, Malformed> {
        let m = |e: coord_znode::Error| Malformed(e.to_string());
        let mut r = Reader::new(bytes);
        let zxid = |r: &mut Reader<'_>| r.i64().map(|z| Zxid::from_u64(z as u64)).map_err(m);
        let answer = match r.u8().map_err(m)? {
            A_REFUSED => {
                let after = zxid(&mut r)?;
                PeerAnswer::Refused {
                    rejection: decode_rejection(&mut r).map_err(m)?,
                    after,
                }
            }
            A_RESUMED => PeerAnswer::Resumed {
                last_proposed: zxid(&mut r)?,
            },
            A_GONE => PeerAnswer::Gone,
            A_SYNCED => PeerAnswer::Synced {
                zxid: zxid(&mut r)?,
            },
            A_DONE => PeerAnswer::Done,
            A_MALFORMED => PeerAnswer::Malformed,
            tag => return Err(Malformed(format!("answer tag {tag}"))),
        };
        finish(&r)?;
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coord_proto::{ErrorCode, Id};
    use coord_znode::Write;

    #[test]
    fn requests_and_answers_round_trip_and_truncations_fail() {
        let requests = [
            PeerRequest::Write {
                owner: Some(ConnId(7)),
                write: RemoteWrite {
                    session_id: 3,
                    is_super: false,
                    ids: vec![Id::new("ip", "127.0.0.1")],
                    write: Write::Delete {
                        path: "/x".into(),
                        version: -1,
                    },
                },
            },
            PeerRequest::Resume {
                session_id: SessionId(9),
                passwd: vec![1; 16],
                timeout_ms: 4000,
                owner: ConnId(2),
            },
            PeerRequest::Touch {
                sessions: vec![SessionId(1), SessionId(2), SessionId(3)],
            },
            PeerRequest::Sync,
        ];
        for request in requests {
            let bytes = request.encode();
            assert_eq!(PeerRequest::decode(&bytes).unwrap(), request);
            for cut in 0..bytes.len() {
                assert!(PeerRequest::decode(&bytes[..cut]).is_err());
            }
        }
        let answers = [
            PeerAnswer::Refused {
                rejection: Rejection::Error(ErrorCode::NodeExists),
                after: Zxid::from_u64(5),
            },
            PeerAnswer::Resumed {
                last_proposed: Zxid::from_u64(6),
            },
            PeerAnswer::Gone,
            PeerAnswer::Synced {
                zxid: Zxid::from_u64(7),
            },
            PeerAnswer::Done,
            PeerAnswer::Malformed,
        ];
        for answer in answers {
            let bytes = answer.encode();
            assert_eq!(PeerAnswer::decode(&bytes).unwrap(), answer);
            for cut in 0..bytes.len() {
                assert!(PeerAnswer::decode(&bytes[..cut]).is_err());
            }
        }
    }
}
