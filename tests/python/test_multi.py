"""check and multi through kazoo's transaction(): results and atomic rollback."""

from kazoo.exceptions import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    RuntimeInconsistency,
)


def test_multi_commit_results(zk, base):
    zk.create(f"{base}/old", b"o")
    zk.create(f"{base}/gone")
    t = zk.transaction()
    t.create(f"{base}/new", b"n")
    t.check(f"{base}/old", 0)
    t.set_data(f"{base}/old", b"o2", version=0)
    t.delete(f"{base}/gone")
    t.create(f"{base}/seq-", sequence=True)
    results = t.commit()
    assert results[0] == f"{base}/new"
    assert results[1] is True
    assert results[2].version == 1
    assert results[3] is True
    assert results[4] == f"{base}/seq-0000000003"
    assert zk.get(f"{base}/new")[0] == b"n"
    assert zk.get(f"{base}/old")[0] == b"o2"
    assert zk.exists(f"{base}/gone") is None


def test_multi_ops_share_one_zxid(zk, base):
    t = zk.transaction()
    t.create(f"{base}/a")
    t.create(f"{base}/b")
    t.commit()
    a = zk.exists(f"{base}/a")
    b = zk.exists(f"{base}/b")
    assert a.czxid == b.czxid
    assert zk.exists(base).pzxid == a.czxid


def test_multi_rollback_is_atomic(zk, base):
    zk.create(f"{base}/x", b"x")
    before = zk.exists(base)
    t = zk.transaction()
    t.create(f"{base}/created")
    t.set_data(f"{base}/x", b"changed")
    t.check(f"{base}/x", 7)  # fails: version is 0 (and 1 inside the txn)
    t.delete(f"{base}/x")
    t.create(f"{base}/later")
    results = t.commit()
    assert [type(r) for r in results] == [
        RolledBackError,
        RolledBackError,
        BadVersionError,
        RuntimeInconsistency,
        RuntimeInconsistency,
    ]
    assert zk.exists(f"{base}/created") is None
    assert zk.exists(f"{base}/later") is None
    assert zk.get(f"{base}/x")[0] == b"x"
    assert zk.exists(f"{base}/x").version == 0
    after = zk.exists(base)
    assert after.cversion == before.cversion
    assert after.pzxid == before.pzxid


def test_multi_sees_its_own_earlier_ops(zk, base):
    t = zk.transaction()
    t.create(f"{base}/p", b"")
    t.create(f"{base}/p/c", b"")
    t.set_data(f"{base}/p/c", b"v", version=0)
    t.check(f"{base}/p/c", 1)
    results = t.commit()
    assert results[0] == f"{base}/p"
    assert results[1] == f"{base}/p/c"
    assert results[2].version == 1
    assert results[3] is True


def test_multi_error_types(zk, base):
    zk.create(f"{base}/exists")
    t = zk.transaction()
    t.create(f"{base}/exists")
    results = t.commit()
    assert len(results) == 1 and isinstance(results[0], NodeExistsError)

    t = zk.transaction()
    t.check(f"{base}/exists", 0)
    t.delete(f"{base}/nope")
    results = t.commit()
    assert isinstance(results[0], RolledBackError)
    assert isinstance(results[1], NoNodeError)


def test_check_alone(zk, base):
    zk.create(f"{base}/c")
    t = zk.transaction()
    t.check(f"{base}/c", 0)
    assert t.commit() == [True]
    t = zk.transaction()
    t.check(f"{base}/c", 1)
    assert isinstance(t.commit()[0], BadVersionError)
    t = zk.transaction()
    t.check(f"{base}/none", 0)
    assert isinstance(t.commit()[0], NoNodeError)


def test_empty_multi(zk):
    assert zk.transaction().commit() == []
