//! The wire form of [`Message`]: what a peer transport frames and carries.
//!
//! A message is a `u8` tag and its fields, big-endian: epochs `u32`, zxids and rounds `u64`,
//! peer ids `u64`, byte strings a `u32` length and the bytes. The transport frames each message
//! and bounds the frame; [`Message::decode`] is total: any input is a message or an error,
//! never a panic, and a length is checked against what is left before anything is allocated.

use bytes::{BufMut, Bytes};

use super::message::{Message, PeerId, PeerState, Vote};
use crate::{Epoch, Zxid};

/// Why bytes from a peer are not a message. The transport closes that peer's stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("message ends early")]
    Truncated,
    #[error("unknown message tag {0}")]
    UnknownTag(u8),
    #[error("unknown peer state {0}")]
    UnknownState(u8),
    #[error("{0} bytes after the message")]
    Trailing(usize),
}

const NOTIFICATION: u8 = 1;
const FOLLOWER_INFO: u8 = 2;
const LEADER_INFO: u8 = 3;
const ACK_EPOCH: u8 = 4;
const DIFF: u8 = 5;
const TRUNC: u8 = 6;
const SNAP: u8 = 7;
const NEW_LEADER: u8 = 8;
const UP_TO_DATE: u8 = 9;
const PROPOSAL: u8 = 10;
const ACK: u8 = 11;
const COMMIT: u8 = 12;
const INFORM: u8 = 13;
const PING: u8 = 14;
const PONG: u8 = 15;
/// The highest tag a Zab message uses; the runtime's own messages use higher ones.
pub(crate) const LAST_TAG: u8 = PONG;

fn state_code(state: PeerState) -> u8 {
    match state {
        PeerState::Looking => 0,
        PeerState::Following => 1,
        PeerState::Leading => 2,
        PeerState::Observing => 3,
    }
}

pub(crate) struct Reader<'a> {
    pub(crate) buf: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let (head, rest) = self
            .buf
            .split_first_chunk::<N>()
            .ok_or(DecodeError::Truncated)?;
        self.buf = rest;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn epoch(&mut self) -> Result<Epoch, DecodeError> {
        Ok(Epoch(self.u32()?))
    }

    pub(crate) fn zxid(&mut self) -> Result<Zxid, DecodeError> {
        Ok(Zxid::from_u64(self.u64()?))
    }

    fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? != 0)
    }

    /// A length-prefixed byte string; the length is checked against what is left first.
    pub(crate) fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(Bytes::copy_from_slice(head))
    }
}

pub(crate) fn put_bytes(out: &mut impl BufMut, b: &[u8]) {
    // A txn or snapshot chunk is bounded far below 4 GiB by the log and the frame bounds.
    let len =
        u32::try_from(b.len()).unwrap_or_else(|_| panic!("message field of {} bytes", b.len()));
    out.put_u32(len);
    out.put_slice(b);
}

