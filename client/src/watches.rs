//! The session's watches: one-shot watches that resolve a future once, and persistent watches
//! that feed a stream. They live with the session, not the connection: after a reconnect they
//! are set again on the new server (setWatches2), so a change is not missed.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use coord_proto::{AddWatchMode, ErrorCode, EventType, WatcherEvent, WatcherType};
use tokio::sync::{oneshot, Notify};

use crate::{ConnectString, Error};

/// Events a persistent watch holds for its reader at most. Past it the watch drops events and
/// tells the reader how many it missed ([`Error::Lagged`]), rather than grow without bound or
/// hold up the connection that also carries every other reply.
pub const PERSISTENT_EVENTS_QUEUED_MAX: usize = 4096;

/// What a one-shot watch waits for, as ZooKeeper's clients tell data, exist and child watches
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatchKind {
    /// Set by getData: fires on a change of the data, or the node's deletion.
    Data,
    /// Set by exists: also fires when the node is created.
    Exist,
    /// Set by getChildren: fires on a change of the children, or the node's deletion.
    Child,
}

/// What a watch saw: the kind of change, and the node it happened to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    pub event_type: EventType,
    pub path: String,
}

type Fire = oneshot::Sender<Result<WatchedEvent, Error>>;

/// A one-shot watch: resolves once with the change it was set for. It survives reconnects to
/// other servers; it resolves with [`Error::SessionExpired`] (or [`Error::Closed`]) if the
/// session ends first. Dropping it forgets the watch on this side.
pub struct Watch {
    event: oneshot::Receiver<Result<WatchedEvent, Error>>,
    connect: ConnectString,
}

impl Watch {
    pub(crate) fn new(connect: ConnectString) -> (Watch, Fire) {
        let (fire, event) = oneshot::channel();
        (Watch { event, connect }, fire)
    }
}

impl Future for Watch {
    type Output = Result<WatchedEvent, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        Pin::new(&mut this.event).poll(cx).map(|event| {
            let mut event = event.map_err(|_| Error::ConnectionLoss)??;
            event.path = this.connect.client_path(&event.path);
            Ok(event)
        })
    }
}

/// The events of one persistent watch, waiting for its reader.
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    ready: Notify,
}

/// One entry of a persistent watch's queue.
enum Item {
    Event(WatchedEvent),
    /// The session moved to a new connection: changes made meanwhile were not reported.
    Reconnected,
}

struct QueueState {
    events: VecDeque<Item>,
    /// Events dropped since the reader last heard of a gap.
    missed: u64,
    /// Why no more events will come.
    ended: Option<Error>,
}

impl EventQueue {
    fn new() -> EventQueue {
        EventQueue {
            state: Mutex::new(QueueState {
                events: VecDeque::new(),
                missed: 0,
                ended: None,
            }),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding this lock leaves nothing half-done: the state stays usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, event: WatchedEvent) {
        let mut state = self.lock();
        // Once a gap opened, later events wait behind it: the reader learns of the gap before
        // it sees anything that happened after it.
        if state.missed > 0 || state.events.len() >= PERSISTENT_EVENTS_QUEUED_MAX {
            state.missed += 1;
        } else {
            state.events.push_back(Item::Event(event));
        }
        drop(state);
        self.ready.notify_one();
    }

    /// Tells the reader, after what it has not read yet, that changes may have gone unreported.
    /// A reader already told of a gap needs no second notice.
    fn reconnected(&self) {
        let mut state = self.lock();
        if state.missed == 0 && state.events.len() < PERSISTENT_EVENTS_QUEUED_MAX {
            state.events.push_back(Item::Reconnected);
        }
        drop(state);
        self.ready.notify_one();
    }

    fn end(&self, why: Error) {
        self.lock().ended.get_or_insert(why);
        self.ready.notify_one();
    }
}

/// A persistent (or persistent recursive) watch: every change to its node (or its subtree) in
/// order, until it is dropped or the session ends. See [`crate::Client::add_watch`].
pub struct PersistentWatch {
    queue: Arc<EventQueue>,
    connect: ConnectString,
}

impl PersistentWatch {
    pub(crate) fn new(connect: ConnectString) -> (PersistentWatch, Arc<EventQueue>) {
        let queue = Arc::new(EventQueue::new());
        let watch = PersistentWatch {
            queue: queue.clone(),
            connect,
        };
        (watch, queue)
    }

