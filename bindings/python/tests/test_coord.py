"""The `coord` Python module against real servers: in-process ones from coord.testing,
`python -m coord` in a subprocess (driven by kazoo too), and Apache ZooKeeper when Debian's
package is installed."""

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import coord
import coord.aio
import coord.testing


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smoke(client):
    """The same few steps through any kazoo-shaped client (coord.Client or KazooClient)."""
    client.create("/smoke/a", b"one", makepath=True)
    data, stat = client.get("/smoke/a")
    assert (data, stat.version) == (b"one", 0)
    assert client.set("/smoke/a", b"two").version == 1
    seq = client.create("/smoke/e-", b"", ephemeral=True, sequence=True)
    assert seq.startswith("/smoke/e-")
    assert sorted(client.get_children("/smoke")) == sorted(["a", seq.rsplit("/", 1)[1]])
    client.delete("/smoke", recursive=True)
    assert client.exists("/smoke") is None


def test_operations(coord_client):
    c = coord_client
    assert c.connected and c.session_id != 0
    assert c.create("/a", b"x") == "/a"
    assert c.create("/deep/er/node", b"d", makepath=True) == "/deep/er/node"
    c.ensure_path("/deep/er/node")
    data, stat = c.get("/a")
    assert data == b"x" and isinstance(stat, coord.ZnodeStat) and stat.dataLength == 1
    assert c.set("/a", b"y", version=0).version == 1
    assert c.exists("/a").version == 1
    assert c.exists("/none") is None
    assert c.create("/a/s-", sequence=True) == "/a/s-0000000000"
    owner = c.exists(c.create("/a/e", ephemeral=True)).ephemeralOwner
    assert owner == c.session_id
    c.create("/a/t", ttl=60)
    c.create("/box", container=True)
    children, parent = c.get_children("/a", include_data=True)
    assert sorted(children) == ["e", "s-0000000000", "t"] and parent.numChildren == 3
    c.delete("/a", recursive=True)
    assert c.exists("/a") is None
    assert c.sync("/") == "/"

    with c.transaction() as t:
        t.create("/tx", b"t")
        t.create("/tx/child")
        t.check("/tx", 0)
    assert c.exists("/tx/child") is not None
    t = c.transaction()
    t.create("/tx/other")
    t.delete("/tx/none")
    with pytest.raises(coord.NoNodeError):
        t.commit()
    assert c.exists("/tx/other") is None

    acls, _ = c.get_acls("/tx")
    assert acls == coord.OPEN_ACL_UNSAFE
    c.set_acls("/tx/child", coord.READ_ACL_UNSAFE)
    with pytest.raises(coord.NoAuthError):
        c.set("/tx/child", b"no")
    c.add_auth("digest", "alice:secret")
    assert ("digest", "alice") in c.whoami()
    c.create("/mine", b"m", acl=[coord.make_digest_acl("alice", "secret")])
    assert c.get("/mine")[0] == b"m"


def test_exceptions_carry_kazoo_names_under_one_base(coord_client):
    c = coord_client
    c.create("/x", b"")
    c.create("/eph", b"", ephemeral=True)
    cases = [
        (coord.NoNodeError, lambda: c.get("/nope")),
        (coord.NodeExistsError, lambda: c.create("/x")),
        (coord.BadVersionError, lambda: c.set("/x", b"", version=9)),
        (coord.NotEmptyError, lambda: (c.create("/x/y"), c.delete("/x"))),
        (coord.NoChildrenForEphemeralsError, lambda: c.create("/eph/child")),
        (coord.BadArgumentsError, lambda: c.create("no-slash")),
        (coord.InvalidACLError, lambda: c.create("/bad", acl=[coord.ACL(31, "nope", "x")])),
        (coord.AuthFailedError, lambda: c.add_auth("no-such-scheme", "x")),
        (coord.NoWatcherError, lambda: c.remove_watches("/x", "data")),
    ]
    for expected, call in cases:
        with pytest.raises(expected) as raised:
            call()
        assert isinstance(raised.value, coord.CoordError)
        assert isinstance(raised.value, coord.ZookeeperError)
    with pytest.raises(coord.UnreachableError):
        coord.Client(f"127.0.0.1:{free_port()}", timeout=2).start()
    with pytest.raises(coord.ConnectionClosedError):
        coord.Client("127.0.0.1:1").get("/")


