"""coord's asyncio API: the same client, with coroutines.

    import coord.aio

    async with coord.aio.Client("127.0.0.1:2181") as client:
        await client.create("/a", b"x")
        data, stat = await client.get("/a")
        async with client.Lock("/locks/a"):
            ...
        async for event in client.watch("/a"):
            ...

Each call runs the blocking client's on a worker thread of the loop's default executor (which
waits with the GIL released), so the event loop never blocks. Long waits (a lock, an ``async
for`` over a watch) each hold one of those threads while they wait: more of them at once than
the executor has threads (``min(32, cpu_count + 4)`` by default) delay every other call; give
the loop a bigger executor (``loop.set_default_executor``) if you need more. Watch callbacks
still run on the client's event thread: use :meth:`Client.watch` (an async iterator) to receive
events in the loop.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import coord

__all__ = ["Client", "Lock", "PersistentWatch"]


class Client:
    """The asyncio face of :class:`coord.Client`; every method of it is a coroutine here."""

    def __init__(self, hosts: str = "127.0.0.1:2181", timeout: float = 10.0, auth_data=None):
        self.sync_client = coord.Client(hosts, timeout, auth_data)

    async def start(self) -> "Client":
        await asyncio.to_thread(self.sync_client.start)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self.sync_client.stop)

    close = stop

    async def __aenter__(self) -> "Client":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    @property
    def state(self) -> str:
        return self.sync_client.state

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.sync_client, name)
        if not callable(method):
            return method

        async def call(*args, **kwargs):
            return await asyncio.to_thread(method, *args, **kwargs)

        call.__name__ = name
        call.__doc__ = method.__doc__
        return call

    def watch(self, path: str, recursive: bool = False) -> "PersistentWatch":
        """A persistent watch as an async iterator of :class:`coord.WatchedEvent`."""
        return PersistentWatch(self, path, recursive)

    def Lock(self, path: str, identifier: str = "") -> "Lock":  # noqa: N802 - kazoo's name
        return Lock(self, path, identifier)


class Lock:
    """:class:`coord.Lock` for asyncio: ``async with client.Lock(path):``."""

    def __init__(self, client: Client, path: str, identifier: str = ""):
        self._lock = coord.Lock(client.sync_client, path, identifier)

    async def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        return await asyncio.to_thread(self._lock.acquire, blocking, timeout)

    async def release(self) -> None:
        await asyncio.to_thread(self._lock.release)

    async def __aenter__(self) -> "Lock":
        await self.acquire()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.release()


class PersistentWatch:
    """The events of a persistent watch, as an async iterator; ``aclose()`` removes it."""

    def __init__(self, client: Client, path: str, recursive: bool):
        self._client = client
        self._path = path
        self._recursive = recursive
        self._watch: Optional[coord.PersistentWatch] = None

    async def _open(self) -> coord.PersistentWatch:
        if self._watch is None:
            self._watch = await asyncio.to_thread(
                coord.PersistentWatch, self._client.sync_client, self._path, self._recursive
            )
        return self._watch

    async def next(self, timeout: Optional[float] = None) -> Optional[coord.WatchedEvent]:
        watch = await self._open()
        return await asyncio.to_thread(watch.next, timeout)

    def __aiter__(self) -> "PersistentWatch":
        return self

    async def __anext__(self) -> coord.WatchedEvent:
        event = await self.next()
        if event is None or event.type == "PERSISTENT_WATCH_REMOVED":
            raise StopAsyncIteration
        return event

    async def aclose(self) -> None:
        if self._watch is not None:
            await asyncio.to_thread(self._watch.close)

    async def __aenter__(self) -> "PersistentWatch":
        await self._open()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()
