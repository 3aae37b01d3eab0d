"""Node operations through kazoo: create modes, Stat transitions, versions and error codes."""

import pytest
from kazoo.exceptions import (
    BadVersionError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)

import zkraw
from zkraw import wait_until


def test_fresh_server_root_holds_only_zookeeper(fresh_server, zk_factory):
    zk = zk_factory(fresh_server)
    assert zk.get_children("/") == ["zookeeper"]
    assert zk.exists("/zookeeper") is not None
    data, stat = zk.get("/")
    assert stat.numChildren == 1


def test_create_persistent_and_get(zk, base):
    path = zk.create(f"{base}/a", b"hello")
    assert path == f"{base}/a"
    data, stat = zk.get(path)
    assert data == b"hello"
    assert stat.dataLength == 5
    assert stat.ephemeralOwner == 0
    assert stat.version == 0 and stat.cversion == 0 and stat.aversion == 0
    assert stat.numChildren == 0


def test_create_empty_data_reads_back_empty(zk, base):
    zk.create(f"{base}/e")
    data, stat = zk.get(f"{base}/e")
    assert data == b""
    assert stat.dataLength == 0


def test_create_stat_fields_on_node_and_parent(zk, base):
    parent_before = zk.exists(base)
    path, stat = zk.create(f"{base}/s", b"xyz", include_data=True)
    assert path == f"{base}/s"
    # create2 returns the same Stat that exists() reports.
    assert zk.exists(path) == stat
    # A new node: czxid == mzxid == pzxid == the create txn's zxid.
    assert stat.czxid == stat.mzxid == stat.pzxid
    assert stat.czxid > parent_before.czxid
    assert stat.ctime == stat.mtime
    assert stat.ctime >= parent_before.ctime
    assert stat.dataLength == 3
    parent = zk.exists(base)
    assert parent.cversion == parent_before.cversion + 1
    assert parent.numChildren == parent_before.numChildren + 1
    assert parent.pzxid == stat.czxid
    # The parent's own data is untouched.
    assert parent.mzxid == parent_before.mzxid
    assert parent.version == parent_before.version
    assert parent.mtime == parent_before.mtime


def test_set_data_stat_transitions(zk, base):
    path, created = zk.create(f"{base}/d", b"1", include_data=True)
    s1 = zk.set(path, b"22")
    assert s1.version == 1
    assert s1.czxid == created.czxid
    assert s1.ctime == created.ctime
    assert s1.mzxid > created.mzxid
    assert s1.mtime >= created.mtime
    assert s1.pzxid == created.pzxid
    assert s1.dataLength == 2
    assert s1.cversion == 0 and s1.aversion == 0
    s2 = zk.set(path, b"333", version=1)
    assert s2.version == 2
    assert s2.mzxid > s1.mzxid
    assert zk.get(path) == (b"333", s2)


def test_versions_checked_on_set_and_delete(zk, base):
    path = zk.create(f"{base}/v", b"x")
    with pytest.raises(BadVersionError):
        zk.set(path, b"y", version=5)
    zk.set(path, b"y", version=0)
    with pytest.raises(BadVersionError):
        zk.delete(path, version=0)
    zk.delete(path, version=1)
    assert zk.exists(path) is None


def test_delete_updates_parent_cversion_and_pzxid(zk, base):
    zk.create(f"{base}/c")
    before = zk.exists(base)
    zk.delete(f"{base}/c")
    after = zk.exists(base)
    assert after.cversion == before.cversion + 1
    assert after.numChildren == before.numChildren - 1
    assert after.pzxid > before.pzxid
    assert after.mzxid == before.mzxid
    # The delete's zxid is visible: the next write gets a larger zxid than pzxid.
    s = zk.set(base, b"bump")
    assert s.mzxid > after.pzxid


def test_child_data_change_does_not_touch_parent(zk, base):
    zk.create(f"{base}/k", b"a")
    before = zk.exists(base)
    zk.set(f"{base}/k", b"b")
    assert zk.exists(base) == before


