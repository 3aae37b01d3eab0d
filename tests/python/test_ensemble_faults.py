"""A 5-member coord ensemble under kazoo write load: the leader and a follower are killed (a
minority: writes go on), then a third member (the majority is gone: writes stop), then all
three come back (writes resume). Every write kazoo was told succeeded is on every member, no
sequential name was handed out twice, and the members' tree digests agree.

coord-only: it runs its own ensemble, whatever TARGET says, except against ZooKeeper."""

import threading
import time

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.handlers.threading import KazooTimeoutError

from conftest import Ensemble, four_letter, is_zookeeper

pytestmark = pytest.mark.skipif(is_zookeeper(), reason="coord's own ensemble")

PHASE_TIMEOUT_S = 60.0


class Writer:
    """Creates sequential nodes through any member until stopped; keeps what was acknowledged."""

    def __init__(self, hosts):
        self.client = KazooClient(hosts=hosts, timeout=4.0, connection_retry={"max_tries": -1, "delay": 0.05, "max_delay": 0.2})
        self.client.start(timeout=30)
        self.client.ensure_path("/faults")
        self.acked = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            try:
                path = self.client.create("/faults/n-", b"x", sequence=True)
            except (KazooException, KazooTimeoutError):
                # Unknown outcome: it may or may not have committed; not counted.
                time.sleep(0.02)
                continue
            with self.lock:
                self.acked.append(path.rsplit("/", 1)[1])

    def count(self):
        with self.lock:
            return len(self.acked)

    def wait_for(self, n, what):
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while self.count() < n:
            assert time.monotonic() < deadline, f"writes stalled {what}: {self.count()} of {n}"
            time.sleep(0.05)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=30)
        self.client.stop()
        self.client.close()
        return list(self.acked)


def children_on(port):
    client = KazooClient(hosts=f"127.0.0.1:{port}", timeout=5.0)
    client.start(timeout=30)
    try:
        client.sync("/faults")
        return set(client.get_children("/faults"))
    finally:
        client.stop()
        client.close()


def mntr(port, key):
    for line in four_letter(port, "mntr").splitlines():
        k, _, v = line.partition("\t")
        if k == key:
            return v
    return None


@pytest.mark.parametrize("transport", ["tcp", "quic"])
def test_five_members_lose_a_minority_then_a_majority_and_keep_every_acknowledged_write(transport):
    ensemble = Ensemble(n=5, transport=transport).start()
    writer = None
    try:
        hosts = ",".join(f"127.0.0.1:{m['port']}" for m in ensemble.members)
        writer = Writer(hosts)
        writer.wait_for(50, "at the start")

        leader = ensemble.wait_for_leader()
        follower = next(i for i in range(5) if i != leader)
        ensemble.kill(leader)
        ensemble.kill(follower)
        writer.wait_for(writer.count() + 50, "with a minority down")

        third = next(i for i in ensemble.running())
        ensemble.kill(third)
        time.sleep(1.0)
        stalled = writer.count()
        time.sleep(2.0)
        assert writer.count() == stalled, "writes were acknowledged without a quorum"

        for i in (leader, follower, third):
            ensemble.launch(i)
        ensemble.wait_for_leader(timeout=PHASE_TIMEOUT_S)
        writer.wait_for(writer.count() + 50, "once a quorum is back")
        acked = writer.finish()
        writer = None

        assert len(acked) == len(set(acked)), "a sequential name was handed out twice"
        first = None
        for m in ensemble.members:
            children = children_on(m["port"])
            missing = set(acked) - children
            assert not missing, f"member {m['id']} lost acknowledged writes: {sorted(missing)[:5]}"
            if first is None:
                first = children
            assert children == first, f"member {m['id']} differs"
        deadline = time.monotonic() + 20
        while True:
            seen = {(mntr(m["port"], "zk_tree_digest_zxid"), mntr(m["port"], "zk_tree_digest")) for m in ensemble.members}
            if len(seen) == 1:
                break
            assert time.monotonic() < deadline, f"digests differ: {seen}"
            time.sleep(0.1)
    finally:
        if writer is not None:
            writer.finish()
        ensemble.cleanup()
