//! Watches: per-server state, as in ZooKeeper's WatchManager. A watch belongs to a client
//! connection; a client that reconnects re-arms its watches with setWatches.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coord_proto::{perms, Acl, EventType, Id, WatcherType};
use coord_znode::{is_allowed, Caller, ChangeEvent};

use crate::ids::{ConnId, SessionId};
use crate::outbox::{notification, Outbox};

/// The most watches one connection may hold (ZooKeeper has no bound). A request that would
/// arm more is refused with ThrottledOp, not executed.
pub const WATCHES_PER_CONNECTION_MAX: usize = 1_000_000;

/// The kinds of watch a connection can hold on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Set by getData and exists: fires once on create, delete or data change.
    Data,
    /// Set by getChildren: fires once on delete or a change of the children.
    Child,
    /// Set by addWatch(PERSISTENT): fires on every change of the node or its children.
    Persistent,
    /// Set by addWatch(PERSISTENT_RECURSIVE): fires on every change of the node or a descendant,
    /// except children changes.
    PersistentRecursive,
}

const KINDS: [Kind; 4] = [
    Kind::Data,
    Kind::Child,
    Kind::Persistent,
    Kind::PersistentRecursive,
];

struct Watcher {
    outbox: Outbox,
    session_id: SessionId,
    /// The connection's identity: watches deliver only what it may read.
    ids: Arc<[Id]>,
    is_super: bool,
    watches: HashSet<(Kind, String)>,
}

impl Watcher {
    fn may_read(&self, acl: &[Acl]) -> bool {
        let caller = Caller {
            session_id: self.session_id.0,
            ids: &self.ids,
            is_super: self.is_super,
        };
        is_allowed(acl, perms::READ, &caller)
    }
}

/// Every watch of every connection on this server.
#[derive(Default)]
pub struct WatchManager {
    by_path: [HashMap<String, HashSet<ConnId>>; 4],
    conns: HashMap<ConnId, Watcher>,
    /// Kept as watches come and go, so that monitoring (`mntr`, `wchs`) is O(1) under the lock
    /// the apply thread needs. Invariants: `watch_count` is the sum of every watcher's
    /// `watches`, `watching_conns` the number of watchers with any, `watched_paths` the number
    /// of distinct paths over `by_path`.
    watch_count: usize,
    watching_conns: usize,
    watched_paths: usize,
}

fn slot(kind: Kind) -> usize {
    kind as usize
}

impl WatchManager {
    /// Makes `conn` able to hold watches; its events go to `outbox`.
    pub fn register_conn(
        &mut self,
        conn: ConnId,
        session_id: SessionId,
        outbox: Outbox,
        ids: Arc<[Id]>,
        is_super: bool,
    ) {
        self.conns.insert(
            conn,
            Watcher {
                outbox,
                session_id,
                ids,
                is_super,
                watches: HashSet::new(),
            },
        );
    }

    /// Records a connection's identity after it authenticated.
    pub fn set_identity(&mut self, conn: ConnId, ids: Arc<[Id]>, is_super: bool) {
        if let Some(watcher) = self.conns.get_mut(&conn) {
            watcher.ids = ids;
            watcher.is_super = is_super;
        }
    }