def test_error_codes(zk, base):
    with pytest.raises(NoNodeError):
        zk.create(f"{base}/missing/child")
    with pytest.raises(NoNodeError):
        zk.get(f"{base}/missing")
    with pytest.raises(NoNodeError):
        zk.set(f"{base}/missing", b"")
    with pytest.raises(NoNodeError):
        zk.delete(f"{base}/missing")
    with pytest.raises(NoNodeError):
        zk.get_children(f"{base}/missing")
    assert zk.exists(f"{base}/missing") is None
    zk.create(f"{base}/dup")
    with pytest.raises(NodeExistsError):
        zk.create(f"{base}/dup")
    zk.create(f"{base}/dup/child")
    with pytest.raises(NotEmptyError):
        zk.delete(f"{base}/dup")
    zk.create(f"{base}/eph", ephemeral=True)
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(f"{base}/eph/child")


def test_makepath_creates_parents(zk, base):
    zk.create(f"{base}/x/y/z", b"deep", makepath=True)
    assert zk.get(f"{base}/x/y/z")[0] == b"deep"
    assert zk.get_children(f"{base}/x") == ["y"]


def test_invalid_paths_rejected_by_server(raw, base):
    # The parent exists in every case, so only path validation can refuse them.
    for bad in ["noslash", f"{base}/", f"{base}/.", f"{base}/..", f"{base}/nul\x00x"]:
        with pytest.raises(zkraw.ZkError) as e:
            raw.create(bad, b"")
        assert e.value.code == zkraw.BAD_ARGUMENTS, bad


def test_delete_recursive(zk, base):
    zk.create(f"{base}/r/a/b", makepath=True)
    zk.create(f"{base}/r/c")
    zk.delete(f"{base}/r", recursive=True)
    assert zk.exists(f"{base}/r") is None


def test_large_value_roundtrip(zk, base):
    value = bytes(range(256)) * 2000  # 512000 bytes, under the 1 MiB frame limit
    zk.create(f"{base}/big", value)
    assert zk.get(f"{base}/big")[0] == value


def test_value_over_frame_limit_is_refused(zk_factory, base):
    zk = zk_factory()
    with pytest.raises(Exception):
        zk.create(f"{base}/huge", b"x" * (1024 * 1024 + 10))
    # The server keeps serving everyone else.
    other = zk_factory()
    assert other.exists(base) is not None


# -- sequential nodes --------------------------------------------------------------------------


def test_sequential_names_use_parent_cversion(zk, base):
    # ZooKeeper keeps the parent's cversion internally as a count of child creates; the
    # sequential suffix is that count. The cversion clients see counts creates and deletes
    # (DataNode.copyStat reports 2 * creates - numChildren).
    p = f"{base}/seq"
    zk.create(p)
    first = zk.create(f"{p}/n-", sequence=True)
    assert first == f"{p}/n-0000000000"
    zk.create(f"{p}/plain")  # a plain create counts too
    second = zk.create(f"{p}/n-", sequence=True)
    assert second == f"{p}/n-0000000002"
    zk.delete(first)  # deletes bump the visible cversion, not the counter
    assert zk.exists(p).cversion == 4
    third = zk.create(f"{p}/", sequence=True, ephemeral=True)
    assert third == f"{p}/0000000003"
    assert zk.exists(third).ephemeralOwner == zk.client_id[0]
    assert sorted(zk.get_children(p)) == sorted(["n-0000000002", "plain", "0000000003"])
    stat = zk.exists(p)
    assert stat.cversion == 5
    assert stat.numChildren == 3


def test_sequential_counter_after_delete_and_recreate(zk, base):
    p = f"{base}/sq"
    zk.create(p)
    a = zk.create(f"{p}/x", sequence=True)
    zk.delete(a)
    b = zk.create(f"{p}/x", sequence=True)
    assert (a, b) == (f"{p}/x0000000000", f"{p}/x0000000001")
    assert zk.exists(p).cversion == 3


def test_sequential_counter_is_ten_digits(zk, base):
    names = [zk.create(f"{base}/q", sequence=True) for _ in range(12)]
    suffixes = [n[len(f"{base}/q") :] for n in names]
    assert all(len(s) == 10 and s.isdigit() for s in suffixes)
    assert [int(s) for s in suffixes] == list(range(12))


# -- ephemeral nodes ---------------------------------------------------------------------------


