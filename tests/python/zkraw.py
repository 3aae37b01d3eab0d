"""A small raw ZooKeeper wire-protocol client for the requests kazoo 2.11 does not expose.

kazoo has no createContainer/createTTL, getAllChildrenNumber, getEphemerals, addWatch,
removeWatches/checkWatches, whoAmI or multiRead, and it drops persistent watch events. This
client speaks jute directly (zookeeper.jute: big-endian ints, length-prefixed buffers and
strings, every packet framed by a 4-byte length) and records every frame it receives in order,
so tests can also check that a watch event arrives before the reply that reflects the change.
"""

import queue
import socket
import struct
import threading
import time

# ZooDefs.OpCode
OP_CREATE = 1
OP_DELETE = 2
OP_EXISTS = 3
OP_GET_DATA = 4
OP_SET_DATA = 5
OP_GET_ACL = 6
OP_SET_ACL = 7
OP_GET_CHILDREN = 8
OP_SYNC = 9
OP_PING = 11
OP_GET_CHILDREN2 = 12
OP_CHECK = 13
OP_MULTI = 14
OP_CREATE2 = 15
OP_CHECK_WATCHES = 17
OP_REMOVE_WATCHES = 18
OP_CREATE_CONTAINER = 19
OP_CREATE_TTL = 21
OP_MULTI_READ = 22
OP_AUTH = 100
OP_SET_WATCHES = 101
OP_SET_WATCHES2 = 105
OP_GET_EPHEMERALS = 103
OP_GET_ALL_CHILDREN_NUMBER = 104
OP_ADD_WATCH = 106
OP_WHO_AM_I = 107
OP_CLOSE = -11

# CreateMode flags
PERSISTENT = 0
EPHEMERAL = 1
PERSISTENT_SEQUENTIAL = 2
EPHEMERAL_SEQUENTIAL = 3
CONTAINER = 4
PERSISTENT_WITH_TTL = 5
PERSISTENT_SEQUENTIAL_WITH_TTL = 6

# AddWatchMode
ADD_WATCH_PERSISTENT = 0
ADD_WATCH_PERSISTENT_RECURSIVE = 1

# WatcherType (removeWatches / checkWatches)
WATCHER_CHILDREN = 1
WATCHER_DATA = 2
WATCHER_ANY = 3

# Watcher.Event.EventType
EV_NODE_CREATED = 1
EV_NODE_DELETED = 2
EV_NODE_DATA_CHANGED = 3
EV_NODE_CHILDREN_CHANGED = 4

# KeeperException.Code
OK = 0
RUNTIME_INCONSISTENCY = -2
UNIMPLEMENTED = -6
BAD_ARGUMENTS = -8
NO_NODE = -101
NO_AUTH = -102
BAD_VERSION = -103
NO_CHILDREN_FOR_EPHEMERALS = -108
NODE_EXISTS = -110
NOT_EMPTY = -111
INVALID_ACL = -114
NO_WATCHER = -121

XID_EVENT = -1
XID_PING = -2
XID_AUTH = -4
XID_SET_WATCHES = -8

STAT = struct.Struct("!qqqqiiiqiiq")
STAT_FIELDS = (
    "czxid mzxid ctime mtime version cversion aversion ephemeralOwner dataLength numChildren pzxid"
).split()

OPEN_ACL = [(31, "world", "anyone")]


class ZkError(Exception):
    def __init__(self, code, what=""):
        super().__init__(f"zookeeper error {code} {what}")
        self.code = code


class SessionRefused(Exception):
    """The server answered the connect with timeout 0: session expired or bad password."""


def pack_int(v):
    return struct.pack("!i", v)


def pack_long(v):
    return struct.pack("!q", v)


def pack_bool(v):
    return b"\x01" if v else b"\x00"


def pack_buffer(b):
    if b is None:
        return pack_int(-1)
    return pack_int(len(b)) + b


def pack_string(s):
    if s is None:
        return pack_int(-1)
    return pack_buffer(s.encode())


def pack_acls(acls):
    out = pack_int(len(acls))
    for perms, scheme, ident in acls:
        out += pack_int(perms) + pack_string(scheme) + pack_string(ident)
    return out


