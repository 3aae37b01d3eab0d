"""Watches: one-shot data/exists/child watches through kazoo, persistent and recursive watches,
removeWatches/checkWatches and event ordering through the raw client."""

import queue
import threading

import pytest

import zkraw
from conftest import is_zookeeper
from kazoo.security import make_digest_acl
from zkraw import wait_until


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def __call__(self, event):
        with self.lock:
            self.events.append(event)

    def kinds(self):
        with self.lock:
            return [(e.type, e.path) for e in self.events]


def barrier(zk, base):
    """kazoo runs watch callbacks in order on one thread: once a later watch has fired, every
    event the server sent earlier on this session has been delivered."""
    done = threading.Event()
    path = f"{base}/__barrier"
    if zk.exists(path) is None:
        zk.create(path)
    zk.get(path, watch=lambda e: done.set())
    zk.set(path, b"b")
    assert done.wait(5), "barrier watch did not fire"


def test_data_watch_fires_once_on_change(zk, base):
    zk.create(f"{base}/d", b"1")
    rec = Recorder()
    zk.get(f"{base}/d", watch=rec)
    zk.set(f"{base}/d", b"2")
    zk.set(f"{base}/d", b"3")
    barrier(zk, base)
    assert rec.kinds() == [("CHANGED", f"{base}/d")]
    assert rec.events[0].state == "CONNECTED"


def test_data_watch_from_other_session(zk, zk2, base):
    zk.create(f"{base}/d", b"1")
    rec = Recorder()
    zk.get(f"{base}/d", watch=rec)
    zk2.set(f"{base}/d", b"2")
    wait_until(lambda: rec.events, timeout=5, what="changed event")
    zk2.delete(f"{base}/d")
    barrier(zk, base)
    assert rec.kinds() == [("CHANGED", f"{base}/d")]


def test_exists_watch_on_missing_node_fires_created(zk, base):
    rec = Recorder()
    assert zk.exists(f"{base}/later", watch=rec) is None
    zk.create(f"{base}/later")
    zk.delete(f"{base}/later")
    barrier(zk, base)
    assert rec.kinds() == [("CREATED", f"{base}/later")]


def test_exists_watch_on_existing_node_fires_deleted(zk, base):
    zk.create(f"{base}/e")
    rec = Recorder()
    zk.exists(f"{base}/e", watch=rec)
    zk.delete(f"{base}/e")
    barrier(zk, base)
    assert rec.kinds() == [("DELETED", f"{base}/e")]


def test_data_watch_fires_deleted(zk, base):
    zk.create(f"{base}/g")
    rec = Recorder()
    zk.get(f"{base}/g", watch=rec)
    zk.delete(f"{base}/g")
    barrier(zk, base)
    assert rec.kinds() == [("DELETED", f"{base}/g")]


def test_child_watch_fires_once(zk, base):
    zk.create(f"{base}/p")
    rec = Recorder()
    zk.get_children(f"{base}/p", watch=rec)
    zk.set(f"{base}/p", b"data change is not a child change")
    zk.create(f"{base}/p/a")
    zk.create(f"{base}/p/b")
    barrier(zk, base)
    assert rec.kinds() == [("CHILD", f"{base}/p")]


def test_child_watch_fires_on_child_delete(zk, base):
    zk.create(f"{base}/p/a", makepath=True)
    rec = Recorder()
    zk.get_children(f"{base}/p", watch=rec)
    zk.set(f"{base}/p/a", b"grandchild data is not a child change")
    zk.delete(f"{base}/p/a")
    barrier(zk, base)
    assert rec.kinds() == [("CHILD", f"{base}/p")]


def test_child_watch_fires_deleted_when_node_deleted(zk, base):
    zk.create(f"{base}/p")
    rec = Recorder()
    zk.get_children(f"{base}/p", watch=rec)
    zk.delete(f"{base}/p")
    barrier(zk, base)
    assert rec.kinds() == [("DELETED", f"{base}/p")]


