"""Sessions: reconnect by id and password, expiry, wrong password, close; restart durability."""

import socket
import time
import threading

import pytest
from kazoo.client import KazooState
from kazoo.retry import KazooRetry

import zkraw
from zkraw import wait_until


def test_reconnect_with_same_session_keeps_ephemerals(server, zk, raw_factory, base):
    first = raw_factory(timeout_ms=400)
    path, _ = first.create(f"{base}/e", b"", zkraw.EPHEMERAL)
    sid, pw = first.session_id, first.passwd
    first.drop()
    second = raw_factory(timeout_ms=400, session_id=sid, passwd=pw)
    assert second.session_id == sid
    assert second.timeout_ms == 400
    assert zk.exists(path).ephemeralOwner == sid
    # Well past the session timeout: the second connection keeps the session alive with pings.
    time.sleep(1.0)
    assert second.get_ephemerals(base) == [path]
    second.close()
    wait_until(lambda: zk.exists(path) is None, timeout=5, what="ephemeral removed on close")


def test_new_connection_for_a_session_replaces_the_old_one(server, zk, raw_factory, base):
    first = raw_factory(timeout_ms=2000)
    first.create(f"{base}/e", b"", zkraw.EPHEMERAL)
    second = raw_factory(timeout_ms=2000, session_id=first.session_id, passwd=first.passwd)
    # The server closes the older connection of the session.
    assert first._closed.wait(5)
    assert second.exists(f"{base}/e")["ephemeralOwner"] == second.session_id


def test_wrong_password_is_refused(server, zk, raw_factory, base):
    c = raw_factory(timeout_ms=2000)
    c.create(f"{base}/e", b"", zkraw.EPHEMERAL)
    bad = bytes((b ^ 0xFF) for b in c.passwd)
    with pytest.raises(zkraw.SessionRefused):
        zkraw.raw_connect(server.host, server.port, 2000, c.session_id, bad)
    # ZooKeeper drops the session's current connection before it checks the password, but the
    # session itself lives on: the right password still resumes it.
    again = raw_factory(timeout_ms=2000, session_id=c.session_id, passwd=c.passwd)
    assert again.session_id == c.session_id
    assert zk.exists(f"{base}/e").ephemeralOwner == c.session_id


def test_unknown_session_id_is_refused(server):
    with pytest.raises(zkraw.SessionRefused):
        zkraw.raw_connect(server.host, server.port, 2000, 0x7EADBEEF00000001, b"\x01" * 16)


def test_closed_session_cannot_be_resumed(server, raw_factory):
    c = raw_factory(timeout_ms=2000)
    sid, pw = c.session_id, c.passwd
    c.close()
    with pytest.raises(zkraw.SessionRefused):
        zkraw.raw_connect(server.host, server.port, 2000, sid, pw)


def test_kazoo_reconnects_keeping_session_and_ephemerals(zk_factory, base):
    zk = zk_factory(timeout=2.0)
    other = zk_factory()
    states = []
    zk.add_listener(states.append)
    sid = zk.client_id[0]
    zk.create(f"{base}/eph", ephemeral=True)
    # Cut the TCP connection under kazoo; it reconnects with its session id and password.
    zk._connection._socket.shutdown(socket.SHUT_RDWR)
    wait_until(lambda: KazooState.SUSPENDED in states, timeout=5, what="suspended")
    wait_until(
        lambda: zk.state == KazooState.CONNECTED and states[-1] == KazooState.CONNECTED,
        timeout=10,
        what="reconnected",
    )
    assert KazooState.LOST not in states
    assert zk.client_id[0] == sid
    assert other.exists(f"{base}/eph").ephemeralOwner == sid
    assert zk.get_children(base) == ["eph"]


def _resume(raw_factory, old):
    """Reconnect a dropped raw session with its id and password."""
    new = raw_factory(timeout_ms=old.timeout_ms, session_id=old.session_id, passwd=old.passwd)
    assert new.session_id == old.session_id
    return new


def test_set_watches_reregisters_watches_after_reconnect(zk, raw_factory, base):
    zk.create(f"{base}/d", b"0")
    zk.create(f"{base}/p")
    first = raw_factory(timeout_ms=2000)
    first.get(f"{base}/d", watch=True)
    first.exists(f"{base}/later", watch=True)
    first.get_children(f"{base}/p", watch=True)
    seen = first.last_zxid
    first.drop()
    second = _resume(raw_factory, first)
    second.set_watches(seen, data=[f"{base}/d"], exist=[f"{base}/later"], child=[f"{base}/p"])
    zk.set(f"{base}/d", b"1")
    zk.create(f"{base}/later")
    zk.create(f"{base}/p/c")
    got = sorted(second.wait_event(5)[::2] for _ in range(3))
    assert got == sorted(
        [
            (zkraw.EV_NODE_DATA_CHANGED, f"{base}/d"),
            (zkraw.EV_NODE_CREATED, f"{base}/later"),
            (zkraw.EV_NODE_CHILDREN_CHANGED, f"{base}/p"),
        ]
    )


