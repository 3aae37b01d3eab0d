"""coord for Python: a client for coord and Apache ZooKeeper, its recipes, and the coord server.

    import coord

    with coord.Client("127.0.0.1:2181") as client:
        client.create("/greeting", b"hello", makepath=True)
        data, stat = client.get("/greeting")

The API follows kazoo's (``create``/``get``/``set``/``delete``/``exists``/``get_children``,
``transaction()``, ``Lock``, ``Election``, ``Barrier``, ``Counter``, ``Queue``) and so do the
exception names (``coord.NoNodeError``, ``coord.NodeExistsError``, ...; all are
``coord.CoordError``). Every blocking call releases the GIL. ``coord.aio`` is the asyncio API;
``coord.testing`` starts a throwaway server in-process; ``python -m coord`` runs a server.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

from . import _native
from ._native import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    CoordError,
    EventsDroppedError,
    InvalidACLError,
    MarshallingError,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    NotReadOnlyCallError,
    NoWatcherError,
    OperationTimeoutError,
    QuotaExceededError,
    RuntimeInconsistency,
    ServerStartError,
    SessionExpiredError,
    SessionMovedError,
    SystemZookeeperError,
    ThrottledOpError,
    UnimplementedError,
    UnreachableError,
    ZookeeperError,
)
from .recipes import Barrier, Counter, Election, Leadership, Lock, Queue

__all__ = [
    "ACL",
    "AuthFailedError",
    "BadArgumentsError",
    "BadVersionError",
    "Barrier",
    "CREATOR_ALL_ACL",
    "Client",
    "ConnectionClosedError",
    "ConnectionLoss",
    "CoordError",
    "Counter",
    "Election",
    "EventsDroppedError",
    "InvalidACLError",
    "Leadership",
    "Lock",
    "MarshallingError",
    "NoAuthError",
    "NoChildrenForEphemeralsError",
    "NoNodeError",
    "NoWatcherError",
    "NodeExistsError",
    "NotEmptyError",
    "NotReadOnlyCallError",
    "OPEN_ACL_UNSAFE",
    "OperationTimeoutError",
    "Permissions",
    "PersistentWatch",
    "QuotaExceededError",
    "Queue",
    "READ_ACL_UNSAFE",
    "RuntimeInconsistency",
    "ServerStartError",
    "SessionExpiredError",
    "SessionMovedError",
    "SystemZookeeperError",
    "ThrottledOpError",
    "Transaction",
    "UnimplementedError",
    "UnreachableError",
    "WatchedEvent",
    "ZnodeStat",
    "ZookeeperError",
    "make_digest_acl",
]

log = logging.getLogger("coord")


class ZnodeStat(NamedTuple):
    """A node's metadata, as ZooKeeper's Stat (and kazoo's ZnodeStat)."""

    czxid: int
    mzxid: int
    ctime: int
    mtime: int
    version: int
    cversion: int
    aversion: int
    ephemeralOwner: int
    dataLength: int
    numChildren: int
    pzxid: int

    @property
    def created(self) -> float:
        """When the node was created, in seconds since the epoch."""
        return self.ctime / 1000.0

    @property
    def last_modified(self) -> float:
        """When the node's data last changed, in seconds since the epoch."""
        return self.mtime / 1000.0


_EVENT_TYPES = {
    1: "CREATED",
    2: "DELETED",
    3: "CHANGED",
    4: "CHILD",
    5: "DATA_WATCH_REMOVED",
    6: "CHILD_WATCH_REMOVED",
    7: "PERSISTENT_WATCH_REMOVED",
}


class WatchedEvent(NamedTuple):
    """What a watch saw, as kazoo's WatchedEvent: ``type`` is "CREATED", "DELETED",
    "CHANGED" or "CHILD" (or "NONE" when the session ended before the change, with ``state``
    "LOST" or "CLOSED"); ``path`` is the node's."""

    type: str
    state: str
    path: str


def _event(code: int, path: str) -> WatchedEvent:
    return WatchedEvent(_EVENT_TYPES.get(code, "NONE"), "CONNECTED", path)


class Permissions:
    """ACL permission bits."""

    READ = 1
    WRITE = 2
    CREATE = 4
    DELETE = 8
    ADMIN = 16
    ALL = 31


class ACL(NamedTuple):
    """One ACL entry: ``perms`` (Permissions bits) for the identity ``id`` of ``scheme``."""

    perms: int
    scheme: str
    id: str


OPEN_ACL_UNSAFE = [ACL(Permissions.ALL, "world", "anyone")]
READ_ACL_UNSAFE = [ACL(Permissions.READ, "world", "anyone")]
CREATOR_ALL_ACL = [ACL(Permissions.ALL, "auth", "")]


def make_digest_acl(username: str, password: str, perms: int = Permissions.ALL) -> ACL:
    """An ACL entry for the digest user ``username`` with ``password``, as ZooKeeper hashes it."""
    import base64
    import hashlib

    digest = base64.b64encode(hashlib.sha1(f"{username}:{password}".encode()).digest()).decode()
    return ACL(perms, "digest", f"{username}:{digest}")


def _stat(raw) -> ZnodeStat:
    return ZnodeStat(*raw)


def _acls(acl: Optional[Sequence[ACL]]) -> List[Tuple[int, str, str]]:
    return [tuple(entry) for entry in (acl or [])]


def _mode(ephemeral: bool, sequence: bool, container: bool, ttl: Optional[float]) -> int:
    if container:
        if ephemeral or sequence or ttl is not None:
            raise BadArgumentsError("a container is neither ephemeral, sequential nor with a TTL")
        return 4
    if ttl is not None:
        if ephemeral:
            raise BadArgumentsError("an ephemeral node cannot have a TTL")
        return 6 if sequence else 5
    return (1 if ephemeral else 0) + (2 if sequence else 0)


class Client:
    """A session with a coord or ZooKeeper ensemble.

    ``hosts`` is a connection string, ``"host:port[,host:port...][/chroot]"``; ``timeout`` the
    session timeout in seconds. The session survives the loss of a connection: the client
    moves to another server and resumes it, watches and credentials included. Listeners added
    with :meth:`add_listener` hear of it ("SUSPENDED", then "CONNECTED"; "LOST" if the session
    expires; "CLOSED").

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. One client may be used
    from several threads. Watch callbacks and listeners run on the client's event thread.

    Unlike kazoo, a client whose session is "LOST" (the server expired it, or no server took
    it back within the timeout) does not open a new one: every call then raises
    :class:`SessionExpiredError`; make a new client. ``Transaction.commit`` raises the first
    failure's exception where kazoo returns a list holding it.
    """

    def __init__(self, hosts: str = "127.0.0.1:2181", timeout: float = 10.0, auth_data=None):
        self.hosts = hosts
        self.timeout = timeout
        self._auth_data = list(auth_data or [])
        self._native: Optional[_native.NativeClient] = None
        self._listeners: List[Callable[[str], None]] = []
        self._events: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    # -- the session --------------------------------------------------------------------

    def start(self) -> "Client":
        """Opens the session (on the first server of ``hosts`` that answers)."""
        if self._native is not None:
            return self
        self._native = _native.NativeClient.connect(self.hosts, float(self.timeout))
        self._stopping.clear()
        self._events = threading.Thread(target=self._dispatch, name="coord-events", daemon=True)
        self._events.start()
        for scheme, credential in self._auth_data:
            self.add_auth(scheme, credential)
        return self

    def stop(self) -> None:
        """Closes the session: its ephemeral nodes go at once."""
        native, self._native = self._native, None
        if native is None:
            return
        try:
            native.close()
        finally:
            self._stopping.set()
            if self._events is not None and self._events is not threading.current_thread():
                self._events.join(timeout=5)
            self._events = None

    close = stop

    def __enter__(self) -> "Client":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"coord.Client({self.hosts!r}, state={self.state!r})"

    @property
    def _n(self) -> _native.NativeClient:
        if self._native is None:
            raise ConnectionClosedError("the client is not started (use it as a context manager, or call start())")
        return self._native

    @property
    def client_id(self) -> Tuple[int, None]:
        """The session id (kazoo's ``client_id`` without the password)."""
        return (self._n.session_id, None)

    @property
    def session_id(self) -> int:
        return self._n.session_id

    @property
    def state(self) -> str:
        """"CONNECTED", "SUSPENDED", "LOST" or "CLOSED"."""
        return "CLOSED" if self._native is None else self._native.state

    @property
    def connected(self) -> bool:
        return self.state == "CONNECTED"

    @property
    def server(self) -> Optional[str]:
        """The server the session is connected to now."""
        return self._n.server

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Calls ``listener(state)`` on every change of the session's state."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[str], None]) -> None:
        self._listeners.remove(listener)

    def _dispatch(self) -> None:
        native = self._native
        while native is not None:
            try:
                item = native.next_event(0.2)
            except Exception:  # noqa: BLE001 - the thread must not die
                log.exception("coord: reading events")
                continue
            if item is None:
                if self._stopping.is_set():
                    return
                continue
            kind, callback, code, text, error = item
            try:
                if kind == "state":
                    for listener in list(self._listeners):
                        listener(text)
                elif error is None:
                    callback(_event(code, text))
                else:
                    state = "CLOSED" if isinstance(error, ConnectionClosedError) else "LOST"
                    callback(WatchedEvent("NONE", state, ""))
            except Exception:  # noqa: BLE001 - a user's callback failing must not stop others
                log.exception("coord: a watch callback or listener raised")

    # -- nodes --------------------------------------------------------------------------

    def create(
        self,
        path: str,
        value: bytes = b"",
        acl: Optional[Sequence[ACL]] = None,
        ephemeral: bool = False,
        sequence: bool = False,
        makepath: bool = False,
        ttl: Optional[float] = None,
        container: bool = False,
    ) -> str:
        """Creates a node and returns its path (with its sequence number when ``sequence``).

        ``acl`` defaults to open to anyone; ``makepath`` creates missing parents; ``ttl`` (in
        seconds) makes a persistent node the server deletes once it has had no children and no
        change for that long; ``container`` makes a node the server deletes once its last child
        goes.
        """
        mode = _mode(ephemeral, sequence, container, ttl)
        ttl_ms = None if ttl is None else int(ttl * 1000)
        if makepath:
            parent = path.rsplit("/", 1)[0]
            if parent:
                self.ensure_path(parent)
        return self._n.create(path, bytes(value), _acls(acl), mode, ttl_ms)

    def ensure_path(self, path: str, acl: Optional[Sequence[ACL]] = None) -> None:
        """Creates ``path`` and any missing parent (persistent, empty); existing nodes are fine."""
        at = ""
        for part in [p for p in path.split("/") if p]:
            at += "/" + part
            try:
                self._n.create(at, b"", _acls(acl), 0, None)
            except NodeExistsError:
                pass

    def get(self, path: str, watch: Optional[Callable[[WatchedEvent], None]] = None) -> Tuple[bytes, ZnodeStat]:
        """A node's data and stat; ``watch(event)`` is called once when it changes or goes."""
        data, stat = self._n.get(path, watch)
        return data, _stat(stat)

    def exists(self, path: str, watch: Optional[Callable[[WatchedEvent], None]] = None) -> Optional[ZnodeStat]:
        """A node's stat, or None; ``watch(event)`` is called once when it is created, changed
        or deleted."""
        stat = self._n.exists(path, watch)
        return None if stat is None else _stat(stat)

    def get_children(self, path: str, watch: Optional[Callable[[WatchedEvent], None]] = None, include_data: bool = False):
        """A node's children's names (and its stat, with ``include_data``); ``watch(event)`` is
        called once when a child is added or removed, or the node goes."""
        if include_data:
            if watch is not None:
                raise BadArgumentsError("include_data and watch together are not supported")
            children, stat = self._n.get_children_with_stat(path)
            return children, _stat(stat)
        return self._n.get_children(path, watch)

    def set(self, path: str, value: bytes, version: int = -1) -> ZnodeStat:
        """Replaces a node's data if its version is ``version`` (-1: any); returns the new stat."""
        return _stat(self._n.set(path, bytes(value), version))

    def delete(self, path: str, version: int = -1, recursive: bool = False) -> None:
        """Deletes a node if its version is ``version``; with ``recursive``, its children first."""
        if recursive:
            try:
                for child in self._n.get_children(path, None):
                    self.delete(f"{path.rstrip('/')}/{child}", recursive=True)
            except NoNodeError:
                return
        self._n.delete(path, version)

    def get_acls(self, path: str) -> Tuple[List[ACL], ZnodeStat]:
        """A node's ACL and stat."""
        acl, stat = self._n.get_acls(path)
        return [ACL(*entry) for entry in acl], _stat(stat)

    def set_acls(self, path: str, acls: Sequence[ACL], version: int = -1) -> ZnodeStat:
        """Replaces a node's ACL if its ACL version is ``version`` (-1: any)."""
        return _stat(self._n.set_acls(path, _acls(acls), version))

    def add_auth(self, scheme: str, credential) -> None:
        """Adds credentials (``"digest"``, ``"user:password"``) to the session; they are
        presented again on every reconnection."""
        if isinstance(credential, str):
            credential = credential.encode()
        self._n.add_auth(scheme, bytes(credential))

    def whoami(self) -> List[Tuple[str, str]]:
        """The (scheme, identity) pairs the session is authenticated as."""
        return self._n.whoami()

    def sync(self, path: str) -> str:
        """Waits until the server has applied every write committed before the call."""
        return self._n.sync(path)

    def transaction(self) -> "Transaction":
        """A transaction: add operations, then :meth:`Transaction.commit` (or use it as a
        context manager, which commits on exit)."""
        return Transaction(self)

    def watch(self, path: str, recursive: bool = False) -> "PersistentWatch":
        """A persistent watch on ``path`` (and, ``recursive``, every node under it), as an
        iterator of :class:`WatchedEvent`, in order, until closed."""
        return PersistentWatch(self, path, recursive)

    def remove_watches(self, path: str, kind: str = "any") -> None:
        """Removes this session's watches on ``path``: kind "children", "data", "any",
        "persistent" or "persistent_recursive"."""
        kinds = {"children": 1, "data": 2, "any": 3, "persistent": 4, "persistent_recursive": 5}
        self._n.remove_watches(path, kinds[kind])

    # -- recipes, as kazoo offers them on its client ------------------------------------------

    def Lock(self, path: str, identifier: str = "") -> Lock:  # noqa: N802 - kazoo's name
        return Lock(self, path, identifier)

    def Election(self, path: str, identifier: str = "") -> Election:  # noqa: N802
        return Election(self, path, identifier)

    def Barrier(self, path: str) -> Barrier:  # noqa: N802
        return Barrier(self, path)

    def Counter(self, path: str) -> Counter:  # noqa: N802
        return Counter(self, path)

    def Queue(self, path: str) -> Queue:  # noqa: N802
        return Queue(self, path)


class Transaction:
    """Operations committed together: all happen, or none (and the first failure's exception is
    raised)."""

    def __init__(self, client: Client):
        self._client = client
        self._ops: list = []
        self.committed = False

    def create(self, path: str, value: bytes = b"", acl=None, ephemeral=False, sequence=False, container=False):
        self._ops.append(("create", path, bytes(value), -1, _mode(ephemeral, sequence, container, None), _acls(acl)))

    def delete(self, path: str, version: int = -1):
        self._ops.append(("delete", path, b"", version, 0, []))

    def set_data(self, path: str, value: bytes, version: int = -1):
        self._ops.append(("set", path, bytes(value), version, 0, []))

    def check(self, path: str, version: int):
        self._ops.append(("check", path, b"", version, 0, []))

    def commit(self) -> list:
        """Runs the operations; returns one result per op: the created path, True (delete,
        check) or the new stat (set_data)."""
        results = self._client._n.multi(self._ops)
        self.committed = True
        return [(_stat(r) if isinstance(r, tuple) else r) for r in results]

    def __enter__(self) -> "Transaction":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None and not self.committed:
            self.commit()


class PersistentWatch:
    """The events of a persistent watch, in order: iterate over it, or call :meth:`next`.
    Close it (or leave its ``with`` block) to remove the watch. A reader that falls 4096 events
    behind gets :class:`EventsDroppedError` once, then current events again."""

    def __init__(self, client: Client, path: str, recursive: bool):
        self._client = client
        self.path = path
        self.recursive = recursive
        self._native = client._n.add_watch(path, recursive)
        self._closed = False

    def next(self, timeout: Optional[float] = None) -> Optional[WatchedEvent]:
        """The next event, waiting at most ``timeout`` seconds; None if none came in time.

        An event of type "NONE" with state "RECONNECTED" says the session moved to a new
        connection and that changes made meanwhile were not reported (the server does not replay
        them): read the state again. The watch goes on.
        """
        try:
            event = self._native.next(timeout)
        except ConnectionLoss:
            return WatchedEvent("NONE", "RECONNECTED", "")
        return None if event is None else _event(*event)

    def __iter__(self) -> Iterator[WatchedEvent]:
        return self

    def __next__(self) -> WatchedEvent:
        event = self.next()
        if event is None or event.type == "PERSISTENT_WATCH_REMOVED":
            raise StopIteration
        return event

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._client.remove_watches(self.path, "persistent_recursive" if self.recursive else "persistent")
        except (NoWatcherError, ConnectionClosedError, SessionExpiredError):
            pass

    def __enter__(self) -> "PersistentWatch":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