def test_ephemeral_owner_and_removal_on_close(zk_factory, base):
    owner = zk_factory()
    watcher = zk_factory()
    path = owner.create(f"{base}/eph", b"e", ephemeral=True)
    stat = watcher.exists(path)
    assert stat.ephemeralOwner == owner.client_id[0]
    assert stat.ephemeralOwner != 0
    parent_before = watcher.exists(base)
    owner.stop()
    # closeSession is a txn: once stop() returned the node is gone.
    wait_until(lambda: watcher.exists(path) is None, timeout=5, what="ephemeral removed on close")
    parent_after = watcher.exists(base)
    assert parent_after.cversion == parent_before.cversion + 1
    assert parent_after.numChildren == parent_before.numChildren - 1


def test_ephemeral_removed_after_session_expiry(server, zk, raw_factory, base):
    owner = raw_factory(timeout_ms=400)
    assert owner.timeout_ms == 400
    path, stat = owner.create(f"{base}/exp", b"", zkraw.EPHEMERAL)
    assert stat["ephemeralOwner"] == owner.session_id
    events = []
    assert zk.exists(path, watch=events.append) is not None
    owner.drop()  # no closeSession: only expiry can remove the node
    wait_until(lambda: zk.exists(path) is None, timeout=10, what="ephemeral removed on expiry")
    wait_until(lambda: events, timeout=5, what="deleted event")
    assert events[0].type == "DELETED"
    assert events[0].path == path
    # The expired session cannot be resumed.
    with pytest.raises(zkraw.SessionRefused):
        zkraw.raw_connect(server.host, server.port, 400, owner.session_id, owner.passwd)


def test_session_timeout_is_negotiated_within_bounds(server):
    sock, t, sid, _ = zkraw.raw_connect(server.host, server.port, 10)
    sock.close()
    assert t == server.min_session_timeout_ms
    assert sid != 0
    sock, t, _, _ = zkraw.raw_connect(server.host, server.port, 10_000_000)
    sock.close()
    assert t == server.max_session_timeout_ms
    sock, t, _, _ = zkraw.raw_connect(server.host, server.port, 1000)
    sock.close()
    assert t == 1000


# -- container and TTL nodes -------------------------------------------------------------------


def test_container_removed_after_last_child_deleted(zk, raw, base):
    path, stat = raw.create(f"{base}/box", b"c", zkraw.CONTAINER)
    assert path == f"{base}/box"
    # ZooKeeper marks containers internally but reports ephemeralOwner 0 to clients.
    assert stat["ephemeralOwner"] == 0
    assert zk.exists(path).ephemeralOwner == 0
    zk.create(f"{base}/box/a")
    zk.create(f"{base}/box/b")
    zk.delete(f"{base}/box/a")
    # Still has a child (test_container_with_child_survives_reaping waits out a reap pass).
    assert zk.exists(f"{base}/box") is not None
    zk.delete(f"{base}/box/b")
    wait_until(lambda: zk.exists(f"{base}/box") is None, timeout=10, what="container reaped")


def test_container_with_child_survives_reaping(zk, raw, base):
    raw.create(f"{base}/keep", b"", zkraw.CONTAINER)
    zk.create(f"{base}/keep/x")
    # Wait for an unrelated empty container to be reaped: proves a reap pass ran.
    raw.create(f"{base}/probe", b"", zkraw.CONTAINER)
    zk.create(f"{base}/probe/x")
    zk.delete(f"{base}/probe/x")
    wait_until(lambda: zk.exists(f"{base}/probe") is None, timeout=10, what="probe reaped")
    assert zk.exists(f"{base}/keep") is not None


def test_ttl_node_removed_after_ttl(zk, raw, base):
    path, stat = raw.create(f"{base}/ttl", b"t", zkraw.PERSISTENT_WITH_TTL, ttl=300)
    assert path == f"{base}/ttl"
    # The TTL lives in the internal ephemeralOwner encoding; clients see 0.
    assert stat["ephemeralOwner"] == 0
    assert zk.get(path)[0] == b"t"
    wait_until(lambda: zk.exists(path) is None, timeout=10, what="ttl node removed")


def test_ttl_sequential_name_and_removal(zk, raw, base):
    path, _ = raw.create(f"{base}/tq-", b"", zkraw.PERSISTENT_SEQUENTIAL_WITH_TTL, ttl=300)
    assert path == f"{base}/tq-0000000000"
    wait_until(lambda: zk.exists(path) is None, timeout=10, what="ttl sequential removed")


