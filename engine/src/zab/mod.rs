//! The sans-I/O Zab core.
//!
//! [`Replica`] is one member of an ensemble through every phase: election, discovery,
//! synchronization and broadcast, for followers and observers. It takes events (`handle_*`) and
//! hands back work ([`Replica::poll_action`]); it never touches a disk, a socket or a clock, so the
//! runtime and the [simulator](crate::sim) drive the same code. [`solo`] is the single-voter
//! core the standalone runtime drives today.

pub(crate) mod codec;
mod message;
mod replica;
pub mod solo;

pub use codec::DecodeError;
pub use message::{Message, PeerId, PeerState, Vote};
pub use replica::{
    Action, Config, Durable, DurableError, EpochFile, Learners, ProposeError, Replica, Role, Syncs,
    COMPACTED_TAIL_BYTES_MAX, COMPACTED_TAIL_TXNS_DEFAULT, DIFF_BYTES_MAX_DEFAULT,
    DIFF_TXNS_MAX_DEFAULT, ELECTION_FINALIZE_WAIT,
};