    /// Drops every watch of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let Some(watcher) = self.conns.remove(&conn) else {
            return;
        };
        if !watcher.watches.is_empty() {
            self.watching_conns = self.watching_conns.saturating_sub(1);
        }
        self.watch_count = self.watch_count.saturating_sub(watcher.watches.len());
        for (kind, path) in watcher.watches {
            self.unlink(kind, &path, conn);
        }
    }

    fn is_watched(&self, path: &str) -> bool {
        self.by_path.iter().any(|m| m.contains_key(path))
    }

    /// Takes `conn` off the watchers of `kind` on `path` (its own set is the caller's business).
    fn unlink(&mut self, kind: Kind, path: &str, conn: ConnId) {
        let map = &mut self.by_path[slot(kind)];
        if let Some(set) = map.get_mut(path) {
            set.remove(&conn);
            if set.is_empty() {
                map.remove(path);
                if !self.is_watched(path) {
                    self.watched_paths = self.watched_paths.saturating_sub(1);
                }
            }
        }
    }

    /// Removes (kind, path) from `conn`'s own set; false if it was not there.
    fn forget(&mut self, conn: ConnId, kind: Kind, path: &str) -> bool {
        let Some(watcher) = self.conns.get_mut(&conn) else {
            return false;
        };
        if !watcher.watches.remove(&(kind, path.to_owned())) {
            return false;
        }
        // Saturating: this runs from a connection's drop, also while a panic unwinds, where
        // an overflow check must not turn a counting bug into an abort.
        self.watch_count = self.watch_count.saturating_sub(1);
        if watcher.watches.is_empty() {
            self.watching_conns = self.watching_conns.saturating_sub(1);
        }
        true
    }

    /// Whether `conn` may arm `more` watches without holding more than
    /// [`WATCHES_PER_CONNECTION_MAX`].
    pub fn has_room(&self, conn: ConnId, more: usize) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|w| w.watches.len().saturating_add(more) <= WATCHES_PER_CONNECTION_MAX)
    }

    /// Arms a watch of `kind` for `conn` on `path`.
    pub fn add(&mut self, kind: Kind, path: &str, conn: ConnId) {
        let Some(watcher) = self.conns.get_mut(&conn) else {
            return;
        };
        if !watcher.watches.insert((kind, path.to_owned())) {
            return;
        }
        self.watch_count += 1;
        if watcher.watches.len() == 1 {
            self.watching_conns += 1;
        }
        if !self.is_watched(path) {
            self.watched_paths += 1;
        }
        self.by_path[slot(kind)]
            .entry(path.to_owned())
            .or_default()
            .insert(conn);
    }

    fn kinds_of(watcher_type: WatcherType) -> &'static [Kind] {
        match watcher_type {
            WatcherType::Children => &[Kind::Child],
            WatcherType::Data => &[Kind::Data],
            WatcherType::Any => &KINDS,
            WatcherType::Persistent => &[Kind::Persistent],
            WatcherType::PersistentRecursive => &[Kind::PersistentRecursive],
        }
    }

    /// Whether `conn` holds a watch of `watcher_type` on `path` (checkWatches).
    pub fn contains(&self, path: &str, conn: ConnId, watcher_type: WatcherType) -> bool {
        let Some(watcher) = self.conns.get(&conn) else {
            return false;
        };
        Self::kinds_of(watcher_type)
            .iter()
            .any(|kind| watcher.watches.contains(&(*kind, path.to_owned())))
    }

    /// Removes `conn`'s watches of `watcher_type` on `path` (removeWatches); false if none.
    pub fn remove(&mut self, path: &str, conn: ConnId, watcher_type: WatcherType) -> bool {
        let mut removed = false;
        for kind in Self::kinds_of(watcher_type) {
            if self.forget(conn, *kind, path) {
                self.unlink(*kind, path, conn);
                removed = true;
            }
        }
        removed
    }

    /// Fires the watches that `events` (from one applied txn, with the ACL of each event's node)
    /// trigger, in order. Each connection gets at most one notification per event, and only if
    /// it may read the node (ZooKeeper 3.9.2+, `ServerCnxn.process` with the node's ACL); a
    /// one-shot watch is used up either way, as in ZooKeeper. Runs under the tree's write lock,
    /// so each (ACL, connection) pair is checked once per txn, however many events share it.
    pub fn trigger(&mut self, events: &[ChangeEvent], acls: &[Arc<[Acl]>], zxid: i64) {
        let mut checked: HashMap<(usize, ConnId), bool> = HashMap::new();
        for (i, event) in events.iter().enumerate() {
            let (event_type, path) = match event {
                ChangeEvent::Created(path) => (EventType::NodeCreated, path),
                ChangeEvent::Deleted(path) => (EventType::NodeDeleted, path),
                ChangeEvent::DataChanged(path) => (EventType::NodeDataChanged, path),
                ChangeEvent::ChildrenChanged(path) => (EventType::NodeChildrenChanged, path),
            };
            // An event without its ACL (not expected) reaches nobody.
            let acl = acls.get(i);
            self.fire(event_type, path, zxid, |conn, watcher| {
                acl.is_some_and(|acl| {
                    let key = (Arc::as_ptr(acl) as *const () as usize, conn);
                    *checked.entry(key).or_insert_with(|| watcher.may_read(acl))
                })
            });
        }
    }

    /// Fires one event at `path` for the watchers `may_read` allows, using up the one-shot
    /// watches on it.
    fn fire(
        &mut self,
        event_type: EventType,
        path: &str,
        zxid: i64,
        mut may_read: impl FnMut(ConnId, &Watcher) -> bool,
    ) {
        let mut targets: Vec<ConnId> = Vec::new();
        let one_shot: &[Kind] = match event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => &[Kind::Data],
            EventType::NodeDeleted => &[Kind::Data, Kind::Child],
            EventType::NodeChildrenChanged => &[Kind::Child],
            _ => &[],
        };
        for kind in one_shot {
            if let Some(conns) = self.by_path[slot(*kind)].remove(path) {
                if !self.is_watched(path) {
                    self.watched_paths = self.watched_paths.saturating_sub(1);
                }
                for conn in conns {
                    self.forget(conn, *kind, path);
                    targets.push(conn);
                }
            }
        }
        if let Some(conns) = self.by_path[slot(Kind::Persistent)].get(path) {
            targets.extend(conns.iter().copied());
        }
        // A recursive watch sees changes of nodes, not of child lists (ZooKeeper 3.6+).
        let recursive = &self.by_path[slot(Kind::PersistentRecursive)];
        if event_type != EventType::NodeChildrenChanged && !recursive.is_empty() {
            let mut ancestor = path;
            loop {
                if let Some(conns) = recursive.get(ancestor) {
                    targets.extend(conns.iter().copied());
                }
                if ancestor == "/" {
                    break;
                }
                ancestor = match ancestor.rfind('/') {
                    Some(0) => "/",
                    Some(i) => &ancestor[..i],
                    None => break,
                };
            }
        }
        if targets.is_empty() {
            return;
        }
        targets.sort_unstable();
        targets.dedup();
        let frame = notification(event_type, path, zxid);
        for conn in targets {
            if let Some(watcher) = self.conns.get(&conn) {
                if may_read(conn, watcher) {
                    watcher.outbox.send(frame.clone());
                }
            }
        }
    }

    /// Sends one event to one connection: setWatches reporting a change the client missed.
    /// Its zxid is -1, as ZooKeeper's (a `WatchedEvent` made without one). ZooKeeper sends
    /// these without a READ check; coord checks READ on the node when it still exists
    /// (`acl`), so a client learns nothing through setWatches that a read would not tell it.
    pub fn fire_one(&self, conn: ConnId, event_type: EventType, path: &str, acl: Option<&[Acl]>) {
        if let Some(watcher) = self.conns.get(&conn) {
            if acl.is_some_and(|acl| !watcher.may_read(acl)) {
                return;
            }
            watcher.outbox.send(notification(event_type, path, -1));
        }
    }

    /// (connections watching, paths watched, total watches), for `wchs` and `mntr`: O(1).
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.watching_conns, self.watched_paths, self.watch_count)
    }

    /// Watched paths per session, for `wchc`.
    pub fn by_session(&self) -> Vec<(SessionId, Vec<String>)> {
        let mut out: Vec<(SessionId, Vec<String>)> = self
            .conns
            .values()
            .filter(|w| !w.watches.is_empty())
            .map(|w| {
                let mut paths: Vec<String> = w.watches.iter().map(|(_, p)| p.clone()).collect();
                paths.sort();
                paths.dedup();
                (w.session_id, paths)
            })
            .collect();
        out.sort();
        out
    }

    /// Watching sessions per path, for `wchp`.
    pub fn by_path(&self) -> Vec<(String, Vec<SessionId>)> {
        let mut map: HashMap<&str, Vec<SessionId>> = HashMap::new();
        for watcher in self.conns.values() {
            for (_, path) in &watcher.watches {
                map.entry(path).or_default().push(watcher.session_id);
            }
        }
        let mut out: Vec<(String, Vec<SessionId>)> = map
            .into_iter()
            .map(|(path, mut sessions)| {
                sessions.sort_unstable();
                sessions.dedup();
                (path.to_owned(), sessions)
            })
            .collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Outbox;
    use coord_proto::{Record, ReplyHeader, WatcherEvent};
    use tokio::sync::mpsc;

    fn events(rx: &mut mpsc::UnboundedReceiver<bytes::Bytes>) -> Vec<(EventType, String)> {
        let mut out = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            let (header, body) = ReplyHeader::split(&frame[4..]).unwrap();
            assert_eq!(header.xid, coord_proto::xid::NOTIFICATION);
            let event = WatcherEvent::decode(body).unwrap();
            out.push((event.event_type, event.path));
        }
        out
    }

    fn trigger_open(m: &mut WatchManager, events: &[ChangeEvent], zxid: i64) {
        let acls: Vec<Arc<[Acl]>> = events.iter().map(|_| Acl::open_unsafe().into()).collect();
        m.trigger(events, &acls, zxid);
    }

    fn manager_with_conn() -> (WatchManager, mpsc::UnboundedReceiver<bytes::Bytes>) {
        let (outbox, rx) = Outbox::for_test();
        let mut manager = WatchManager::default();
        manager.register_conn(
            ConnId(1),
            SessionId(0x10),
            outbox,
            Arc::from([Id::new("ip", "127.0.0.1")]),
            false,
        );
        (manager, rx)
    }

    #[test]
    fn one_shot_data_watch_fires_once() {
        let (mut m, mut rx) = manager_with_conn();
        m.add(Kind::Data, "/a", ConnId(1));
        trigger_open(&mut m, &[ChangeEvent::DataChanged("/a".into())], 5);
        trigger_open(&mut m, &[ChangeEvent::DataChanged("/a".into())], 6);
        assert_eq!(events(&mut rx), [(EventType::NodeDataChanged, "/a".into())]);
        assert_eq!(m.counts(), (0, 0, 0));
    }

    #[test]
    fn delete_fires_data_and_child_watches_as_one_event() {
        let (mut m, mut rx) = manager_with_conn();
        m.add(Kind::Data, "/a", ConnId(1));
        m.add(Kind::Child, "/a", ConnId(1));
        m.add(Kind::Child, "/", ConnId(1));
        trigger_open(
            &mut m,
            &[
                ChangeEvent::Deleted("/a".into()),
                ChangeEvent::ChildrenChanged("/".into()),
            ],
            7,
        );
        assert_eq!(
            events(&mut rx),
            [
                (EventType::NodeDeleted, "/a".into()),
                (EventType::NodeChildrenChanged, "/".into())
            ]
        );
    }

    #[test]
    fn persistent_watches_keep_firing_and_recursive_skip_child_events() {
        let (mut m, mut rx) = manager_with_conn();
        m.add(Kind::Persistent, "/p", ConnId(1));
        m.add(Kind::PersistentRecursive, "/r", ConnId(1));
        for zxid in 0..2 {
            trigger_open(
                &mut m,
                &[
                    ChangeEvent::DataChanged("/p".into()),
                    ChangeEvent::Created("/r/x/y".into()),
                    ChangeEvent::ChildrenChanged("/r/x".into()),
                    ChangeEvent::ChildrenChanged("/p".into()),
                ],
                zxid,
            );
        }
        let expected = [
            (EventType::NodeDataChanged, "/p".to_owned()),
            (EventType::NodeCreated, "/r/x/y".to_owned()),
            (EventType::NodeChildrenChanged, "/p".to_owned()),
        ];
        let got = events(&mut rx);
        assert_eq!(got[..3], expected);
        assert_eq!(got[3..], expected);
    }

    #[test]
    fn remove_and_contains_follow_watcher_types() {
        let (mut m, _rx) = manager_with_conn();
        m.add(Kind::Data, "/a", ConnId(1));
        m.add(Kind::Child, "/a", ConnId(1));
        assert!(m.contains("/a", ConnId(1), WatcherType::Data));
        assert!(!m.contains("/a", ConnId(1), WatcherType::Persistent));
        assert!(m.remove("/a", ConnId(1), WatcherType::Children));
        assert!(!m.remove("/a", ConnId(1), WatcherType::Children));
        assert!(m.remove("/a", ConnId(1), WatcherType::Any));
        assert!(!m.contains("/a", ConnId(1), WatcherType::Any));
        m.add(Kind::Data, "/b", ConnId(1));
        m.remove_conn(ConnId(1));
        assert_eq!(m.counts(), (0, 0, 0));
    }

    #[test]
    fn watches_deliver_only_what_the_connection_may_read() {
        let (mut m, mut rx) = manager_with_conn();
        m.add(Kind::PersistentRecursive, "/", ConnId(1));
        m.add(Kind::Persistent, "/secret", ConnId(1));
        m.add(Kind::Data, "/secret", ConnId(1));
        let secret: Arc<[Acl]> = vec![Acl {
            perms: perms::ALL,
            id: Id::new("digest", "alice:hash"),
        }]
        .into();
        let open: Arc<[Acl]> = Acl::open_unsafe().into();
        m.trigger(
            &[
                ChangeEvent::DataChanged("/secret".into()),
                ChangeEvent::Created("/public".into()),
            ],
            &[secret.clone(), open],
            9,
        );
        // READ is checked on delivery for every kind of watch; the one-shot watch is used up.
        assert_eq!(
            events(&mut rx),
            [(EventType::NodeCreated, "/public".to_owned())]
        );
        assert!(!m.contains("/secret", ConnId(1), WatcherType::Data));
        assert_eq!(m.counts(), (1, 2, 2));
        m.set_identity(
            ConnId(1),
            Arc::from([Id::new("digest", "alice:hash")]),
            false,
        );
        m.trigger(&[ChangeEvent::DataChanged("/secret".into())], &[secret], 10);
        assert_eq!(
            events(&mut rx),
            [(EventType::NodeDataChanged, "/secret".to_owned())]
        );
        assert!(m.contains("/secret", ConnId(1), WatcherType::Persistent));
    }

    #[test]
    fn counts_follow_every_change() {
        let (mut m, _rx) = manager_with_conn();
        let (outbox, _rx2) = Outbox::for_test();
        m.register_conn(ConnId(2), SessionId(0x20), outbox, Arc::from([]), false);
        m.add(Kind::Data, "/a", ConnId(1));
        m.add(Kind::Child, "/a", ConnId(1));
        m.add(Kind::Data, "/a", ConnId(2));
        m.add(Kind::Data, "/a", ConnId(2));
        m.add(Kind::PersistentRecursive, "/b", ConnId(2));
        assert_eq!(m.counts(), (2, 2, 4));
        trigger_open(&mut m, &[ChangeEvent::DataChanged("/a".into())], 3);
        assert_eq!(m.counts(), (2, 2, 2));
        assert!(m.remove("/a", ConnId(1), WatcherType::Any));
        assert_eq!(m.counts(), (1, 1, 1));
        m.remove_conn(ConnId(2));
        assert_eq!(m.counts(), (0, 0, 0));
        assert!(m.by_path.iter().all(HashMap::is_empty));
    }

    #[test]
    fn watches_per_connection_are_bounded() {
        let (mut m, _rx) = manager_with_conn();
        assert!(m.has_room(ConnId(1), WATCHES_PER_CONNECTION_MAX));
        assert!(!m.has_room(ConnId(1), WATCHES_PER_CONNECTION_MAX + 1));
        m.add(Kind::Data, "/a", ConnId(1));
        assert!(!m.has_room(ConnId(1), WATCHES_PER_CONNECTION_MAX));
        assert!(
            !m.has_room(ConnId(2), 1),
            "an unknown connection holds none"
        );
    }

    #[test]
    fn outbox_sends_nothing_after_a_dropped_frame() {
        let (outbox, mut rx) = Outbox::for_test_bounded(100);
        outbox.send(bytes::Bytes::from(vec![0u8; 60]));
        // Over the bound with something queued: dropped, and the connection is closing.
        outbox.send(bytes::Bytes::from(vec![1u8; 60]));
        assert!(outbox.has_dropped());
        // Fits again, but must not go out: it could show a change whose event was dropped.
        outbox.send(bytes::Bytes::from(vec![2u8; 10]));
        let mut got = Vec::new();
        while let Ok(frame) = rx.try_recv() {
            got.push(frame[0]);
        }
        assert_eq!(got, [0]);
    }
}