class Reader:
    def __init__(self, buf, off=0):
        self.buf = buf
        self.off = off

    def int(self):
        (v,) = struct.unpack_from("!i", self.buf, self.off)
        self.off += 4
        return v

    def long(self):
        (v,) = struct.unpack_from("!q", self.buf, self.off)
        self.off += 8
        return v

    def bool(self):
        v = self.buf[self.off]
        self.off += 1
        return v != 0

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        v = self.buf[self.off : self.off + n]
        self.off += n
        return bytes(v)

    def string(self):
        b = self.buffer()
        return None if b is None else b.decode()

    def stat(self):
        vals = STAT.unpack_from(self.buf, self.off)
        self.off += STAT.size
        return dict(zip(STAT_FIELDS, vals))

    def strings(self):
        return [self.string() for _ in range(self.int())]

    def acls(self):
        return [(self.int(), self.string(), self.string()) for _ in range(self.int())]


def _recv_exact(sock, n):
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("server closed the connection")
        out += chunk
    return bytes(out)


def _recv_frame(sock):
    (n,) = struct.unpack("!i", _recv_exact(sock, 4))
    return _recv_exact(sock, n)


def raw_connect(host, port, timeout_ms, session_id=0, passwd=b"\x00" * 16, last_zxid=0, read_only=False):
    """Open a socket and do the ConnectRequest handshake only.

    Returns (sock, negotiated_timeout_ms, session_id, passwd). Raises SessionRefused when the
    server answers with a zero timeout (expired session or wrong password)."""
    sock = socket.create_connection((host, port), timeout=5)
    body = pack_int(0) + pack_long(last_zxid) + pack_int(timeout_ms) + pack_long(session_id)
    body += pack_buffer(passwd) + pack_bool(read_only)
    sock.sendall(pack_int(len(body)) + body)
    try:
        frame = _recv_frame(sock)
    except (ConnectionError, OSError) as e:
        sock.close()
        raise SessionRefused(f"no connect response: {e}") from e
    r = Reader(frame)
    r.int()  # protocolVersion
    negotiated = r.int()
    sid = r.long()
    pw = r.buffer()
    if negotiated <= 0:
        sock.close()
        raise SessionRefused(f"negotiated timeout {negotiated}, session 0x{sid:x}")
    return sock, negotiated, sid, pw


def probe_session(host, port, timeout_ms=2000):
    """Open a session and close it again: proves the server serves sessions."""
    sock, _, _, _ = raw_connect(host, port, timeout_ms)
    try:
        pkt = pack_int(1) + pack_int(OP_CLOSE)
        sock.sendall(pack_int(len(pkt)) + pkt)
        _recv_frame(sock)
    except (ConnectionError, OSError):
        pass
    finally:
        sock.close()