def test_watch_callbacks_fire_on_the_event_thread(coord_server):
    with coord.Client(coord_server.hosts) as c, coord.Client(coord_server.hosts) as writer:
        c.create("/w", b"0")
        events = []
        threads = set()
        seen = threading.Event()

        def record(event):
            threads.add(threading.current_thread().name)
            events.append(event)
            if len(events) == 3:
                seen.set()

        c.get("/w", watch=record)
        c.exists("/w/new", watch=record)
        c.get_children("/w", watch=record)
        writer.set("/w", b"1")
        writer.create("/w/new")
        assert seen.wait(10), events
        assert sorted((e.type, e.path) for e in events) == [
            ("CHANGED", "/w"),
            ("CHILD", "/w"),
            ("CREATED", "/w/new"),
        ]
        assert threads == {"coord-events"}


def test_persistent_watches_are_iterators(coord_client, coord_server):
    c = coord_client
    c.create("/tree")
    with coord.Client(coord_server.hosts) as writer:
        with c.watch("/tree", recursive=True) as events:
            writer.create("/tree/a")
            writer.set("/tree/a", b"x")
            writer.delete("/tree/a")
            got = [next(events) for _ in range(3)]
            assert [(e.type, e.path) for e in got] == [
                ("CREATED", "/tree/a"),
                ("CHANGED", "/tree/a"),
                ("DELETED", "/tree/a"),
            ]
            assert events.next(timeout=0.1) is None
        # Closed: removed on the server too.
        with pytest.raises(coord.NoWatcherError):
            c.remove_watches("/tree", "persistent_recursive")


def test_threads_contending_for_a_lock_hold_it_alone(coord_server):
    holding = []
    overlaps = []
    done = []

    def worker(name):
        with coord.Client(coord_server.hosts) as c:
            for _ in range(5):
                with c.Lock("/locks/shared", name):
                    holding.append(name)
                    if len(holding) > 1:
                        overlaps.append(list(holding))
                    time.sleep(0.005)
                    holding.remove(name)
                done.append(name)

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 25 and overlaps == []
    # Several threads may share one client too; each uses its own Lock object.
    with coord.Client(coord_server.hosts) as c:
        lock = c.Lock("/locks/shared", "me")
        assert lock.acquire(timeout=5)
        other = c.Lock("/locks/shared", "other")
        assert not other.acquire(blocking=False)
        assert lock.contenders() == ["me"]
        lock.release()
        assert other.acquire(timeout=5)
        other.release()


def test_election_barrier_counter_queue(coord_server):
    with coord.Client(coord_server.hosts) as a, coord.Client(coord_server.hosts) as b:
        first = a.Election("/election", "a")
        leadership = first.campaign()
        assert first.contenders() == ["a"]
        assert b.Election("/election", "b").campaign(timeout=0.2) is None
        assert not leadership.wait_lost(timeout=0.1)
        leadership.resign()
        assert b.Election("/election", "b").run(lambda x: x * 2, 21) == 42

        barrier = a.Barrier("/barrier")
        barrier.create()
        assert not b.Barrier("/barrier").wait(timeout=0.1)
        barrier.remove()
        assert b.Barrier("/barrier").wait(timeout=5)

        counter = a.Counter("/counter")
        counter += 5
        counter -= 2
        assert b.Counter("/counter").value == 3

        queue = a.Queue("/queue")
        assert queue.get() is None
        for item in (b"1", b"2", b"3"):
            queue.put(item)
        assert len(queue) == 3
        assert [b.Queue("/queue").get() for _ in range(3)] == [b"1", b"2", b"3"]
        later = threading.Timer(0.2, lambda: queue.put(b"late"))
        later.start()
        assert b.Queue("/queue").get(timeout=10) == b"late"
        later.join()


def test_the_session_survives_a_server_restart():
    with coord.testing.Server() as server:
        with coord.Client(server.hosts, timeout=10) as c:
            states = []
            c.add_listener(states.append)
            c.create("/eph", b"", ephemeral=True)
            c.create("/watched")
            fired = threading.Event()
            c.get("/watched", watch=lambda event: fired.set())
            session = c.session_id
            server.restart()
            assert wait_until(lambda: states[-2:] == ["SUSPENDED", "CONNECTED"]), states
            assert c.session_id == session and c.connected
            with coord.Client(server.hosts) as other:
                assert other.exists("/eph") is not None
                other.set("/watched", b"changed")
            assert fired.wait(10)