def test_ephemeral_delete_on_close_fires_watches(zk_factory, base):
    owner = zk_factory()
    watcher = zk_factory()
    owner.create(f"{base}/eph", ephemeral=True)
    data_rec, child_rec = Recorder(), Recorder()
    watcher.exists(f"{base}/eph", watch=data_rec)
    watcher.get_children(base, watch=child_rec)
    owner.stop()
    wait_until(lambda: data_rec.events and child_rec.events, timeout=5, what="watches")
    assert data_rec.kinds() == [("DELETED", f"{base}/eph")]
    assert child_rec.kinds() == [("CHILD", base)]


def test_watch_event_arrives_before_reply(raw, base):
    raw.create(f"{base}/o", b"1")
    raw.get(f"{base}/o", watch=True)
    raw.exists(f"{base}/o", watch=True)  # same path, same session: one event
    raw.get_children(base, watch=True)
    raw.set(f"{base}/o", b"2")
    raw.create(f"{base}/o2", b"")
    frames = list(raw.frames)
    ev1 = frames.index(("event", zkraw.EV_NODE_DATA_CHANGED, f"{base}/o"))
    ev2 = frames.index(("event", zkraw.EV_NODE_CHILDREN_CHANGED, base))
    replies = [i for i, f in enumerate(frames) if f[0] == "reply"]
    # The set is the 5th request, the create the 6th; each event precedes its reply.
    assert ev1 < replies[4]
    assert ev2 < replies[5]
    assert [f for f in frames if f[0] == "event"] == [
        ("event", zkraw.EV_NODE_DATA_CHANGED, f"{base}/o"),
        ("event", zkraw.EV_NODE_CHILDREN_CHANGED, base),
    ]


def test_persistent_watch_keeps_firing(raw, zk, base):
    zk.create(f"{base}/pw", b"0")
    raw.add_watch(f"{base}/pw", zkraw.ADD_WATCH_PERSISTENT)
    zk.set(f"{base}/pw", b"1")
    zk.set(f"{base}/pw", b"2")
    zk.create(f"{base}/pw/child")
    zk.set(f"{base}/pw/child", b"not seen: not recursive")
    zk.delete(f"{base}/pw/child")
    zk.delete(f"{base}/pw")
    zk.create(f"{base}/pw")
    got = [raw.wait_event(5)[::2] for _ in range(6)]
    assert got == [
        (zkraw.EV_NODE_DATA_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_DATA_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_CHILDREN_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_CHILDREN_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_DELETED, f"{base}/pw"),
        (zkraw.EV_NODE_CREATED, f"{base}/pw"),
    ]
    # Still registered after the delete/create cycle.
    assert raw.check_watches(f"{base}/pw", zkraw.WATCHER_ANY) == zkraw.OK
    raw.sync(base)
    assert raw.events.empty()


def test_persistent_recursive_watch_sees_descendants(raw, zk, base):
    root = f"{base}/rw"
    zk.create(root)
    raw.add_watch(root, zkraw.ADD_WATCH_PERSISTENT_RECURSIVE)
    zk.create(f"{root}/a")
    zk.create(f"{root}/a/b", b"x")
    zk.set(f"{root}/a/b", b"y")
    zk.delete(f"{root}/a/b")
    zk.set(root, b"r")
    zk.create(f"{base}/outside")  # a sibling of the root: not watched
    got = [raw.wait_event(5)[::2] for _ in range(5)]
    # Recursive watches report no NodeChildrenChanged.
    assert got == [
        (zkraw.EV_NODE_CREATED, f"{root}/a"),
        (zkraw.EV_NODE_CREATED, f"{root}/a/b"),
        (zkraw.EV_NODE_DATA_CHANGED, f"{root}/a/b"),
        (zkraw.EV_NODE_DELETED, f"{root}/a/b"),
        (zkraw.EV_NODE_DATA_CHANGED, root),
    ]
    raw.sync(base)
    assert raw.events.empty()


