//! An async client for coord and Apache ZooKeeper, over the ZooKeeper wire protocol.
//!
//! ```no_run
//! # async fn example() -> Result<(), coord_client::Error> {
//! use std::time::Duration;
//! use coord_client::{Acl, Client, CreateMode};
//!
//! let client = Client::connect("127.0.0.1:2181,127.0.0.1:2182/app", Duration::from_secs(10)).await?;
//! client.create("/greeting", b"hello", &Acl::open_unsafe(), CreateMode::Persistent).await?;
//! let (data, stat) = client.get_data("/greeting").await?;
//! assert_eq!(data, b"hello");
//! client.set_data("/greeting", b"hi", stat.version).await?;
//! client.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! A [`Client`] is one session. When its connection breaks it connects to another server of
//! the connection string and resumes the session there, setting its watches again; its
//! [`SessionEvents`] say when it is `Suspended`, `Connected` again or `Lost`, as kazoo and
//! Curator report it.

mod client;
mod connect_string;
mod error;
pub mod recipes;
mod session;
mod watches;

pub use client::{Client, Op, OpResult, ReadOp, ReadResult};
pub use connect_string::{ConnectString, ConnectStringError};
pub use coord_proto::{
    Acl, AddWatchMode, ClientInfo, CreateMode, ErrorCode, EventType, Id, Stat, WatcherType,
};
pub use error::Error;
pub use session::{SessionEvents, SessionState};
pub use watches::{PersistentWatch, Watch, WatchedEvent, PERSISTENT_EVENTS_QUEUED_MAX};