def test_ttl_node_with_child_is_kept(zk, raw, base):
    raw.create(f"{base}/tk", b"", zkraw.PERSISTENT_WITH_TTL, ttl=200)
    zk.create(f"{base}/tk/child")
    raw.create(f"{base}/tprobe", b"", zkraw.PERSISTENT_WITH_TTL, ttl=200)
    wait_until(lambda: zk.exists(f"{base}/tprobe") is None, timeout=10, what="probe ttl removed")
    assert zk.exists(f"{base}/tk") is not None


def test_ttl_must_be_positive(raw, base):
    for ttl in (0, -5):
        with pytest.raises(zkraw.ZkError) as e:
            raw.create(f"{base}/bad", b"", zkraw.PERSISTENT_WITH_TTL, ttl=ttl)
        assert e.value.code == zkraw.BAD_ARGUMENTS
    # createTTL with a non-TTL mode is rejected too.
    with pytest.raises(zkraw.ZkError) as e:
        raw.create(f"{base}/bad", b"", zkraw.PERSISTENT, ttl=1000)
    assert e.value.code == zkraw.BAD_ARGUMENTS


# -- children and counts ------------------------------------------------------------------------


def test_get_children_with_stat(zk, base):
    for n in ["b", "a", "c"]:
        zk.create(f"{base}/{n}", n.encode())
    children, stat = zk.get_children(base, include_data=True)
    assert sorted(children) == ["a", "b", "c"]
    assert stat.numChildren == 3
    assert stat == zk.exists(base)


def test_get_all_children_number_and_ephemerals(zk, raw, base):
    zk.create(f"{base}/a/b/c", makepath=True)
    zk.create(f"{base}/a/d")
    assert raw.get_all_children_number(base) == 4
    assert raw.get_all_children_number(f"{base}/a/b/c") == 0
    raw.create(f"{base}/a/e1", b"", zkraw.EPHEMERAL)
    raw.create(f"{base}/a/b/e2", b"", zkraw.EPHEMERAL)
    zk.create(f"{base}/other", ephemeral=True)  # another session: not listed
    assert sorted(raw.get_ephemerals(base)) == sorted([f"{base}/a/e1", f"{base}/a/b/e2"])
    assert raw.get_ephemerals(f"{base}/a/b") == [f"{base}/a/b/e2"]
    assert sorted(raw.get_ephemerals("/")) == sorted([f"{base}/a/e1", f"{base}/a/b/e2"])
    with pytest.raises(zkraw.ZkError) as e:
        raw.get_all_children_number(f"{base}/nope")
    assert e.value.code == zkraw.NO_NODE


def test_sync_returns_path(zk, raw, base):
    assert zk.sync(base) == base
    assert raw.sync(base) == base


def test_multi_read(zk, raw, base):
    zk.create(f"{base}/m1", b"one")
    zk.create(f"{base}/m1/k")
    res = raw.multi_read([("get", f"{base}/m1"), ("children", f"{base}/m1"), ("get", f"{base}/none")])
    assert res == [b"one", ["k"], zkraw.NO_NODE]


def test_unknown_opcode_does_not_hurt_other_clients(raw, zk, base):
    # ZooKeeper answers an unknown opcode with an error or closes that one connection.
    try:
        err, _, _ = raw.call(999, b"", check=False, timeout=5)
        assert err != zkraw.OK
    except (ConnectionError, OSError):
        pass
    assert zk.exists(base) is not None


def test_unknown_create_mode_is_bad_arguments(raw, base):
    with pytest.raises(zkraw.ZkError) as e:
        raw.create(f"{base}/x", b"", flags=77)
    assert e.value.code == zkraw.BAD_ARGUMENTS


def test_node_exists_answer_implies_the_node_is_readable(zk_factory, base):
    """A NodeExists answer that rests on another session's create still being made durable must
    not reach the client before that create is visible: its next read has to see the node."""
    a, b = zk_factory(), zk_factory()
    for i in range(200):
        path = f"{base}/race-{i}"
        pending = a.create_async(path, b"a")
        try:
            b.create(path, b"b")
        except NodeExistsError:
            assert b.get(path)[0] == b"a"
        try:
            pending.get(timeout=10)
        except NodeExistsError:
            assert a.get(path)[0] == b"b"