def test_asyncio_api(coord_server):
    async def main():
        async with coord.aio.Client(coord_server.hosts) as c:
            assert await c.create("/aio", b"a") == "/aio"
            data, stat = await c.get("/aio")
            assert data == b"a" and stat.version == 0
            await c.set("/aio", b"b")
            async with c.Lock("/aio-lock"):
                pass
            watch = c.watch("/aio")
            async with watch:
                await c.set("/aio", b"c")
                event = await watch.next(timeout=10)
                assert (event.type, event.path) == ("CHANGED", "/aio")
            # Calls run concurrently, off the event loop.
            results = await asyncio.gather(*(c.exists("/aio") for _ in range(10)))
            assert all(r.version == 2 for r in results)

    asyncio.run(main())


def test_testing_gives_servers_and_ensembles():
    with coord.testing.server() as server:
        data_dir = server.data_dir
        with coord.Client(server.hosts) as c:
            smoke(c)
    assert not os.path.exists(data_dir), "the server's data went with it"
    with coord.testing.ensemble(3) as ensemble:
        hosts = ensemble.hosts.split(",")
        with coord.Client(hosts[0]) as one, coord.Client(hosts[2]) as three:
            one.create("/replicated", b"r")
            three.sync("/")
            assert three.get("/replicated")[0] == b"r"


def test_python_m_coord_serves_kazoo():
    from kazoo.client import KazooClient

    port = free_port()
    data = tempfile.mkdtemp(prefix="coord-python-m-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "coord", "--client-addr", f"127.0.0.1:{port}", "--data-dir", data, "--tick-ms", "200"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        kazoo = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
        deadline = time.monotonic() + 30
        while True:
            try:
                kazoo.start(timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
        try:
            smoke(kazoo)
        finally:
            kazoo.stop()
            kazoo.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(data, ignore_errors=True)
    help_text = subprocess.run([sys.executable, "-m", "coord", "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "--data-dir" in help_text.stdout


ZK_CLASSPATH = os.environ.get(
    "ZK_CLASSPATH",
    "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar",
)


@pytest.mark.skipif(
    not os.path.exists("/usr/share/java/zookeeper.jar") or shutil.which("java") is None,
    reason="Debian's zookeeper package is not installed",
)
def test_coord_client_against_apache_zookeeper():
    port = free_port()
    work = tempfile.mkdtemp(prefix="coord-python-zk-")
    cfg = os.path.join(work, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write(f"dataDir={work}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\ntickTime=200\nadmin.enableServer=false\n")
    proc = subprocess.Popen(
        ["java", "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.ZooKeeperServerMain", cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                client = coord.Client(f"127.0.0.1:{port}", timeout=4).start()
                break
            except coord.CoordError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        with client:
            smoke(client)
            with client.Lock("/locks/zk"):
                pass
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def test_help_is_useful():
    doc = coord.Client.__doc__
    assert "connection string" in doc and "context manager" in doc
    assert coord.Client.create.__doc__ and coord.Lock.__doc__


def test_resign_while_another_thread_waits_for_loss(coord_server):
    with coord.Client(coord_server.hosts) as c:
        leadership = c.Election("/resign", "me").campaign()
        result = []
        waiter = threading.Thread(target=lambda: result.append(leadership.wait_lost()))
        waiter.start()
        time.sleep(0.1)
        leadership.resign()
        waiter.join(10)
        assert result == [True]
        assert c.Election("/resign").contenders() == []


def test_ctrl_c_interrupts_a_blocking_wait(coord_server):
    with coord.Client(coord_server.hosts) as c:
        with c.Lock("/ctrl-c"):
            script = (
                "import coord, sys\n"
                f"c = coord.Client({coord_server.hosts!r}).start()\n"
                "print('waiting', flush=True)\n"
                "try:\n"
                "    c.Lock('/ctrl-c').acquire()\n"
                "except KeyboardInterrupt:\n"
                "    print('interrupted', flush=True)\n"
                "    c.stop()\n"
                "    sys.exit(0)\n"
                "sys.exit(1)\n"
            )
            proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
            try:
                assert proc.stdout.readline().strip() == "waiting"
                time.sleep(0.3)
                proc.send_signal(signal.SIGINT)
                assert proc.wait(timeout=20) == 0
                assert proc.stdout.read().strip() == "interrupted"
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            # The interrupted waiter left the line.
            assert wait_until(lambda: c.Lock("/ctrl-c").contenders() == [""])