def test_remove_watches(raw, zk, base):
    zk.create(f"{base}/rm", b"")
    raw.get(f"{base}/rm", watch=True)
    raw.get_children(f"{base}/rm", watch=True)
    assert raw.check_watches(f"{base}/rm", zkraw.WATCHER_DATA) == zkraw.OK
    assert raw.check_watches(f"{base}/rm", zkraw.WATCHER_CHILDREN) == zkraw.OK
    assert raw.remove_watches(f"{base}/rm", zkraw.WATCHER_DATA) == zkraw.OK
    assert raw.check_watches(f"{base}/rm", zkraw.WATCHER_DATA) == zkraw.NO_WATCHER
    assert raw.check_watches(f"{base}/rm", zkraw.WATCHER_CHILDREN) == zkraw.OK
    # No data watch left: a change produces no event before its reply.
    raw.set(f"{base}/rm", b"x")
    assert not [f for f in raw.frames if f[0] == "event"]
    raw.create(f"{base}/rm/c", b"")
    assert [f for f in raw.frames if f[0] == "event"] == [
        ("event", zkraw.EV_NODE_CHILDREN_CHANGED, f"{base}/rm")
    ]
    assert raw.remove_watches(f"{base}/rm", zkraw.WATCHER_ANY, check=False) == zkraw.NO_WATCHER
    assert raw.check_watches(f"{base}/nope", zkraw.WATCHER_ANY) == zkraw.NO_WATCHER


def test_remove_persistent_watch(raw, zk, base):
    zk.create(f"{base}/rp")
    raw.add_watch(f"{base}/rp", zkraw.ADD_WATCH_PERSISTENT)
    assert raw.remove_watches(f"{base}/rp", zkraw.WATCHER_ANY) == zkraw.OK
    raw.set(f"{base}/rp", b"x")
    assert not [f for f in raw.frames if f[0] == "event"]


def test_watches_are_per_session(zk_factory, base):
    a, b = zk_factory(), zk_factory()
    a.create(f"{base}/s")
    rec_a, rec_b = Recorder(), Recorder()
    a.get(f"{base}/s", watch=rec_a)
    b.get(f"{base}/s", watch=rec_b)
    a.set(f"{base}/s", b"1")
    wait_until(lambda: rec_a.events and rec_b.events, timeout=5, what="both sessions notified")
    assert rec_a.kinds() == rec_b.kinds() == [("CHANGED", f"{base}/s")]


def test_kazoo_datawatch_recipe_sees_every_version(zk, zk2, base):
    zk.create(f"{base}/dw", b"0")
    seen = queue.Queue()

    @zk.DataWatch(f"{base}/dw")
    def _watch(data, stat):
        if data is not None:
            seen.put(data)

    assert seen.get(timeout=5) == b"0"
    zk2.set(f"{base}/dw", b"1")
    assert seen.get(timeout=5) == b"1"
    zk2.set(f"{base}/dw", b"2")
    assert seen.get(timeout=5) == b"2"


@pytest.mark.parametrize("mode", [zkraw.ADD_WATCH_PERSISTENT, zkraw.ADD_WATCH_PERSISTENT_RECURSIVE])
def test_add_watch_on_missing_node_sees_creation(raw, zk, base, mode):
    raw.add_watch(f"{base}/future", mode)
    zk.create(f"{base}/future")
    assert raw.wait_event(5)[::2] == (zkraw.EV_NODE_CREATED, f"{base}/future")


def test_persistent_recursive_watch_hides_nodes_the_watcher_cannot_read(raw, zk_factory, base):
    """ZooKeeper 3.9.2 (CVE-2024-23944): a persistent watch delivers an event only if its
    connection may READ the changed node. The Debian reference is 3.8.0, from before the fix."""
    if is_zookeeper():
        pytest.skip("the 3.8.0 reference predates the CVE-2024-23944 fix")
    owner = zk_factory()
    owner.add_auth("digest", "owner:pw")
    root = f"{base}/guarded"
    owner.create(root)
    raw.add_watch(root, zkraw.ADD_WATCH_PERSISTENT_RECURSIVE)
    owner.create(f"{root}/secret", b"s", acl=[make_digest_acl("owner", "pw", all=True)])
    owner.set(f"{root}/secret", b"t")
    owner.create(f"{root}/public", b"p")
    assert raw.wait_event(5)[::2] == (zkraw.EV_NODE_CREATED, f"{root}/public")
    raw.sync(base)
    assert raw.events.empty()
