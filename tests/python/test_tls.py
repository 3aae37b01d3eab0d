"""Clients over TLS with real third-party clients: kazoo (use_ssl, with a client certificate)
and zkCli.sh (ZooKeeper's Java client, with its client TLS properties) on coord's secure
client port, certificate identities in x509 ACLs, and a plaintext client refused there.

coord-only: these start their own coord with certificates from `coord certs`.
"""

import os
import shutil
import subprocess
import tempfile
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoAuthError
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.security import make_acl

from conftest import REPO, _new_server, free_port, is_ensemble, is_zookeeper

# Each test starts its own standalone coord: run once, not again under TARGET=ensemble.
pytestmark = pytest.mark.skipif(
    is_zookeeper() or is_ensemble(), reason="coord's secure port, set up by coord certs"
)

COORD = os.environ.get("COORD_BIN", os.path.join(REPO, "target", "debug", "coord"))
ZKCLI = os.environ.get("ZKCLI", "/usr/share/zookeeper/bin/zkCli.sh")


@pytest.fixture(scope="module")
def tls_server():
    certs = tempfile.mkdtemp(prefix="coord-py-certs-")
    made = subprocess.run(
        [COORD, "certs", "--dir", certs, "--members", "1", "--clients", "alice,bob"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    config = os.path.join(certs, "tls.toml")
    with open(config, "w") as f:
        f.write(
            "[client_tls]\n"
            f'cert = "{certs}/server.pem"\n'
            f'key = "{certs}/server.key"\n'
            f'ca = "{certs}/ca.pem"\n'
            'client_auth = "need"\n'
        )
    port = free_port()
    server = _new_server(
        target="coord",
        extra_args=["--config", config, "--secure-client-addr", f"127.0.0.1:{port}"],
    )
    server.certs = certs
    server.secure_hosts = f"127.0.0.1:{port}"
    yield server
    server.cleanup()
    shutil.rmtree(certs, ignore_errors=True)


def tls_client(server, who, **kw):
    zk = KazooClient(
        hosts=server.secure_hosts,
        use_ssl=True,
        ca=os.path.join(server.certs, "ca.pem"),
        certfile=os.path.join(server.certs, f"client-{who}.pem"),
        keyfile=os.path.join(server.certs, f"client-{who}.key"),
        verify_certs=True,
        timeout=5,
        **kw,
    )
    zk.start(timeout=10)
    return zk


def test_kazoo_x509_acl_admits_one_subject_and_refuses_another(tls_server):
    alice = tls_client(tls_server, "alice")
    bob = tls_client(tls_server, "bob")
    plain = KazooClient(hosts=tls_server.hosts, timeout=5)
    plain.start(timeout=10)
    try:
        path = "/tls-alice"
        alice.create(path, b"hers", acl=[make_acl("x509", "CN=alice", all=True)])
        assert alice.get(path)[0] == b"hers"
        assert alice.get_acls(path)[0][0].id.id == "CN=alice"
        with pytest.raises(NoAuthError):
            bob.get(path)
        with pytest.raises(NoAuthError):
            bob.set(path, b"mine")
        with pytest.raises(NoAuthError):
            plain.get(path)
        # "auth" expands to the creator's certificate identity.
        alice.create("/tls-creator", b"", acl=[make_acl("auth", "", all=True)])
        acl = alice.get_acls("/tls-creator")[0][0]
        assert (acl.id.scheme, acl.id.id) == ("x509", "CN=alice")
        with pytest.raises(NoAuthError):
            bob.get("/tls-creator")
    finally:
        for zk in (alice, bob, plain):
            zk.stop()
            zk.close()


def test_plaintext_kazoo_on_the_secure_port_is_refused_and_harms_nobody(tls_server):
    alice = tls_client(tls_server, "alice")
    try:
        alice.ensure_path("/tls-plain")
        for i in range(3):
            plain = KazooClient(hosts=tls_server.secure_hosts, timeout=2, connection_retry={"max_tries": 0})
            with pytest.raises(KazooTimeoutError):
                plain.start(timeout=2)
            plain.stop()
            plain.close()
            # The TLS session goes on, and writes.
            alice.set("/tls-plain", str(i).encode())
            assert alice.get("/tls-plain")[0] == str(i).encode()
        assert alice.connected
    finally:
        alice.stop()
        alice.close()


def java_tls_flags(certs, who, workdir):
    """ZooKeeper's client TLS properties, with PEM key and trust stores. The Netty client
    socket needs netty-resolver and netty-codec, which Debian's zookeeper.jar does not list,
    so the classpath is given again (the JVM takes the last -cp)."""
    bundle = os.path.join(workdir, f"{who}-keystore.pem")
    with open(bundle, "w") as out:
        for name in (f"client-{who}.key", f"client-{who}.pem"):
            with open(os.path.join(certs, name)) as f:
                out.write(f.read())
    classpath = ":".join(
        [
            "/etc/zookeeper/conf",
            "/usr/share/java/zookeeper.jar",
            "/usr/share/java/netty-resolver.jar",
            "/usr/share/java/netty-codec.jar",
        ]
    )
    return " ".join(
        [
            f"-cp {classpath}",
            "-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty",
            "-Dzookeeper.client.secure=true",
            f"-Dzookeeper.ssl.keyStore.location={bundle}",
            "-Dzookeeper.ssl.keyStore.type=PEM",
            f"-Dzookeeper.ssl.trustStore.location={certs}/ca.pem",
            "-Dzookeeper.ssl.trustStore.type=PEM",
        ]
    )


def zkcli(server, who, *command):
    assert os.path.exists(ZKCLI), f"{ZKCLI} not installed (Debian zookeeper)"
    workdir = tempfile.mkdtemp(prefix="coord-zkcli-")
    try:
        env = dict(os.environ, CLIENT_JVMFLAGS=java_tls_flags(server.certs, who, workdir))
        proc = subprocess.run(
            [ZKCLI, "-waitforconnection", "-timeout", "10000", "-server", server.secure_hosts]
            + list(command),
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        return proc.returncode, proc.stdout + proc.stderr
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_zkcli_over_tls_is_its_certificate(tls_server):
    rc, out = zkcli(tls_server, "alice", "whoami")
    assert rc == 0, out
    assert "x509: CN=alice" in out, out
    assert "ip: 127.0.0.1" in out, out

    rc, out = zkcli(tls_server, "alice", "create", "/tls-zkcli", "java", "x509:CN=alice:cdrwa")
    assert rc == 0 and "Created /tls-zkcli" in out, out
    rc, out = zkcli(tls_server, "alice", "get", "/tls-zkcli")
    assert rc == 0 and "\njava\n" in f"\n{out}", out
    rc, out = zkcli(tls_server, "bob", "get", "/tls-zkcli")
    assert "Insufficient permission" in out or "NoAuth" in out, out
