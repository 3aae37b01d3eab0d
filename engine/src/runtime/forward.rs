//! Requests a learner forwards to its leader, and the leader's answers: the runtime's own
//! messages on the replication stream, beside Zab's (which the core handles).
//!
//! A learner's [`Member::forward`](super::Member::forward) sends `Request`. The leader's
//! application decides it: it proposes a txn for it, and the leader sends `Proposed` with the
//! zxid **before** the proposal itself on the same FIFO stream, so the learner knows which txn
//! answers its request before it can apply it, and takes the machine's output from its own
//! apply; or it answers with bytes of its own (`Answered`); or the runtime refuses it
//! (`Refused`).
//!
//! A SNAP for a lagging learner travels here too, streamed from a file in chunks
//! (`SnapBegin`, `SnapChunk`..., `SnapEnd` with the checksum of the whole): the learner writes
//! them to a file, checks it, and only then hands its core the SNAP. Neither side holds the
//! whole snapshot in memory.
//!
//! Tags start at [`FIRST_TAG`], above every Zab message tag, so one byte tells them apart.

use bytes::{BufMut, Bytes};

use crate::zab::codec::{put_bytes, Reader};
use crate::zab::DecodeError;
use crate::{Epoch, Zxid};

/// The lowest tag of a forwarding message; Zab's messages use tags below it.
pub(crate) const FIRST_TAG: u8 = 64;
const _: () = assert!(crate::zab::codec::LAST_TAG < FIRST_TAG);
const REQUEST: u8 = 64;
const PROPOSED: u8 = 65;
const ANSWERED: u8 = 66;
const REFUSED: u8 = 67;
const SNAP_BEGIN: u8 = 68;
const SNAP_CHUNK: u8 = 69;
const SNAP_END: u8 = 70;

/// The largest chunk of a streamed snapshot.
pub(crate) const SNAP_CHUNK_BYTES: usize = 256 * 1024;

/// Why a leader refused a forwarded request without deciding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The member it reached does not lead (any more).
    NotLeader,
    /// Its queue of forwarded requests was full.
    Overloaded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Forwarding {
    Request {
        id: u64,
        body: Bytes,
    },
    Proposed {
        id: u64,
        zxid: Zxid,
    },
    Answered {
        id: u64,
        body: Bytes,
    },
    Refused {
        id: u64,
        refusal: Refusal,
    },
    /// A snapshot of `len` bytes, the state exactly at `zxid`, follows in chunks.
    SnapBegin {
        epoch: Epoch,
        zxid: Zxid,
        len: u64,
    },
    SnapChunk {
        data: Bytes,
    },
    /// The snapshot is complete; `crc` is the crc32c of all its bytes.
    SnapEnd {
        crc: u32,
    },
}

impl Forwarding {
    pub(crate) fn encode(&self, out: &mut impl BufMut) {
        match self {
            Forwarding::Request { id, body } => {
                out.put_u8(REQUEST);
                out.put_u64(*id);
                put_bytes(out, body);
            }
            Forwarding::Proposed { id, zxid } => {
                out.put_u8(PROPOSED);
                out.put_u64(*id);
                out.put_u64(zxid.as_u64());
            }
            Forwarding::Answered { id, body } => {
                out.put_u8(ANSWERED);
                out.put_u64(*id);
                put_bytes(out, body);
            }
            Forwarding::Refused { id, refusal } => {
                out.put_u8(REFUSED);
                out.put_u64(*id);
                out.put_u8(match refusal {
                    Refusal::NotLeader => 1,
                    Refusal::Overloaded => 2,
                });
            }
            Forwarding::SnapBegin { epoch, zxid, len } => {
                out.put_u8(SNAP_BEGIN);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
                out.put_u64(*len);
            }
            Forwarding::SnapChunk { data } => {
                out.put_u8(SNAP_CHUNK);
                put_bytes(out, data);
            }
            Forwarding::SnapEnd { crc } => {
                out.put_u8(SNAP_END);
                out.put_u32(*crc);
            }
        }
    }

    /// Total, like [`crate::zab::Message::decode`].
    pub(crate) fn decode(bytes: &[u8]) -> Result<Forwarding, DecodeError> {
        let mut r = Reader { buf: bytes };
        let tag = r.u8()?;
        let message = match tag {
            SNAP_BEGIN => Forwarding::SnapBegin {
                epoch: Epoch(r.u32()?),
                zxid: r.zxid()?,
                len: r.u64()?,
            },
            SNAP_CHUNK => Forwarding::SnapChunk { data: r.bytes()? },
            SNAP_END => Forwarding::SnapEnd { crc: r.u32()? },
            _ => Self::decode_request(tag, &mut r)?,
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::Trailing(r.buf.len()));
        }
        Ok(message)
    }

    fn decode_request(tag: u8, r: &mut Reader<'_>) -> Result<Forwarding, DecodeError> {
        let id = r.u64()?;
        let message = match tag {
            REQUEST => Forwarding::Request {
                id,
                body: r.bytes()?,
            },
            PROPOSED => Forwarding::Proposed {
                id,
                zxid: r.zxid()?,
            },
            ANSWERED => Forwarding::Answered {
                id,
                body: r.bytes()?,
            },
            REFUSED => Forwarding::Refused {
                id,
                refusal: match r.u8()? {
                    1 => Refusal::NotLeader,
                    2 => Refusal::Overloaded,
                    other => return Err(DecodeError::UnknownTag(other)),
                },
            },
            other => return Err(DecodeError::UnknownTag(other)),
        };
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forwarding() -> impl Strategy<Value = Forwarding> {
        let body = proptest::collection::vec(any::<u8>(), 0..32).prop_map(Bytes::from);
        prop_oneof![
            (any::<u64>(), body.clone()).prop_map(|(id, body)| Forwarding::Request { id, body }),
            (any::<u64>(), any::<u64>()).prop_map(|(id, z)| Forwarding::Proposed {
                id,
                zxid: Zxid::from_u64(z)
            }),
            (any::<u64>(), body).prop_map(|(id, body)| Forwarding::Answered { id, body }),
            (any::<u64>(), any::<bool>()).prop_map(|(id, o)| Forwarding::Refused {
                id,
                refusal: if o {
                    Refusal::Overloaded
                } else {
                    Refusal::NotLeader
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(m in forwarding()) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            prop_assert!(buf[0] >= FIRST_TAG);
            prop_assert_eq!(Forwarding::decode(&buf), Ok(m));
        }

        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Forwarding::decode(&bytes);
        }
    }
}
