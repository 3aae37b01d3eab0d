"""Recipes, with kazoo's API, on coord's Rust recipes: locks without herd effect, leader
election that tells when leadership is lost, barriers, counters and queues."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Optional

from . import _native

if TYPE_CHECKING:
    from . import Client


def _identifier(identifier) -> bytes:
    return identifier.encode() if isinstance(identifier, str) else bytes(identifier)


class Lock:
    """A lock on ``path`` among every client naming it. Waiters are served in order, each
    woken only by the one before it (no herd). A context manager::

        with client.Lock("/locks/jobs", "worker-1"):
            ...

    Not reentrant; one ``Lock`` object per thread.
    """

    def __init__(self, client: "Client", path: str, identifier: str = ""):
        self.client = client
        self.path = path
        self.identifier = identifier
        self._held: Optional[_native.NativeLock] = None

    @property
    def is_acquired(self) -> bool:
        return self._held is not None

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """Takes the lock: waits at most ``timeout`` seconds (not at all unless ``blocking``);
        True if it is held."""
        if self._held is not None:
            raise RuntimeError("this Lock object holds the lock already (locks are not reentrant)")
        wait = timeout if blocking else 0.0
        self._held = _native.NativeLock.acquire(self.client._n, self.path, _identifier(self.identifier), wait)
        return self._held is not None

    def release(self) -> None:
        """Releases the lock (nothing if it is not held)."""
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def contenders(self) -> List[str]:
        """The identifiers of every contender, the holder first."""
        return [c.decode(errors="replace") for c in _native.NativeLock.contenders(self.client._n, self.path)]

    def __enter__(self) -> "Lock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Leadership:
    """Leading an election; see :meth:`Election.campaign`. A context manager that resigns."""

    def __init__(self, native: _native.NativeLeadership):
        self._native = native

    def wait_lost(self, timeout: Optional[float] = None) -> bool:
        """Waits at most ``timeout`` seconds for the leadership to be lost: the connection broke
        (stop acting as leader at once), the session ended, or the node was deleted."""
        return self._native.wait_lost(timeout)

    def resign(self) -> None:
        self._native.resign()

    def __enter__(self) -> "Leadership":
        return self

    def __exit__(self, *exc) -> None:
        self.resign()


class Election:
    """Leader election on ``path``, as kazoo's: :meth:`run` waits to lead, then calls ``func``;
    returning from it gives the leadership up."""

    def __init__(self, client: "Client", path: str, identifier: str = ""):
        self.client = client
        self.path = path
        self.identifier = identifier

    def campaign(self, timeout: Optional[float] = None) -> Optional[Leadership]:
        """Waits at most ``timeout`` seconds to lead; the :class:`Leadership`, or None."""
        native = _native.NativeLeadership.campaign(self.client._n, self.path, _identifier(self.identifier), timeout)
        return None if native is None else Leadership(native)

    def run(self, func: Callable[..., Any], *args, **kwargs) -> Any:
        """Waits to lead, calls ``func(*args, **kwargs)``, then resigns; returns what it returned."""
        leadership = self.campaign()
        assert leadership is not None
        with leadership:
            return func(*args, **kwargs)

    def contenders(self) -> List[str]:
        """The identifiers of every contender, the leader first."""
        found = _native.NativeLeadership.contenders(self.client._n, self.path)
        return [c.decode(errors="replace") for c in found]


class Barrier:
    """A barrier on ``path``: while its node exists, :meth:`wait` waits."""

    def __init__(self, client: "Client", path: str):
        self.client = client
        self.path = path

    def create(self) -> None:
        """Raises the barrier."""
        _native.barrier_wait(self.client._n, self.path, "raise")

    def remove(self) -> None:
        """Lowers the barrier: every waiter goes on."""
        _native.barrier_wait(self.client._n, self.path, "remove")

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Waits at most ``timeout`` seconds for the barrier to be down; True if it is."""
        return _native.barrier_wait(self.client._n, self.path, "wait", timeout)


class Counter:
    """A shared integer on ``path`` (decimal text, as kazoo's); ``counter += 5``."""

    def __init__(self, client: "Client", path: str):
        self.client = client
        self.path = path

    @property
    def value(self) -> int:
        return _native.counter_add(self.client._n, self.path, 0)

    def add(self, delta: int) -> int:
        """Adds ``delta`` and returns the new value."""
        return _native.counter_add(self.client._n, self.path, int(delta))

    def __iadd__(self, delta: int) -> "Counter":
        self.add(delta)
        return self

    def __isub__(self, delta: int) -> "Counter":
        self.add(-delta)
        return self


class Queue:
    """A FIFO queue of byte strings on ``path``; each item is taken once."""

    def __init__(self, client: "Client", path: str):
        self.client = client
        self.path = path

    def put(self, value: bytes) -> None:
        _native.queue_take(self.client._n, self.path, "put", bytes(value))

    def get(self, timeout: Optional[float] = 0.0) -> Optional[bytes]:
        """Takes the first item: None if there is none within ``timeout`` seconds (0: at once;
        None: waits as long as it takes)."""
        return _native.queue_take(self.client._n, self.path, "take", None, timeout)

    def __len__(self) -> int:
        return _native.queue_take(self.client._n, self.path, "len")
