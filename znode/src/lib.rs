//! The ZooKeeper znode tree as a replicated state machine.
//!
//! The leader decides each write with [`Prep::prepare`] (against the committed [`Tree`] and
//! the writes still in flight), proposes the resulting [`Txn`]'s bytes, and every replica
//! applies them with [`StateMachine::apply`](coord_engine::StateMachine::apply), which yields
//! the reply and the [`ChangeEvent`]s that fire watches. Reads go straight to the [`Tree`].
//!
//! ```
//! use coord_engine::{StateMachine, Zxid};
//! use coord_proto::{Acl, CreateMode};
//! use coord_znode::{Caller, ChangeEvent, Prep, Tree, TxnResult, Write};
//!
//! let mut tree = Tree::new();
//! let mut prep = Prep::new();
//! let caller = Caller { session_id: 0, ids: &[], is_super: false };
//! let write = Write::Create {
//!     path: "/app".into(),
//!     data: "v1".into(),
//!     acl: Acl::open_unsafe(),
//!     mode: CreateMode::Persistent.code(),
//!     ttl: None,
//!     container: false,
//! };
//! let zxid = Zxid::from_u64(1);
//! let txn = prep.prepare(&tree, &caller, &write, zxid, 1_700_000_000_000).unwrap();
//! // ... the engine logs and commits txn.encode() ...
//! let applied = tree.apply(zxid, &txn.encode());
//! prep.applied(zxid);
//! assert!(matches!(applied.result, Ok(TxnResult::Created { .. })));
//! assert_eq!(applied.events[0], ChangeEvent::Created("/app".into()));
//! let (data, stat) = tree.get_data("/app", &caller).unwrap();
//! assert_eq!(&data[..], b"v1");
//! assert_eq!(stat.czxid, 1);
//! ```

mod acl;
mod error;
mod node;
mod path;
mod prep;
mod remote;
mod tree;
mod txn;

pub use acl::{digest_id, fixup_acl, is_allowed, is_valid_x509_id, Caller, ACL_ENTRIES_MAX};
pub use error::Error;
pub use node::ephemeral;
pub use path::ZPath;
pub use prep::{Checked, Prep, Rejection, Write, TXN_BYTES_MAX_DEFAULT};
pub use remote::{decode_rejection, encode_rejection, RemoteWrite, CALLER_IDS_MAX};
pub use tree::{
    Applied, ChangeEvent, OpResult, ReapCursor, SessionInfo, Tree, TreeSnapshot, TxnResult,
    SYSTEM_PATHS,
};
pub use txn::{Reader, Txn, TxnOp, MULTI_OPS_MAX};

#[cfg(test)]
mod tests;
