//! coord's replication engine.
//!
//! The engine orders opaque txns, makes them durable, and applies them to a [`StateMachine`]
//! exactly once, in zxid order. It knows nothing of znodes: the machine gives txns meaning.
//!
//! - [`zab`]: the sans-I/O Zab core. [`zab::Replica`] takes inputs (`handle_*`) and yields
//!   [`zab::Action`]s; it does no I/O. [`zab::solo`] is the single-voter core the standalone
//!   runtime drives today.
//! - [`sim`]: a deterministic simulator that drives several [`zab::Replica`]s over a faulty
//!   network and disk and checks Zab's safety properties after every step.
//! - [`log`]: the append-only, checksummed txn log with group commit and crash recovery.
//! - [`snapshot`]: checksummed snapshot files, written atomically.
//! - [`Engine`]: the standalone runtime that drives the single-voter core with the log,
//!   snapshots and std threads.
//! - [`Member`]: one member of a replicated ensemble: drives [`zab::Replica`] with the log,
//!   snapshots, epoch files and a [`transport::Transport`] (implemented in `coord-transport`).
//! - [`transport`]: the contract a peer transport fulfils.
//!
//! # The event loop
//!
//! A runtime feeds the core and then drains its actions in order. For one voter:
//!
//! ```
//! use coord_engine::zab::solo::{Action, Replica};
//! use coord_engine::{Bytes, Epoch, Zxid};
//!
//! // Leading epoch 2 over a log that ends in epoch 1.
//! let mut replica = Replica::new_leader(Epoch(2), Zxid::new(Epoch(1), 9));
//! let zxid = replica.handle_propose(Bytes::from_static(b"txn"));
//! assert_eq!(zxid, Zxid::new(Epoch(2), 1));
//!
//! // 1. The core asks for the txn to be made durable; nothing is committed yet.
//! let Some(Action::Persist { zxid: persist, txn }) = replica.poll_action() else { panic!() };
//! assert_eq!((persist, &txn[..]), (zxid, &b"txn"[..]));
//! assert_eq!(replica.poll_action(), None);
//!
//! // 2. The runtime appends and fsyncs it, then says so.
//! replica.handle_persisted(zxid);
//!
//! // 3. The core commits and hands the txn out to be applied.
//! assert_eq!(replica.poll_action(), Some(Action::Commit { zxid }));
//! assert!(matches!(replica.poll_action(), Some(Action::Apply { zxid: z, .. }) if z == zxid));
//! assert_eq!(replica.poll_action(), None);
//! ```
//!
//! [`Engine`] does exactly this on threads: proposers call [`Engine::propose`], one thread
//! appends and fsyncs batches (group commit), one applies, one writes snapshots.
//!
//! # Replicating your own machine
//!
//! A [`Member`] runs one member of an ensemble for any [`StateMachine`]. Give each member the
//! same voter set, its own id, data dir and a transport (`coord_transport::TcpTransport`, or
//! your own [`transport::Transport`]). The leader proposes; a follower forwards what it cannot
//! decide, and the leader's application decides it (see `examples/tests/ensemble.rs` for the
//! counters machine on three members over TCP):
//!
//! ```no_run
//! use std::time::Duration;
//! use coord_engine::transport::Transport;
//! use coord_engine::zab::{self, PeerId, Role};
//! use coord_engine::{Bytes, ForwardReply, Member, MemberConfig, StateMachine};
//!
//! async fn member<M: StateMachine>(
//!     machine: M,
//!     transport: impl Transport,
//! ) -> Result<(), coord_engine::EngineError> {
//!     let config = MemberConfig {
//!         data_dir: "data/m1".into(),
//!         snapshot_every_txns: 100_000,
//!         zab: zab::Config {
//!             id: PeerId(1),
//!             voters: [PeerId(1), PeerId(2), PeerId(3)].into(),
//!             observers: Default::default(),
//!             tick: Duration::from_millis(200),
//!             init_limit_ticks: 10,
//!             sync_limit_ticks: 5,
//!             diff_txns_max: zab::DIFF_TXNS_MAX_DEFAULT,
//!             diff_bytes_max: zab::DIFF_BYTES_MAX_DEFAULT,
//!             compacted_tail_txns: zab::COMPACTED_TAIL_TXNS_DEFAULT,
//!         },
//!     };
//!     let member = Member::open(config, machine, transport)?;
//!     // The leader's side of forwarding: decide what followers send (here: propose it as is).
//!     let mut forwarded = member.take_forwarded().expect("taken once");
//!     let leader = member.clone();
//!     tokio::spawn(async move {
//!         while let Some(request) = forwarded.recv().await {
//!             let txn = request.request.to_vec();
//!             let _ = leader.propose_forwarded(&request, |_zxid| Ok::<_, ()>(txn));
//!         }
//!     });
//!     // Any member: forward a request; it resolves once this member applied its txn, with
//!     // the output of this member's machine.
//!     if member.status().serving {
//!         match member.forward(Bytes::from_static(b"txn")).await? {
//!             ForwardReply::Applied { zxid, output: _ } => println!("applied at {zxid}"),
//!             ForwardReply::Answered(reply) => println!("answered {reply:?}"),
//!         }
//!     }
//!     // Or, on the leader, propose directly.
//!     if member.status().role == Role::Leading {
//!         let (_zxid, _output) = member.propose(|_| Ok::<_, ()>(b"txn".to_vec())).unwrap().await?;
//!     }
//!     member.shutdown().await;
//!     Ok(())
//! }
//! ```

mod fsutil;
pub mod log;
mod machine;
mod runtime;
pub mod sim;
pub mod snapshot;
pub mod storage;
pub mod transport;
pub mod zab;
mod zxid;

pub use bytes::Bytes;
pub use machine::{RestoreError, Snapshot, StateMachine};
pub use runtime::{
    Engine, EngineConfig, EngineError, EngineStats, EpochError, Forward, ForwardReply, Forwarded,
    Member, MemberConfig, MemberStats, MemberStatus, Proposal, APPLY_BACKLOG_TXNS_MAX,
    BATCH_BYTES_MAX, BATCH_TXNS_MAX, DISK_BACKLOG_TXNS_MAX, FORWARDED_QUEUE_MAX,
    FORWARDS_PENDING_MAX, PROPOSALS_PENDING_MAX, SNAPSHOTS_QUEUED_MAX, SNAPSHOTS_RETAINED,
    SNAPSHOT_EVERY_TXNS_DEFAULT,
};
pub use zxid::{Epoch, Zxid};
