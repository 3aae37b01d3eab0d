//! The coord server: a ZooKeeper-compatible coordination service built on coord-engine with the
//! znode tree as its state machine.

pub mod config;
pub mod conn;
pub mod dev;
pub mod ensemble;
pub mod fourlw;
pub mod machine;
pub mod ops;
pub mod server;
pub mod sessions;
pub mod watch;
pub mod write;
pub mod zoocfg;

pub use config::{Config, Flags};
pub use server::{Server, StartError};
