//! The znode tree as this server replicates it: applying a txn also fires the watches it
//! triggers, while the tree's write lock is held.

use std::io;
use std::sync::Arc;

use coord_engine::{RestoreError, StateMachine, Zxid};
use coord_znode::{Applied, Tree, TreeSnapshot, TxnResult};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::ids::SessionId;
use crate::sessions::Sessions;
use crate::watch::WatchManager;

pub struct ServerMachine {
    tree: Arc<RwLock<Tree>>,
    watches: Arc<Mutex<WatchManager>>,
    /// Publishes each applied zxid, for replies that must wait for a state to be visible.
    applied: watch::Sender<Zxid>,
    /// Learns of every session that starts or ends, whoever decided it: in an ensemble the
    /// leader expires sessions, and every member closes its own connection of one that ended.
    sessions: Arc<Sessions>,
}

impl ServerMachine {
    pub fn new(
        tree: Arc<RwLock<Tree>>,
        watches: Arc<Mutex<WatchManager>>,
        applied: watch::Sender<Zxid>,
        sessions: Arc<Sessions>,
    ) -> Self {
        ServerMachine {
            tree,
            watches,
            applied,
            sessions,
        }
    }
}

impl StateMachine for ServerMachine {
    type Output = Applied;
    type Snapshot = TreeSnapshot;

    fn apply(&mut self, zxid: Zxid, txn: &[u8]) -> Applied {
        let mut tree = self.tree.write();
        let applied = tree.apply(zxid, txn);
        // Queued before the lock is released: a reader that sees this change afterwards answers
        // its client behind the event (ZooKeeper's watch ordering guarantee).
        if !applied.events.is_empty() {
            self.watches
                .lock()
                .trigger(&applied.events, &applied.event_acls, zxid.as_i64());
        }
        let created = match &applied.result {
            Ok(TxnResult::SessionCreated { session_id }) => tree
                .session(*session_id)
                .map(|info| (*session_id, info.timeout_ms)),
            _ => None,
        };
        drop(tree);
        match (&applied.result, created) {
            (_, Some((id, timeout_ms))) => self.sessions.created(SessionId(id), timeout_ms),
            (Ok(TxnResult::SessionClosed { session_id }), _) => {
                self.sessions.closed(SessionId(*session_id))
            }
            _ => {}
        }
        self.applied.send_replace(zxid);
        applied
    }

    fn snapshot(&self) -> TreeSnapshot {
        self.tree.read().snapshot()
    }

    fn restore(&mut self, reader: &mut dyn io::Read) -> Result<(), RestoreError> {
        let mut tree = self.tree.write();
        tree.restore(reader)?;
        let sessions: Vec<(SessionId, i32)> = tree
            .sessions()
            .map(|(id, info)| (SessionId(id), info.timeout_ms))
            .collect();
        let zxid = tree.last_zxid();
        drop(tree);
        // The tree is now the snapshot's: sessions it does not have are gone (their
        // connections here close), those it has are tracked.
        let live: std::collections::HashSet<SessionId> =
            sessions.iter().map(|(id, _)| *id).collect();
        self.sessions.retain(|id| live.contains(&id));
        self.sessions.adopt(&sessions);
        // Waiters for a zxid the snapshot covers are done.
        self.applied.send_replace(zxid);
        Ok(())
    }
}
