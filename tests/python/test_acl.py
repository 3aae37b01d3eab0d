"""ACLs through kazoo: world, digest, auth, ip schemes, permissions, invalid ACLs, superuser."""

import pytest
from kazoo.exceptions import AuthFailedError, BadVersionError, InvalidACLError, NoAuthError
from kazoo.security import (
    ACL,
    OPEN_ACL_UNSAFE,
    READ_ACL_UNSAFE,
    Id,
    Permissions,
    make_acl,
    make_digest_acl,
    make_digest_acl_credential,
)

import zkraw
from conftest import SUPER_PASSWORD, SUPER_USER, is_zookeeper


def test_default_acl_is_world_anyone_all(zk, base):
    zk.create(f"{base}/w")
    acls, stat = zk.get_acls(f"{base}/w")
    assert acls == [ACL(Permissions.ALL, Id("world", "anyone"))]
    assert stat.aversion == 0


def test_set_acls_bumps_aversion_only(zk, base):
    path, created = zk.create(f"{base}/a", b"d", include_data=True)
    stat = zk.set_acls(path, READ_ACL_UNSAFE + [make_acl("world", "anyone", admin=True)])
    assert stat.aversion == 1
    assert stat.version == 0
    assert stat.mzxid == created.mzxid
    assert stat.cversion == 0
    acls, _ = zk.get_acls(path)
    assert acls == [ACL(Permissions.READ, Id("world", "anyone")), ACL(Permissions.ADMIN, Id("world", "anyone"))]
    with pytest.raises(BadVersionError):
        zk.set_acls(path, OPEN_ACL_UNSAFE, version=0)
    assert zk.set_acls(path, OPEN_ACL_UNSAFE, version=1).aversion == 2


def test_permissions_enforced_per_operation(zk, base):
    path = zk.create(f"{base}/ro", b"r", acl=READ_ACL_UNSAFE)
    assert zk.get(path)[0] == b"r"
    assert zk.get_children(path) == []
    with pytest.raises(NoAuthError):
        zk.set(path, b"w")
    with pytest.raises(NoAuthError):
        zk.create(f"{path}/child")
    with pytest.raises(NoAuthError):
        zk.set_acls(path, OPEN_ACL_UNSAFE)
    # exists needs no permission.
    assert zk.exists(path) is not None

    # DELETE is checked on the parent.
    parent = zk.create(f"{base}/nodel", acl=[make_acl("world", "anyone", read=True, create=True)])
    zk.create(f"{parent}/c")
    with pytest.raises(NoAuthError):
        zk.delete(f"{parent}/c")

    wo = zk.create(f"{base}/wo", b"secret", acl=[make_acl("world", "anyone", write=True)])
    with pytest.raises(NoAuthError):
        zk.get(wo)
    with pytest.raises(NoAuthError):
        zk.get_children(wo)
    zk.set(wo, b"overwritten")


def test_digest_acl(zk_factory, base):
    owner = zk_factory()
    owner.add_auth("digest", "alice:pw")
    acl = make_digest_acl("alice", "pw", all=True)
    path = owner.create(f"{base}/dig", b"mine", acl=[acl])
    assert owner.get(path)[0] == b"mine"
    acls, _ = owner.get_acls(path)
    assert acls == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("alice", "pw")))]

    stranger = zk_factory()
    with pytest.raises(NoAuthError):
        stranger.get(path)
    with pytest.raises(NoAuthError):
        stranger.set(path, b"x")

    wrong = zk_factory()
    wrong.add_auth("digest", "alice:wrong")
    with pytest.raises(NoAuthError):
        wrong.get(path)

    friend = zk_factory(auth_data=[("digest", "alice:pw")])
    assert friend.get(path)[0] == b"mine"
    friend.set(path, b"ours")
    assert owner.get(path)[0] == b"ours"


def test_auth_scheme_expands_to_session_identities(zk_factory, base):
    c = zk_factory()
    c.add_auth("digest", "bob:pw")
    path = c.create(f"{base}/auth", acl=[make_acl("auth", "", all=True)])
    acls, _ = c.get_acls(path)
    assert acls == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("bob", "pw")))]
    other = zk_factory()
    with pytest.raises(NoAuthError):
        other.get(path)


def test_auth_scheme_without_identity_is_invalid(zk, base):
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/noauth", acl=[make_acl("auth", "", all=True)])


def test_ip_acl(zk, base):
    path = zk.create(
        f"{base}/ip",
        b"local",
        acl=[make_acl("ip", "127.0.0.1", read=True), make_acl("world", "anyone", admin=True)],
    )
    assert zk.get(path)[0] == b"local"
    with pytest.raises(NoAuthError):
        zk.set(path, b"x")
    net = zk.create(f"{base}/net", b"n", acl=[make_acl("ip", "127.0.0.0/8", all=True)])
    assert zk.get(net)[0] == b"n"
    zk.set(net, b"m")
    far = zk.create(f"{base}/far", b"f", acl=[make_acl("ip", "10.1.2.3", all=True)])
    with pytest.raises(NoAuthError):
        zk.get(far)


def test_invalid_acls(zk, raw, base):
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/bad", acl=[make_acl("nosuchscheme", "x", all=True)])
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/bad", acl=[make_acl("digest", "no-colon-here", all=True)])
    with pytest.raises(InvalidACLError):
        zk.create(f"{base}/bad", acl=[make_acl("ip", "not.an.ip", all=True)])
    assert zk.exists(f"{base}/bad") is None
    zk.create(f"{base}/ok")
    with pytest.raises(InvalidACLError):
        zk.set_acls(f"{base}/ok", [])
    with pytest.raises(InvalidACLError):
        zk.set_acls(f"{base}/ok", [make_acl("nosuchscheme", "x", all=True)])
    # kazoo turns an empty create ACL into the open ACL, so send the empty list raw.
    with pytest.raises(zkraw.ZkError) as e:
        raw.create(f"{base}/bad", b"", acls=[])
    assert e.value.code == zkraw.INVALID_ACL


def test_unknown_auth_scheme_fails_session(zk_factory):
    c = zk_factory()
    with pytest.raises(AuthFailedError):
        c.add_auth("nosuchscheme", "whatever")


def test_superuser_bypasses_acls(zk_factory, base):
    owner = zk_factory(auth_data=[("digest", "carol:pw")])
    path = owner.create(f"{base}/locked", b"c", acl=[make_digest_acl("carol", "pw", read=True)])
    root = zk_factory(auth_data=[("digest", f"{SUPER_USER}:{SUPER_PASSWORD}")])
    assert root.get(path)[0] == b"c"
    root.set(path, b"super was here")
    root.set_acls(path, OPEN_ACL_UNSAFE)
    assert zk_factory().get(path)[0] == b"super was here"
    locked2 = owner.create(f"{base}/locked2", acl=[make_digest_acl("carol", "pw", all=True)])
    impostor = zk_factory(auth_data=[("digest", f"{SUPER_USER}:not-the-password")])
    with pytest.raises(NoAuthError):
        impostor.get(locked2)


def test_who_am_i(raw_factory):
    c = raw_factory()
    try:
        ids = c.who_am_i()
    except (zkraw.ZkError, ConnectionError) as e:
        if is_zookeeper():
            pytest.skip(f"reference ZooKeeper predates whoAmI (3.9): {e}")
        raise
    assert ids == [("ip", "127.0.0.1")]
    c.add_auth("digest", "dave:pw")
    assert sorted(c.who_am_i()) == sorted([("ip", "127.0.0.1"), ("digest", "dave")])
