//! The znode tree as this server replicates it: applying a txn also fires the watches it
//! triggers, while the tree's write lock is held.

use std::io;
use std::sync::Arc;

use coord_engine::{RestoreError, StateMachine, Zxid};
use coord_znode::{Applied, Tree, TreeSnapshot};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::watch::WatchManager;

pub struct ServerMachine {
    tree: Arc<RwLock<Tree>>,
    watches: Arc<Mutex<WatchManager>>,
    /// Publishes each applied zxid, for replies that must wait for a state to be visible.
    applied: watch::Sender<Zxid>,
}

impl ServerMachine {
    pub fn new(
        tree: Arc<RwLock<Tree>>,
        watches: Arc<Mutex<WatchManager>>,
        applied: watch::Sender<Zxid>,
    ) -> Self {
        ServerMachine {
            tree,
            watches,
            applied,
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
        drop(tree);
        self.applied.send_replace(zxid);
        applied
    }

    fn snapshot(&self) -> TreeSnapshot {
        self.tree.read().snapshot()
    }

    fn restore(&mut self, reader: &mut dyn io::Read) -> Result<(), RestoreError> {
        self.tree.write().restore(reader)
    }
}