    /// The next change. Two errors say that changes may have gone unreported, and that the
    /// state should be read again; the watch goes on, and the events after them are current:
    /// - [`Error::Lagged`]: this reader fell [`PERSISTENT_EVENTS_QUEUED_MAX`] events behind,
    ///   and that many were dropped;
    /// - [`Error::ConnectionLoss`]: the session moved to a new connection, and the server does
    ///   not report what changed in between (neither does ZooKeeper's).
    ///
    /// [`Error::SessionExpired`] or [`Error::Closed`] end the watch, as does
    /// `Error::Server(NoWatcher)` after a `PersistentWatchRemoved` event.
    pub async fn next(&mut self) -> Result<WatchedEvent, Error> {
        loop {
            let notified = self.queue.ready.notified();
            {
                let mut state = self.queue.lock();
                match state.events.pop_front() {
                    Some(Item::Event(mut event)) => {
                        event.path = self.connect.client_path(&event.path);
                        return Ok(event);
                    }
                    Some(Item::Reconnected) => return Err(Error::ConnectionLoss),
                    None => {}
                }
                if state.missed > 0 {
                    return Err(Error::Lagged(std::mem::take(&mut state.missed)));
                }
                if let Some(why) = &state.ended {
                    return Err(why.clone());
                }
            }
            notified.await;
        }
    }
}

/// The watches of a session, by node as the server names it. Bounded by the requests that set
/// them: a one-shot watch goes when it fires, a persistent one when its reader is dropped.
#[derive(Default)]
pub(crate) struct Registry {
    data: HashMap<String, Vec<Fire>>,
    exist: HashMap<String, Vec<Fire>>,
    child: HashMap<String, Vec<Fire>>,
    persistent: HashMap<String, Vec<Arc<EventQueue>>>,
    recursive: HashMap<String, Vec<Arc<EventQueue>>>,
}

/// The paths to watch again on a new connection, as setWatches2 lists them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rearm {
    pub data: Vec<String>,
    pub exist: Vec<String>,
    pub child: Vec<String>,
    pub persistent: Vec<String>,
    pub recursive: Vec<String>,
}

impl Registry {
    pub fn arm(&mut self, kind: WatchKind, path: String, fire: Fire) {
        let map = match kind {
            WatchKind::Data => &mut self.data,
            WatchKind::Exist => &mut self.exist,
            WatchKind::Child => &mut self.child,
        };
        let fires = map.entry(path).or_default();
        // Futures dropped unfired go here, not only at the next reconnect: a loop that sets a
        // watch and drops it must not grow this without bound.
        fires.retain(|fire| !fire.is_closed());
        fires.push(fire);
    }

    pub fn add_persistent(&mut self, mode: AddWatchMode, path: String, queue: Arc<EventQueue>) {
        let map = match mode {
            AddWatchMode::Persistent => &mut self.persistent,
            AddWatchMode::PersistentRecursive => &mut self.recursive,
        };
        map.entry(path).or_default().push(queue);
    }

    /// Delivers a node event to every watch it concerns; one-shot watches are disarmed. Returns
    /// the persistent watches whose readers have all gone, for the server to forget too.
    pub fn fire(&mut self, event: &WatcherEvent) -> Vec<(String, AddWatchMode)> {
        let event = WatchedEvent {
            event_type: event.event_type,
            path: event.path.clone(),
        };
        // As ZooKeeper's ZKWatchManager materializes an event into the watches it triggers.
        let (data, exist, child) = match event.event_type {
            EventType::NodeCreated | EventType::NodeDataChanged => (true, true, false),
            EventType::NodeDeleted => (true, true, true),
            EventType::NodeChildrenChanged => (false, false, true),
            _ => (false, false, false),
        };
        for (due, map) in [
            (data, &mut self.data),
            (exist, &mut self.exist),
            (child, &mut self.child),
        ] {
            if !due {
                continue;
            }
            for fire in map.remove(&event.path).into_iter().flatten() {
                let _ = fire.send(Ok(event.clone()));
            }
        }
        let mut forgotten = Vec::new();
        if deliver(&mut self.persistent, &event.path, &event) {
            forgotten.push((event.path.clone(), AddWatchMode::Persistent));
        }
        // A recursive watch hears of every node under it, but not of child lists: a child's
        // own creation or deletion already says it.
        if event.event_type != EventType::NodeChildrenChanged {
            for ancestor in ancestors(&event.path) {
                if deliver(&mut self.recursive, ancestor, &event) {
                    forgotten.push((ancestor.to_owned(), AddWatchMode::PersistentRecursive));
                }
            }
        }
        forgotten
    }

    /// Forgets the watches of `watcher_type` on `path`, once the server has removed its own:
    /// each hears that it was removed (one-shot watches resolve with the event, persistent ones
    /// read it last).
    pub fn remove(&mut self, path: &str, watcher_type: WatcherType) {
        let (data, child, persistent, recursive) = match watcher_type {
            WatcherType::Data => (true, false, false, false),
            WatcherType::Children => (false, true, false, false),
            WatcherType::Persistent => (false, false, true, false),
            WatcherType::PersistentRecursive => (false, false, false, true),
            WatcherType::Any => (true, true, true, true),
        };
        let removed = |event_type| WatchedEvent {
            event_type,
            path: path.to_owned(),
        };
        for (due, map, event_type) in [
            (data, &mut self.data, EventType::DataWatchRemoved),
            (data, &mut self.exist, EventType::DataWatchRemoved),
            (child, &mut self.child, EventType::ChildWatchRemoved),
        ] {
            if due {
                for fire in map.remove(path).into_iter().flatten() {
                    let _ = fire.send(Ok(removed(event_type)));
                }
            }
        }
        for (due, map) in [
            (persistent, &mut self.persistent),
            (recursive, &mut self.recursive),
        ] {
            if due {
                for queue in map.remove(path).into_iter().flatten() {
                    queue.push(removed(EventType::PersistentWatchRemoved));
                    queue.end(Error::Server(ErrorCode::NoWatcher));
                }
            }
        }
    }