class RawClient:
    """One session over one socket; replies matched by xid, events kept in arrival order."""

    def __init__(self, host, port, timeout_ms=4000, session_id=0, passwd=b"\x00" * 16):
        self.host, self.port = host, port
        self.sock, self.timeout_ms, self.session_id, self.passwd = raw_connect(
            host, port, timeout_ms, session_id, passwd
        )
        self.sock.settimeout(None)
        self._xid = 0
        self.last_zxid = 0
        self._lock = threading.Lock()
        self._pending = {}
        self.events = queue.Queue()
        # Every event with the zxid of the txn that fired it, in arrival order.
        self.event_zxids = []
        # Every frame in arrival order: ("event", type, path) or ("reply", xid).
        self.frames = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()
        self._pinger = threading.Thread(target=self._ping_loop, daemon=True)
        self._pinger.start()

    # -- plumbing ---------------------------------------------------------------------------
    def _read_loop(self):
        try:
            while True:
                frame = _recv_frame(self.sock)
                r = Reader(frame)
                xid = r.int()
                zxid = r.long()
                err = r.int()
                if xid == XID_EVENT:
                    etype = r.int()
                    state = r.int()
                    path = r.string()
                    self.frames.append(("event", etype, path))
                    self.event_zxids.append((zxid, etype, path))
                    self.events.put((etype, state, path))
                    continue
                if xid == XID_PING:
                    continue
                self.frames.append(("reply", xid))
                if zxid > self.last_zxid:
                    self.last_zxid = zxid
                with self._lock:
                    slot = self._pending.pop(xid, None)
                if slot is not None:
                    slot.put((err, zxid, frame[r.off :]))
        except (ConnectionError, OSError, struct.error):
            pass
        finally:
            self._closed.set()
            with self._lock:
                pending = list(self._pending.values())
                self._pending.clear()
            for slot in pending:
                slot.put(None)

    def _ping_loop(self):
        period = max(self.timeout_ms / 3000.0, 0.05)
        while not self._closed.wait(period):
            try:
                self._send(XID_PING, OP_PING, b"")
            except OSError:
                return

    def _send(self, xid, op, body):
        pkt = pack_int(xid) + pack_int(op) + body
        with self._lock:
            self.sock.sendall(pack_int(len(pkt)) + pkt)

    def call(self, op, body=b"", check=True, timeout=10):
        """Send one request; return (err, zxid, reply body). Raise ZkError if check and err."""
        slot = queue.Queue(1)
        with self._lock:
            self._xid += 1
            xid = self._xid
            self._pending[xid] = slot
            if self._closed.is_set():
                self._pending.pop(xid, None)
                raise ConnectionError("connection already closed")
            pkt = pack_int(xid) + pack_int(op) + body
            self.sock.sendall(pack_int(len(pkt)) + pkt)
        res = slot.get(timeout=timeout)
        if res is None:
            raise ConnectionError("connection closed before reply")
        err, zxid, rest = res
        if check and err != OK:
            raise ZkError(err, f"op {op}")
        return err, zxid, rest

    def wait_event(self, timeout=5.0):
        return self.events.get(timeout=timeout)

    def drop(self):
        """Close the socket without closeSession: the session lives on until it expires."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self._closed.wait(5)

    def close(self):
        if not self._closed.is_set():
            try:
                self.call(OP_CLOSE, timeout=5)
            except (ConnectionError, OSError, ZkError, queue.Empty):
                pass
        self.drop()

    # -- requests -----------------------------------------------------------------------------
    def create(self, path, data=b"", flags=PERSISTENT, acls=None, ttl=None, op=None):
        """createTTL when ttl is given, createContainer for CONTAINER, else create2.

        Returns (path, stat)."""
        acls = OPEN_ACL if acls is None else acls
        body = pack_string(path) + pack_buffer(data) + pack_acls(acls) + pack_int(flags)
        if op is None:
            if ttl is not None:
                op = OP_CREATE_TTL
            elif flags == CONTAINER:
                op = OP_CREATE_CONTAINER
            else:
                op = OP_CREATE2
        if op == OP_CREATE_TTL:
            body += pack_long(ttl)
        _, _, rest = self.call(op, body)
        r = Reader(rest)
        created = r.string()
        stat = r.stat() if op != OP_CREATE else None
        return created, stat

    def delete(self, path, version=-1):
        self.call(OP_DELETE, pack_string(path) + pack_int(version))

    def exists(self, path, watch=False):
        err, _, rest = self.call(OP_EXISTS, pack_string(path) + pack_bool(watch), check=False)
        if err == NO_NODE:
            return None
        if err != OK:
            raise ZkError(err, "exists")
        return Reader(rest).stat()

    def get(self, path, watch=False):
        _, _, rest = self.call(OP_GET_DATA, pack_string(path) + pack_bool(watch))
        r = Reader(rest)
        return r.buffer(), r.stat()

    def set(self, path, data, version=-1):
        _, _, rest = self.call(OP_SET_DATA, pack_string(path) + pack_buffer(data) + pack_int(version))
        return Reader(rest).stat()

    def get_children(self, path, watch=False):
        _, _, rest = self.call(OP_GET_CHILDREN2, pack_string(path) + pack_bool(watch))
        r = Reader(rest)
        return r.strings(), r.stat()

    def set_acls(self, path, acls, version=-1):
        _, _, rest = self.call(OP_SET_ACL, pack_string(path) + pack_acls(acls) + pack_int(version))
        return Reader(rest).stat()

    def get_acls(self, path):
        _, _, rest = self.call(OP_GET_ACL, pack_string(path))
        r = Reader(rest)
        return r.acls(), r.stat()

    def add_auth(self, scheme, cred):
        """Auth replies carry xid -4; the server answers AUTH_FAILED and closes on bad auth."""
        body = pack_int(0) + pack_string(scheme) + pack_buffer(cred.encode())
        slot = queue.Queue(1)
        with self._lock:
            self._pending[XID_AUTH] = slot
            pkt = pack_int(XID_AUTH) + pack_int(OP_AUTH) + body
            self.sock.sendall(pack_int(len(pkt)) + pkt)
        res = slot.get(timeout=10)
        if res is None:
            raise ConnectionError("connection closed during auth")
        if res[0] != OK:
            raise ZkError(res[0], "auth")

    def set_watches(self, relative_zxid, data=(), exist=(), child=(), persistent=None, recursive=None):
        """SetWatches (or SetWatches2 when persistent/recursive lists are given), sent with the
        reserved xid -8 as the Java client does after a reconnect."""
        body = pack_long(relative_zxid)
        for paths in (data, exist, child):
            body += pack_int(len(paths)) + b"".join(pack_string(p) for p in paths)
        op = OP_SET_WATCHES
        if persistent is not None or recursive is not None:
            op = OP_SET_WATCHES2
            for paths in (persistent or (), recursive or ()):
                body += pack_int(len(paths)) + b"".join(pack_string(p) for p in paths)
        slot = queue.Queue(1)
        with self._lock:
            self._pending[XID_SET_WATCHES] = slot
            pkt = pack_int(XID_SET_WATCHES) + pack_int(op) + body
            self.sock.sendall(pack_int(len(pkt)) + pkt)
        res = slot.get(timeout=10)
        if res is None:
            raise ConnectionError("connection closed during setWatches")
        if res[0] != OK:
            raise ZkError(res[0], "setWatches")

    def get_all_children_number(self, path):
        _, _, rest = self.call(OP_GET_ALL_CHILDREN_NUMBER, pack_string(path))
        return Reader(rest).int()

    def get_ephemerals(self, prefix):
        _, _, rest = self.call(OP_GET_EPHEMERALS, pack_string(prefix))
        return Reader(rest).strings()

    def add_watch(self, path, mode):
        self.call(OP_ADD_WATCH, pack_string(path) + pack_int(mode))

    def remove_watches(self, path, wtype, check=True):
        err, _, _ = self.call(OP_REMOVE_WATCHES, pack_string(path) + pack_int(wtype), check=check)
        return err

    def check_watches(self, path, wtype):
        err, _, _ = self.call(OP_CHECK_WATCHES, pack_string(path) + pack_int(wtype), check=False)
        return err

    def who_am_i(self):
        err, _, rest = self.call(OP_WHO_AM_I, check=False)
        if err != OK:
            raise ZkError(err, "whoAmI")
        r = Reader(rest)
        return [(r.string(), r.string()) for _ in range(r.int())]

    def sync(self, path):
        _, _, rest = self.call(OP_SYNC, pack_string(path))
        return Reader(rest).string()

    def multi_read(self, ops):
        """ops: list of ("get", path) / ("children", path). Returns results per op:
        bytes data, list of names, or an int error code."""
        body = b""
        for kind, path in ops:
            op = OP_GET_DATA if kind == "get" else OP_GET_CHILDREN
            body += pack_int(op) + pack_bool(False) + pack_int(-1)
            body += pack_string(path) + pack_bool(False)
        body += pack_int(-1) + pack_bool(True) + pack_int(-1)
        _, _, rest = self.call(OP_MULTI_READ, body)
        r = Reader(rest)
        out = []
        while True:
            typ = r.int()
            done = r.bool()
            err = r.int()
            if done:
                break
            if typ == OP_GET_DATA:
                data = r.buffer()
                r.stat()
                out.append(data)
            elif typ == OP_GET_CHILDREN:
                out.append(r.strings())
            else:
                out.append(r.int())
            del err
        return out


def wait_until(pred, timeout=10.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
