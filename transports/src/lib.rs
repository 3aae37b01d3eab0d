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
//! [`TcpTransport`] is the implementation over TCP; [`QuicTransport`] (feature `quic`, on by
//! default) over QUIC with mutual TLS 1.3, where each member's certificate proves its id.

#[cfg(feature = "quic")]
pub mod certs;
#[cfg(feature = "quic")]
mod endpoint;
mod queues;
#[cfg(feature = "quic")]
mod quic;
pub mod refusals;
mod tcp;
#[cfg(feature = "quic")]
pub mod tls;

pub use coord_engine::transport::{Event, SendError, Stream, Transport};
pub use coord_engine::zab::PeerId;
#[cfg(feature = "quic")]
pub use quic::{QuicConfig, QuicError, QuicReload, QuicTransport};
pub use tcp::{TcpConfig, TcpTransport};
