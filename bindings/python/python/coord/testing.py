"""Throwaway coord servers for tests, in this process: no JVM, nothing else to install.

    from coord.testing import server

    with server() as zk_server:
        with coord.Client(zk_server.hosts) as client:
            ...

With pytest, the ``coord_server`` and ``coord_client`` fixtures (from the plugin this package
registers) give each test a fresh server and a client connected to it. ``ensemble(3)`` starts a
replicated ensemble of in-process members.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from typing import Iterator, List, Optional, Sequence

from . import _native

__all__ = ["Server", "Ensemble", "server", "ensemble"]


class Server:
    """A standalone coord server in this process, its data in a temporary directory that goes
    with it. ``hosts`` is its connection string. ``args`` are more ``coord`` flags."""

    def __init__(self, args: Sequence[str] = (), data_dir: Optional[str] = None, client_addr: str = "127.0.0.1:0"):
        self._owned = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="coord-testing-")
        self._args = list(args)
        self._client_addr = client_addr
        self._native: Optional[_native.NativeServer] = None
        self.hosts = ""

    def start(self) -> "Server":
        self._native = _native.NativeServer.start(self.data_dir, self._client_addr, self._args)
        self.hosts = self._native.address
        # A restart keeps the port, so a client's connection string still names it.
        self._client_addr = self.hosts
        return self

    def stop(self) -> None:
        """Stops serving; the data stays until :meth:`close` (a stopped server may start again)."""
        if self._native is not None:
            self._native.stop()
            self._native = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._owned:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def server(args: Sequence[str] = ()) -> Iterator[Server]:
    """A fresh server for the ``with`` block."""
    with Server(args) as running:
        yield running


def _free_ports(n: int) -> List[int]:
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class Ensemble:
    """``size`` coord members replicating one tree, all in this process, on loopback."""

    def __init__(self, size: int = 3, tick_ms: int = 100):
        self.root = tempfile.mkdtemp(prefix="coord-testing-ensemble-")
        ports = _free_ports(2 * size)
        self.members = []
        servers = "".join(
            f'  {{ id = {i + 1}, peer_addr = "127.0.0.1:{ports[2 * i + 1]}", '
            f'client_addr = "127.0.0.1:{ports[2 * i]}" }},\n'
            for i in range(size)
        )
        for i in range(size):
            data_dir = os.path.join(self.root, f"m{i + 1}")
            config = os.path.join(self.root, f"m{i + 1}.toml")
            with open(config, "w") as f:
                f.write(
                    f'data_dir = "{data_dir}"\ntick_ms = {tick_ms}\nfour_letter_words = ["*"]\n\n'
                    f"[ensemble]\nid = {i + 1}\nservers = [\n{servers}]\n"
                )
            self.members.append(Server(["--config", config], data_dir=data_dir, client_addr=f"127.0.0.1:{ports[2 * i]}"))
        self.hosts = ",".join(f"127.0.0.1:{ports[2 * i]}" for i in range(size))

    def start(self, timeout: float = 30.0) -> "Ensemble":
        for member in self.members:
            member.start()
        self._wait_for_quorum(timeout)
        return self

    def _wait_for_quorum(self, timeout: float) -> None:
        import coord

        deadline = time.monotonic() + timeout
        while True:
            try:
                with coord.Client(self.hosts, timeout=5.0) as client:
                    client.sync("/")
                    client.exists("/")
                    return
            except coord.CoordError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        for member in self.members:
            member.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Ensemble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


@contextlib.contextmanager
def ensemble(size: int = 3, tick_ms: int = 100) -> Iterator[Ensemble]:
    """A fresh in-process ensemble of ``size`` members for the ``with`` block."""
    with Ensemble(size, tick_ms) as running:
        yield running
