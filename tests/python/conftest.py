"""Fixtures: a coord server (or, with TARGET=zookeeper, a real Apache ZooKeeper) and kazoo clients.

TARGET=coord (default) runs $COORD_BIN or <repo>/target/debug/coord.
TARGET=ensemble runs the shared server as a 3-member coord ensemble on loopback; each test's
clients (kazoo and raw) connect to one member, the next one for each test, so every member
serves its share of the suite (tests that start their own servers still get standalone ones).
Clients of one test share a member because the suite's tests read one client's writes through
another without `sync`, which only one server guarantees; reads across members are the Rust
ensemble tests' subject.
TARGET=zookeeper runs org.apache.zookeeper.server.ZooKeeperServerMain from Debian's `zookeeper`
package (or $ZK_CLASSPATH) with the same tick, session bounds, reap interval, four-letter-word
list and superuser digest, so every assertion can be checked against the reference.
"""

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from kazoo.client import KazooClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import zkraw  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("TARGET", "coord")
TICK_MS = 100
REAP_MS = 200
SUPER_USER = "super"
SUPER_PASSWORD = "superpw"
# ZooKeeper's DigestAuthenticationProvider: base64(sha1("user:password")).
SUPER_DIGEST = (
    SUPER_USER
    + ":"
    + base64.b64encode(hashlib.sha1(f"{SUPER_USER}:{SUPER_PASSWORD}".encode()).digest()).decode()
)
ZK_CLASSPATH = os.environ.get(
    "ZK_CLASSPATH",
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
)
START_TIMEOUT_S = 30.0


def is_zookeeper():
    return TARGET == "zookeeper"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n):
    """n distinct free ports, all held while they are picked so that none comes back twice."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def four_letter(port, word, host="127.0.0.1", timeout=5.0):
    """Send a four-letter word on the client port and read until the server closes."""
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = bytearray()
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
    return out.decode(errors="replace")


class Server:
    def __init__(self, four_letter_words="*", extra_args=(), target=None, reap_ms=REAP_MS):
        self.target = target or TARGET
        self.reap_ms = reap_ms
        self.host = "127.0.0.1"
        self.port = free_port()
        self.hosts = f"{self.host}:{self.port}"
        self.tick_ms = TICK_MS
        self.min_session_timeout_ms = 2 * TICK_MS
        self.max_session_timeout_ms = 20 * TICK_MS
        self.four_letter_words = four_letter_words
        self.extra_args = list(extra_args)
        self.workdir = tempfile.mkdtemp(prefix=f"coord-py-{self.target}-")
        self.data_dir = os.path.join(self.workdir, "data")
        os.makedirs(self.data_dir)
        self.log_path = os.path.join(self.workdir, "server.log")
        self.proc = None

    def command(self):
        if self.target == "zookeeper":
            cfg = os.path.join(self.workdir, "zoo.cfg")
            whitelist = self.four_letter_words
            with open(cfg, "w") as f:
                f.write(
                    f"dataDir={self.data_dir}\n"
                    f"clientPort={self.port}\n"
                    f"clientPortAddress={self.host}\n"
                    f"tickTime={self.tick_ms}\n"
                    f"4lw.commands.whitelist={whitelist}\n"
                    "admin.enableServer=false\n"
                    "maxClientCnxns=60\n"
                )
            return [
                os.environ.get("JAVA", "java"),
                "-Dzookeeper.extendedTypesEnabled=true",
                f"-Dznode.container.checkIntervalMs={self.reap_ms}",
                f"-Dzookeeper.DigestAuthenticationProvider.superDigest={SUPER_DIGEST}",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                "-cp",
                ZK_CLASSPATH,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
                cfg,
            ] + self.extra_args
        binary = os.environ.get("COORD_BIN", os.path.join(REPO, "target", "debug", "coord"))
        return [
            binary,
            "--client-addr",
            self.hosts,
            "--data-dir",
            self.data_dir,
            "--tick-ms",
            str(self.tick_ms),
            "--reap-interval-ms",
            str(self.reap_ms),
            "--four-letter-words",
            self.four_letter_words,
            "--superuser-digest",
            SUPER_DIGEST,
        ] + self.extra_args

    def start(self):
        cmd = self.command()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}: {' '.join(cmd)}\n{self.log_tail()}"
                )
            if self._ready():
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not ready after {START_TIMEOUT_S}s\n{self.log_tail()}")
            time.sleep(0.05)

    def _ready(self):
        """ruok == imok (when allowed) and a session handshake succeeds: ZooKeeper answers
        ruok before its database is loaded, so the handshake is the real signal."""
        words = self.four_letter_words
        try:
            if words == "*" or "ruok" in words.split(","):
                if four_letter(self.port, "ruok", timeout=1.0) != "imok":
                    return False
            zkraw.probe_session(self.host, self.port)
            return True
        except (OSError, zkraw.SessionRefused):
            return False

    def four_letter(self, word):
        return four_letter(self.port, word)

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """Kill the process we started, by its PID, and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _new_server(**kw):
    if kw.get("target") is None and TARGET == "ensemble":
        kw["target"] = "coord"
    return Server(**kw).start()