impl Message {
    /// Appends the message's wire form to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        match self {
            Message::Notification { vote, round, state } => {
                out.put_u8(NOTIFICATION);
                out.put_u32(vote.epoch.0);
                out.put_u64(vote.zxid.as_u64());
                out.put_u64(vote.leader.0);
                out.put_u64(*round);
                out.put_u8(state_code(*state));
            }
            Message::FollowerInfo {
                accepted_epoch,
                last_zxid,
                observer,
            } => {
                out.put_u8(FOLLOWER_INFO);
                out.put_u32(accepted_epoch.0);
                out.put_u64(last_zxid.as_u64());
                out.put_u8(u8::from(*observer));
            }
            Message::LeaderInfo { epoch } => {
                out.put_u8(LEADER_INFO);
                out.put_u32(epoch.0);
            }
            Message::AckEpoch {
                epoch,
                current_epoch,
                last_zxid,
                fresh,
            } => {
                out.put_u8(ACK_EPOCH);
                out.put_u32(epoch.0);
                out.put_u32(current_epoch.0);
                out.put_u64(last_zxid.as_u64());
                out.put_u8(u8::from(*fresh));
            }
            Message::Diff { epoch, zxid } => {
                out.put_u8(DIFF);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
            }
            Message::Trunc { epoch, to } => {
                out.put_u8(TRUNC);
                out.put_u32(epoch.0);
                out.put_u64(to.as_u64());
            }
            Message::Snap { epoch, zxid, data } => {
                out.put_u8(SNAP);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
                put_bytes(out, data);
            }
            Message::NewLeader { epoch, zxid } => {
                out.put_u8(NEW_LEADER);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
            }
            Message::UpToDate { epoch, committed } => {
                out.put_u8(UP_TO_DATE);
                out.put_u32(epoch.0);
                out.put_u64(committed.as_u64());
            }
            Message::Proposal { epoch, zxid, txn } => {
                out.put_u8(PROPOSAL);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
                put_bytes(out, txn);
            }
            Message::Ack { epoch, zxid } => {
                out.put_u8(ACK);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
            }
            Message::Commit { epoch, zxid } => {
                out.put_u8(COMMIT);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
            }
            Message::Inform { epoch, zxid, txn } => {
                out.put_u8(INFORM);
                out.put_u32(epoch.0);
                out.put_u64(zxid.as_u64());
                put_bytes(out, txn);
            }
            Message::Ping { epoch, committed } => {
                out.put_u8(PING);
                out.put_u32(epoch.0);
                out.put_u64(committed.as_u64());
            }
            Message::Pong { epoch } => {
                out.put_u8(PONG);
                out.put_u32(epoch.0);
            }
        }
    }

    /// Reads one message that fills `bytes` exactly.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        let mut r = Reader { buf: bytes };
        let message = match r.u8()? {
            NOTIFICATION => {
                let epoch = r.epoch()?;
                let zxid = r.zxid()?;
                let leader = PeerId(r.u64()?);
                let round = r.u64()?;
                let state = match r.u8()? {
                    0 => PeerState::Looking,
                    1 => PeerState::Following,
                    2 => PeerState::Leading,
                    3 => PeerState::Observing,
                    other => return Err(DecodeError::UnknownState(other)),
                };
                Message::Notification {
                    vote: Vote {
                        epoch,
                        zxid,
                        leader,
                    },
                    round,
                    state,
                }
            }
            FOLLOWER_INFO => Message::FollowerInfo {
                accepted_epoch: r.epoch()?,
                last_zxid: r.zxid()?,
                observer: r.bool()?,
            },
            LEADER_INFO => Message::LeaderInfo { epoch: r.epoch()? },
            ACK_EPOCH => Message::AckEpoch {
                epoch: r.epoch()?,
                current_epoch: r.epoch()?,
                last_zxid: r.zxid()?,
                fresh: r.bool()?,
            },
            DIFF => Message::Diff {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
            },
            TRUNC => Message::Trunc {
                epoch: r.epoch()?,
                to: r.zxid()?,
            },
            SNAP => Message::Snap {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
                data: r.bytes()?,
            },
            NEW_LEADER => Message::NewLeader {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
            },
            UP_TO_DATE => Message::UpToDate {
                epoch: r.epoch()?,
                committed: r.zxid()?,
            },
            PROPOSAL => Message::Proposal {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
                txn: r.bytes()?,
            },
            ACK => Message::Ack {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
            },
            COMMIT => Message::Commit {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
            },
            INFORM => Message::Inform {
                epoch: r.epoch()?,
                zxid: r.zxid()?,
                txn: r.bytes()?,
            },
            PING => Message::Ping {
                epoch: r.epoch()?,
                committed: r.zxid()?,
            },
            PONG => Message::Pong { epoch: r.epoch()? },
            other => return Err(DecodeError::UnknownTag(other)),
        };
        if !r.buf.is_empty() {
            return Err(DecodeError::Trailing(r.buf.len()));
        }
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message() -> impl Strategy<Value = Message> {
        let epoch = any::<u32>().prop_map(Epoch);
        let zxid = any::<u64>().prop_map(Zxid::from_u64);
        let bytes = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        let state = prop_oneof![
            Just(PeerState::Looking),
            Just(PeerState::Following),
            Just(PeerState::Leading),
            Just(PeerState::Observing)
        ];
        prop_oneof![
            (
                epoch.clone(),
                zxid.clone(),
                any::<u64>(),
                any::<u64>(),
                state
            )
                .prop_map(|(epoch, zxid, leader, round, state)| {
                    Message::Notification {
                        vote: Vote {
                            epoch,
                            zxid,
                            leader: PeerId(leader),
                        },
                        round,
                        state,
                    }
                }),
            (epoch.clone(), zxid.clone(), any::<bool>()).prop_map(|(e, z, observer)| {
                Message::FollowerInfo {
                    accepted_epoch: e,
                    last_zxid: z,
                    observer,
                }
            }),
            epoch
                .clone()
                .prop_map(|epoch| Message::LeaderInfo { epoch }),
            (epoch.clone(), epoch.clone(), zxid.clone(), any::<bool>()).prop_map(
                |(epoch, current_epoch, last_zxid, fresh)| Message::AckEpoch {
                    epoch,
                    current_epoch,
                    last_zxid,
                    fresh,
                }
            ),
            (epoch.clone(), zxid.clone()).prop_map(|(epoch, to)| Message::Trunc { epoch, to }),
            (epoch.clone(), zxid.clone(), bytes.clone())
                .prop_map(|(epoch, zxid, data)| Message::Snap { epoch, zxid, data }),
            (epoch.clone(), zxid.clone())
                .prop_map(|(epoch, zxid)| Message::NewLeader { epoch, zxid }),
            (epoch.clone(), zxid.clone())
                .prop_map(|(epoch, committed)| Message::UpToDate { epoch, committed }),
            (epoch.clone(), zxid.clone(), bytes.clone())
                .prop_map(|(epoch, zxid, txn)| Message::Proposal { epoch, zxid, txn }),
            (epoch.clone(), zxid.clone()).prop_map(|(epoch, zxid)| Message::Ack { epoch, zxid }),
            (epoch.clone(), zxid.clone()).prop_map(|(epoch, zxid)| Message::Commit { epoch, zxid }),
            (epoch.clone(), zxid.clone(), bytes).prop_map(|(epoch, zxid, txn)| Message::Inform {
                epoch,
                zxid,
                txn
            }),
            (epoch.clone(), zxid).prop_map(|(epoch, committed)| Message::Ping { epoch, committed }),
            epoch.prop_map(|epoch| Message::Pong { epoch }),
        ]
    }

    proptest! {
        #[test]
        fn decode_inverts_encode(m in message()) {
            let mut buf = Vec::new();
            m.encode(&mut buf);
            prop_assert_eq!(Message::decode(&buf), Ok(m));
            // Every strict prefix is an error, and so is a trailing byte.
            for len in 0..buf.len() {
                prop_assert!(Message::decode(&buf[..len]).is_err());
            }
            buf.push(0);
            prop_assert!(Message::decode(&buf).is_err());
        }

        #[test]
        fn decode_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Message::decode(&bytes);
        }
    }

    #[test]
    fn a_lying_length_allocates_nothing() {
        let mut buf = Vec::new();
        buf.put_u8(PROPOSAL);
        buf.put_u32(1);
        buf.put_u64(1);
        buf.put_u32(u32::MAX);
        assert_eq!(Message::decode(&buf), Err(DecodeError::Truncated));
    }
}