def test_set_watches_fires_for_changes_missed_while_disconnected(zk, raw_factory, base):
    zk.create(f"{base}/d", b"0")
    zk.create(f"{base}/gone")
    zk.create(f"{base}/p")
    first = raw_factory(timeout_ms=2000)
    first.get(f"{base}/d", watch=True)
    seen = first.last_zxid
    first.drop()
    zk.set(f"{base}/d", b"changed while away")
    zk.create(f"{base}/new")
    zk.delete(f"{base}/gone")
    zk.create(f"{base}/p/c")
    second = _resume(raw_factory, first)
    second.set_watches(
        seen,
        data=[f"{base}/d", f"{base}/gone"],
        exist=[f"{base}/new"],
        child=[f"{base}/p"],
    )
    got = sorted(second.wait_event(5)[::2] for _ in range(4))
    assert got == sorted(
        [
            (zkraw.EV_NODE_DATA_CHANGED, f"{base}/d"),
            (zkraw.EV_NODE_DELETED, f"{base}/gone"),
            (zkraw.EV_NODE_CREATED, f"{base}/new"),
            (zkraw.EV_NODE_CHILDREN_CHANGED, f"{base}/p"),
        ]
    )


def test_set_watches2_restores_persistent_watches(zk, raw_factory, base):
    zk.create(f"{base}/pw")
    zk.create(f"{base}/rw")
    first = raw_factory(timeout_ms=2000)
    first.sync(base)
    seen = first.last_zxid
    first.drop()
    second = _resume(raw_factory, first)
    second.set_watches(seen, persistent=[f"{base}/pw"], recursive=[f"{base}/rw"])
    zk.set(f"{base}/pw", b"1")
    zk.set(f"{base}/pw", b"2")
    zk.create(f"{base}/rw/x")
    got = [second.wait_event(5)[::2] for _ in range(3)]
    assert got == [
        (zkraw.EV_NODE_DATA_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_DATA_CHANGED, f"{base}/pw"),
        (zkraw.EV_NODE_CREATED, f"{base}/rw/x"),
    ]


def test_session_expiry_fires_lost_in_kazoo(server, zk_factory, base):
    zk = zk_factory(timeout=0.4)
    other = zk_factory()
    states = []
    zk.add_listener(states.append)
    zk.create(f"{base}/eph", ephemeral=True)
    old = zk.client_id[0]
    # Expire the session from the server's side: connect with its id/password and close it.
    c = zkraw.RawClient(server.host, server.port, 2000, session_id=zk.client_id[0], passwd=zk.client_id[1])
    c.close()
    wait_until(lambda: KazooState.LOST in states, timeout=10, what="LOST")
    assert other.exists(f"{base}/eph") is None
    wait_until(lambda: zk.connected and zk.client_id and zk.client_id[0] != old, timeout=10, what="new session")


def test_data_survives_restart(server_factory, zk_factory):
    srv = server_factory()
    zk = zk_factory(srv)
    zk.create("/durable/a", b"1", makepath=True)
    zk.create("/durable/seq-", sequence=True)
    zk.set("/durable/a", b"2")
    t = zk.transaction()
    t.create("/durable/m1")
    t.create("/durable/m2")
    t.commit()
    before = zk.exists("/durable/a")
    zk.stop()
    srv.restart()
    zk2 = zk_factory(srv)
    data, stat = zk2.get("/durable/a")
    assert data == b"2"
    assert stat == before
    assert sorted(zk2.get_children("/durable")) == ["a", "m1", "m2", "seq-0000000001"]
    assert zk2.create("/durable/seq-", sequence=True) == "/durable/seq-0000000004"
    assert zk2.exists("/durable/m1").czxid == zk2.exists("/durable/m2").czxid
    after = zk2.create("/after", include_data=True)[1]
    assert after.czxid > before.mzxid


def test_session_and_ephemeral_survive_restart(server_factory, zk_factory):
    srv = server_factory()
    # Retry the connection quickly: the session must be resumed within its 2 s timeout.
    zk = zk_factory(srv, timeout=2.0, connection_retry=KazooRetry(max_tries=-1, delay=0.05, backoff=1, max_delay=0.1))
    observer_states = []
    zk.add_listener(observer_states.append)
    sid = zk.client_id[0]
    zk.create("/eph", ephemeral=True)
    srv.restart()
    wait_until(lambda: zk.connected and observer_states and observer_states[-1] == KazooState.CONNECTED, timeout=15, what="reconnect")
    assert zk.client_id[0] == sid
    assert zk.exists("/eph").ephemeralOwner == sid
