//! The contract between the engine and a peer transport.
//!
//! A transport gives the engine, per peer, two FIFO streams of frames, one for election
//! traffic and one for replication, so that neither waits behind the other. The engine defines
//! the contract; `coord-transport` implements it (TCP today, QUIC with TLS next). It promises:
//!
//! - **Who sent a frame is the transport's word**, never a claim inside the frame.
//! - **A broken stream is reported** ([`Event::Reset`]) before anything from the stream that
//!   replaces it is delivered, and on the side that sent into it too: a gap in a stream is
//!   never silent (the Zab core re-syncs on a reset).
//! - **Everything is bounded**: frames, and each peer's send queue, past which the stream is
//!   reset rather than grown; a slow peer never stalls sends to the others.
//! - Streams come back by themselves after a failure.

use std::future::Future;

use bytes::Bytes;

use crate::zab::{Message, PeerId};

/// Which of a peer's two streams a frame travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stream {
    /// Leader election notifications.
    Election,
    /// Discovery, synchronization and broadcast.
    Replication,
}

impl Stream {
    /// The stream a Zab message travels on.
    pub fn of(message: &Message) -> Stream {
        match message {
            Message::Notification { .. } => Stream::Election,
            _ => Stream::Replication,
        }
    }

    /// The stream's code on the wire, for transports that name streams in a handshake.
    pub fn code(self) -> u8 {
        match self {
            Stream::Election => 1,
            Stream::Replication => 2,
        }
    }

    /// The stream a wire code names.
    pub fn from_code(code: u8) -> Option<Stream> {
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

/// Framed, FIFO, bounded streams to every other member. See the module docs for the promises.
pub trait Transport: Send + 'static {
    /// Queues `frame` for `to` without waiting. A full queue resets the stream.
    fn send(&self, to: PeerId, stream: Stream, frame: Bytes) -> Result<(), SendError>;

    /// Drops the stream with `peer` and what is queued on it, both ways: both ends see an
    /// [`Event::Reset`], and the next stream starts afresh.
    fn reset(&self, peer: PeerId, stream: Stream);

    /// Frames queued for `to` on `stream` and not yet written: a sender that streams much
    /// (a snapshot) keeps it low, so that the queue never overflows.
    fn queued(&self, to: PeerId, stream: Stream) -> usize;

    /// The next event; `None` once the transport is shut down.
    fn recv(&mut self) -> impl Future<Output = Option<Event>> + Send;
}
