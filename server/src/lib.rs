//! The coord server: a ZooKeeper-compatible coordination service built on coord-engine with the
//! znode tree as its state machine.
//!
//! Data flows one way through the modules, listed here in that order: each uses only those
//! above it.
//!
//! - [`ids`]: newtypes for connection and session ids.
//! - [`outbox`]: the bounded queue of frames to one client, and how it is asked to close.
//! - [`auth`]: who a connection is.
//! - [`tls`]: the secure client port's TLS, and the `x509` identity of client certificates.
//! - [`config`]: the configuration (TOML, flags, `zoo.cfg`), checked.
//! - [`watch`]: the watch registry; the apply thread fires watches into outboxes.
//! - [`sessions`]: session deadlines and owners.
//! - [`machine`]: the znode tree as the engine's state machine, firing watches and keeping
//!   the session table in step with the txns it applies.
//! - [`forward`]: what a follower asks its leader, and the answers.
//! - [`write`]: where writes go (the local engine, or the leader) and how they resolve.
//! - [`shared`]: the state connections and background tasks share, the write path, the
//!   registry of connections.
//! - [`ops`]: executing one client request.
//! - [`fourlw`]: the four-letter words.
//! - [`conn`]: one client connection.
//! - `secure`: the secure client port's TLS handshake, before [`conn`] (feature `tls`).
//! - [`ensemble`]: the tasks of an ensemble member (deciding forwarded requests, reporting
//!   sessions, following the leader's status).
//! - [`server`]: the wiring: start, the client port, session expiry, the reaper.
//! - [`dev`]: `coord dev`, a local ensemble of processes.
//! - `certs`: `coord certs`, development certificates for QUIC (feature `quic`).

pub mod auth;
#[cfg(feature = "quic")]
pub mod certs;
pub mod config;
pub mod conn;
pub mod dev;
pub mod ensemble;
pub mod forward;
pub mod fourlw;
pub mod ids;
pub mod machine;
pub mod ops;
pub mod outbox;
#[cfg(feature = "tls")]
pub mod secure;
pub mod server;
pub mod sessions;
pub mod shared;
pub mod tls;
pub mod watch;
pub mod write;

pub use config::{Config, Flags};
pub use server::{Server, StartError};