    /// The watches still wanted, to set again on a new connection. Forgets those whose
    /// futures or readers were dropped.
    pub fn rearm(&mut self) -> Rearm {
        fn live_fires(map: &mut HashMap<String, Vec<Fire>>) -> Vec<String> {
            map.retain(|_, fires| {
                fires.retain(|fire| !fire.is_closed());
                !fires.is_empty()
            });
            map.keys().cloned().collect()
        }
        fn live_queues(map: &mut HashMap<String, Vec<Arc<EventQueue>>>) -> Vec<String> {
            map.retain(|_, queues| {
                queues.retain(|queue| Arc::strong_count(queue) > 1);
                !queues.is_empty()
            });
            map.keys().cloned().collect()
        }
        Rearm {
            data: live_fires(&mut self.data),
            exist: live_fires(&mut self.exist),
            child: live_fires(&mut self.child),
            persistent: live_queues(&mut self.persistent),
            recursive: live_queues(&mut self.recursive),
        }
    }

    /// Tells every persistent watch's reader that the session moved to a new connection.
    pub fn reconnected(&mut self) {
        for queue in self
            .persistent
            .values()
            .chain(self.recursive.values())
            .flatten()
        {
            queue.reconnected();
        }
    }

    /// Ends every watch: the session is over.
    pub fn end(&mut self, why: &Error) {
        for map in [&mut self.data, &mut self.exist, &mut self.child] {
            for fire in map.drain().flat_map(|(_, fires)| fires) {
                let _ = fire.send(Err(why.clone()));
            }
        }
        for map in [&mut self.persistent, &mut self.recursive] {
            for queue in map.drain().flat_map(|(_, queues)| queues) {
                queue.end(why.clone());
            }
        }
    }
}

/// Hands `event` to the persistent watches on `path`; true if none of their readers is left
/// (the entry is then removed).
fn deliver(
    map: &mut HashMap<String, Vec<Arc<EventQueue>>>,
    path: &str,
    event: &WatchedEvent,
) -> bool {
    let Some(queues) = map.get_mut(path) else {
        return false;
    };
    queues.retain(|queue| Arc::strong_count(queue) > 1);
    for queue in queues.iter() {
        queue.push(event.clone());
    }
    if queues.is_empty() {
        map.remove(path);
        return true;
    }
    false
}

/// `path` and every node above it, up to `/`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            _ if current == "/" => None,
            Some(0) => Some("/"),
            Some(at) => Some(&current[..at]),
            None => None,
        };
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn ancestors_run_up_to_the_root() {
        assert_eq!(
            ancestors("/a/b/c").collect::<Vec<_>>(),
            ["/a/b/c", "/a/b", "/a", "/"]
        );
        assert_eq!(ancestors("/").collect::<Vec<_>>(), ["/"]);
    }

    fn event(event_type: EventType, path: &str) -> WatcherEvent {
        WatcherEvent {
            event_type,
            state: coord_proto::KeeperState::SyncConnected,
            path: path.to_owned(),
        }
    }

    #[test]
    fn a_lagging_reader_hears_of_the_gap_before_later_events() {
        let queue = EventQueue::new();
        for i in 0..PERSISTENT_EVENTS_QUEUED_MAX + 3 {
            queue.push(WatchedEvent {
                event_type: EventType::NodeDataChanged,
                path: format!("/{i}"),
            });
        }
        queue.reconnected();
        let state = queue.lock();
        assert_eq!(state.events.len(), PERSISTENT_EVENTS_QUEUED_MAX);
        assert_eq!(state.missed, 3);
    }

    #[test]
    fn dropped_readers_are_forgotten_and_reported() {
        let connect = ConnectString::parse("127.0.0.1:1").unwrap();
        let mut registry = Registry::default();
        let (kept, queue) = PersistentWatch::new(connect.clone());
        registry.add_persistent(AddWatchMode::PersistentRecursive, "/a".into(), queue);
        let (dropped, queue) = PersistentWatch::new(connect);
        registry.add_persistent(AddWatchMode::Persistent, "/a/b".into(), queue);
        drop(dropped);
        let forgotten = registry.fire(&event(EventType::NodeCreated, "/a/b"));
        assert_eq!(forgotten, [("/a/b".to_owned(), AddWatchMode::Persistent)]);
        assert_eq!(kept.queue.lock().events.len(), 1);
        // A child list change reaches a persistent watch on the node, not a recursive one.
        registry.fire(&event(EventType::NodeChildrenChanged, "/a"));
        assert_eq!(kept.queue.lock().events.len(), 1);
        let rearm = registry.rearm();
        assert_eq!(rearm.recursive, ["/a"]);
        assert!(rearm.persistent.is_empty());
    }
}
