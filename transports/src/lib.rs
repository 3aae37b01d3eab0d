//! Peer transports: how the members of an ensemble carry Zab messages to each other.
//!
//! A transport gives the engine, per peer, two FIFO streams of frames, one for election
//! traffic and one for replication, so that neither waits behind the other. It promises:
//!
//! - **Who sent a frame is the transport's word**, never a claim inside the frame. Over TCP the
//!   dialer names itself in the handshake and that name is trusted (the network must be
//!   trusted, or use the QUIC transport, whose certificates prove identity).
//! - **A broken stream is reported** ([`Event::Reset`]) before anything from the stream that
//!   replaces it is delivered, and on the side that sent into it too: a gap in a stream is
//!   never silent (the Zab core re-syncs on a reset).
//! - **Everything is bounded**: a frame longer than [`TcpConfig::frame_bytes_max`] closes its
//!   stream before it is read; a peer's send queue holds at most
//!   [`TcpConfig::queue_frames_max`] frames, past which the stream is reset rather than grown;
//!   a slow peer never stalls sends to the others.
//! - Streams come back by themselves: a dialer reconnects with exponential backoff and jitter.
//!
//! [`TcpTransport`] is the implementation over TCP.

mod tcp;

pub use coord_engine::zab::PeerId;
pub use tcp::{TcpConfig, TcpTransport};

use bytes::Bytes;

/// Which of a peer's two streams a frame travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Leader election notifications.
    Election,
    /// Discovery, synchronization and broadcast.
    Replication,
}

impl Stream {
    fn code(self) -> u8 {
        match self {
            Stream::Election => 1,
            Stream::Replication => 2,
        }
    }

    fn from_code(code: u8) -> Option<Stream> {
        match code {
            1 => Some(Stream::Election),
            2 => Some(Stream::Replication),
            _ => None,
        }
    }
}

/// What a transport hands the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A frame from `from` on `stream`.
    Frame {
        from: PeerId,
        stream: Stream,
        frame: Bytes,
    },
    /// The stream with `peer` broke: frames sent on it may be lost. Reported before any frame
    /// of the next stream with `peer`.
    Reset { peer: PeerId, stream: Stream },
}

/// Why a frame was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    #[error("{0:?} is not a member")]
    UnknownPeer(PeerId),
    #[error("frame of {len} bytes exceeds {max}")]
    FrameTooLarge { len: usize, max: usize },
    /// The peer's queue was full: the stream is reset (an [`Event::Reset`] follows).
    #[error("send queue to {0:?} is full; its stream is reset")]
    QueueFull(PeerId),
    #[error("the transport is shut down")]
    Closed,
}
