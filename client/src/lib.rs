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
//! So far: one session over one connection at a time, the basic operations, ACLs, sync,
//! multi, and one-shot watches as futures. Reconnecting to another server with the session
//! (and re-arming watches), persistent watches, auth, multiRead and the recipes come next
//! (issue 8).

mod connect_string;
mod error;
mod session;

pub use connect_string::{ConnectString, ConnectStringError};
pub use coord_proto::EventType;
pub use coord_proto::{Acl, CreateMode, ErrorCode, Id, Stat};
pub use error::Error;
pub use session::{Client, Op, OpResult, Watch, WatchedEvent};