class Ensemble:
    """A local coord ensemble that stands in for the shared Server: `host`/`port`/`hosts` name
    its first member (raw clients, four-letter words); kazoo clients spread over every member."""

    def __init__(self, n=3, transport="tcp"):
        self.target = "ensemble"
        # "quic": members talk QUIC with mutual TLS, with certificates from `coord certs`.
        self.transport = transport
        self.tick_ms = TICK_MS
        self.min_session_timeout_ms = 2 * TICK_MS
        self.max_session_timeout_ms = 20 * TICK_MS
        self.four_letter_words = "*"
        self.workdir = tempfile.mkdtemp(prefix="coord-py-ensemble-")
        self.n = n
        self.members = []
        self._configure()
        self.next_member = 0

    def _configure(self):
        """Picks the members' ports and writes their configs."""
        self.members = []
        servers = []
        ports = free_ports(2 * self.n)
        for i in range(1, self.n + 1):
            client, peer = ports[2 * i - 2], ports[2 * i - 1]
            servers.append(
                f'  {{ id = {i}, peer_addr = "127.0.0.1:{peer}", client_addr = "127.0.0.1:{client}" }},'
            )
            self.members.append({"id": i, "port": client})
        certs = os.path.join(self.workdir, "certs")
        if self.transport == "quic" and not os.path.exists(certs):
            binary = os.environ.get("COORD_BIN", os.path.join(REPO, "target", "debug", "coord"))
            subprocess.run(
                [binary, "certs", "--dir", certs, "--members", str(self.n)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        for m in self.members:
            tls = ""
            if self.transport == "quic":
                tls = (
                    f'transport = "quic"\ntls_ca = "{certs}/ca.pem"\n'
                    f'tls_cert = "{certs}/member-{m["id"]}.pem"\ntls_key = "{certs}/member-{m["id"]}.key"\n'
                )
            data = os.path.join(self.workdir, f"m{m['id']}")
            cfg = os.path.join(self.workdir, f"m{m['id']}.toml")
            with open(cfg, "w") as f:
                f.write(
                    f'data_dir = "{data}"\ntick_ms = {TICK_MS}\nreap_interval_ms = {REAP_MS}\n'
                    f'four_letter_words = ["*"]\nsuperuser_digest = "{SUPER_DIGEST}"\n'
                    f"[ensemble]\nid = {m['id']}\n{tls}servers = [\n" + "\n".join(servers) + "\n]\n"
                )
            m["config"] = cfg
            m["log"] = os.path.join(self.workdir, f"m{m['id']}.log")
        self.host = "127.0.0.1"
        self.port = self.members[0]["port"]
        self.hosts = f"{self.host}:{self.port}"

    def start(self):
        # A port picked a moment ago can be taken (by another test's connection, say) before a
        # member binds it: then everything starts again on other ports, a few times.
        for attempt in range(3):
            for i in range(len(self.members)):
                self.launch(i)
            try:
                self.wait_for_leader()
                return self
            except RuntimeError:
                in_use = any(
                    "Address already in use" in open(m["log"], errors="replace").read()
                    for m in self.members
                    if os.path.exists(m["log"])
                )
                self._stop_all()
                if not in_use or attempt == 2:
                    self.cleanup()
                    raise
                shutil.rmtree(self.workdir, ignore_errors=True)
                os.makedirs(self.workdir)
                self._configure()
        return self

    def _stop_all(self):
        for i in range(len(self.members)):
            self.kill(i)
            if self.members[i].get("logf"):
                self.members[i]["logf"].close()
                self.members[i]["logf"] = None

    def launch(self, i):
        """Starts member `i` (again, after `kill`)."""
        binary = os.environ.get("COORD_BIN", os.path.join(REPO, "target", "debug", "coord"))
        m = self.members[i]
        if m.get("logf") is None:
            m["logf"] = open(m["log"], "ab")
        m["proc"] = subprocess.Popen(
            [binary, "--config", m["config"]],
            stdout=m["logf"],
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def kill(self, i):
        """kill -9 member `i`."""
        proc = self.members[i].get("proc")
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def running(self):
        return [i for i, m in enumerate(self.members) if m.get("proc") and m["proc"].poll() is None]

    def mode(self, i):
        try:
            srvr = four_letter(self.members[i]["port"], "srvr", timeout=1.0)
        except OSError:
            return None
        return next((l[6:] for l in srvr.splitlines() if l.startswith("Mode: ")), None)

    def wait_for_leader(self, timeout=START_TIMEOUT_S):
        """Waits until one running member leads and every running one serves; its index."""
        deadline = time.monotonic() + timeout
        while True:
            modes = {i: self.mode(i) for i in self.running()}
            leaders = [i for i, mode in modes.items() if mode == "leader"]
            if len(leaders) == 1 and all(mode in ("leader", "follower") for mode in modes.values()):
                return leaders[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"ensemble not ready: {modes}")
            time.sleep(0.05)

    def member_hosts(self):
        """The next member's address, in turn."""
        m = self.members[self.next_member % len(self.members)]
        self.next_member += 1
        return f"127.0.0.1:{m['port']}"

    def four_letter(self, word):
        return four_letter(self.port, word)

    def log_tail(self, n=4000):
        return ""

    def cleanup(self):
        for m in self.members:
            proc = m.get("proc")
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if m.get("logf"):
                m["logf"].close()
        shutil.rmtree(self.workdir, ignore_errors=True)


def is_ensemble():
    return TARGET == "ensemble"


@pytest.fixture(scope="session")
def server():
    """One server shared by the whole session; tests isolate themselves under `base`."""
    s = Ensemble().start() if is_ensemble() else _new_server()
    yield s
    s.cleanup()


@pytest.fixture
def server_factory():
    """Fresh servers for one test (restart tests, four-letter-word configuration)."""
    started = []

    def make(**kw):
        s = _new_server(**kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.cleanup()


@pytest.fixture
def fresh_server(server_factory):
    return server_factory()


@pytest.fixture
def member(server):
    """(host, port) this test's clients use: the server, or the ensemble member for this test."""
    if isinstance(server, Ensemble):
        host, port = server.member_hosts().rsplit(":", 1)
        return host, int(port)
    return server.host, server.port


def _client_factory(default_server, member):
    clients = []

    def make(srv=None, timeout=2.0, start=True, **kw):
        hosts = srv.hosts if srv is not None else f"{member[0]}:{member[1]}"
        c = KazooClient(hosts=hosts, timeout=timeout, **kw)
        clients.append(c)
        if start:
            c.start(timeout=15)
        return c

    return make, clients


def _stop_clients(clients):
    for c in clients:
        try:
            c.stop()
        except Exception:
            pass
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def zk_factory(server, member):
    """make(srv=None, timeout=2.0, start=True, **kazoo_kwargs) -> started KazooClient."""
    make, clients = _client_factory(server, member)
    yield make
    _stop_clients(clients)


@pytest.fixture
def zk(zk_factory):
    return zk_factory()


@pytest.fixture
def zk2(zk_factory):
    return zk_factory()


@pytest.fixture
def raw_factory(server, member):
    """make(srv=None, timeout_ms=4000, **kw) -> RawClient (closed at teardown)."""
    clients = []

    def make(srv=None, timeout_ms=4000, **kw):
        host, port = (srv.host, srv.port) if srv is not None else member
        c = zkraw.RawClient(host, port, timeout_ms=timeout_ms, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def raw(raw_factory):
    return raw_factory()


@pytest.fixture
def base(zk, request):
    """A unique persistent node for this test on the shared server."""
    name = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:60]
    path = f"/t_{name}_{uuid.uuid4().hex[:8]}"
    zk.create(path)
    return path


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    return zkraw.wait_until(pred, timeout=timeout, interval=interval, what=what)
