"""kazoo recipes with several concurrent clients (threads), each its own session."""

import threading
import time

from kazoo.recipe.barrier import Barrier, DoubleBarrier
from kazoo.recipe.counter import Counter
from kazoo.recipe.election import Election
from kazoo.recipe.lock import Lock
from kazoo.recipe.queue import LockingQueue, Queue

from zkraw import wait_until

WORKERS = 4


def run_threads(target, n=WORKERS):
    errors = []

    def wrap(i):
        try:
            target(i)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [t for t in threads if t.is_alive()], "worker stuck"
    assert not errors, errors


def test_lock_mutual_exclusion(zk_factory, base):
    clients = [zk_factory() for _ in range(WORKERS)]
    zk = clients[0]
    zk.create(f"{base}/count", b"0")
    holders = []
    max_holders = [0]
    guard = threading.Lock()

    def work(i):
        c = clients[i]
        lock = Lock(c, f"{base}/lock", identifier=f"w{i}")
        for _ in range(5):
            with lock:
                with guard:
                    holders.append(i)
                    max_holders[0] = max(max_holders[0], len(holders))
                # Unprotected read-modify-write: only correct under mutual exclusion.
                v = int(c.get(f"{base}/count")[0])
                c.set(f"{base}/count", str(v + 1).encode())
                with guard:
                    holders.remove(i)

    run_threads(work)
    assert int(zk.get(f"{base}/count")[0]) == WORKERS * 5
    assert max_holders[0] == 1
    assert zk.get_children(f"{base}/lock") == []


def test_lock_released_when_holder_session_closes(zk_factory, base):
    a, b = zk_factory(), zk_factory()
    la = Lock(a, f"{base}/lock")
    assert la.acquire(timeout=5)
    lb = Lock(b, f"{base}/lock")
    assert not lb.acquire(blocking=False)
    a.stop()
    assert lb.acquire(timeout=10)
    lb.release()


def test_election_one_leader_at_a_time(zk_factory, base):
    clients = [zk_factory() for _ in range(3)]
    leaders = []
    release = {i: threading.Event() for i in range(3)}
    guard = threading.Lock()
    current = [0]
    max_current = [0]

    def lead(i):
        with guard:
            current[0] += 1
            max_current[0] = max(max_current[0], current[0])
            leaders.append(i)
        release[i].wait(30)
        with guard:
            current[0] -= 1

    elections = [Election(c, f"{base}/election", identifier=f"c{i}") for i, c in enumerate(clients)]
    threads = [threading.Thread(target=e.run, args=(lead, i)) for i, e in enumerate(elections)]
    for t in threads:
        t.start()
    for round_ in range(3):
        wait_until(lambda: len(leaders) > round_, timeout=10, what=f"leader {round_}")
        # The first leader can win before the other threads have entered the election.
        wait_until(
            lambda: len(elections[0].contenders()) == 3 - round_,
            timeout=10,
            what=f"{3 - round_} contenders",
        )
        assert elections[0].contenders()[0] == f"c{leaders[round_]}"
        release[leaders[round_]].set()
    for t in threads:
        t.join(10)
    assert sorted(leaders) == [0, 1, 2]
    assert max_current[0] == 1


def test_counter(zk_factory, base):
    clients = [zk_factory() for _ in range(WORKERS)]

    def work(i):
        counter = Counter(clients[i], f"{base}/counter")
        for _ in range(10):
            counter += 1

    run_threads(work)
    assert Counter(clients[0], f"{base}/counter").value == WORKERS * 10


def test_barrier(zk_factory, base):
    clients = [zk_factory() for _ in range(WORKERS)]
    gate = Barrier(clients[0], f"{base}/barrier")
    gate.create()
    passed = []

    def work(i):
        assert Barrier(clients[i], f"{base}/barrier").wait(timeout=20)
        passed.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(1, WORKERS)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # give waiters time to block: nobody passes a closed barrier
    assert passed == []
    gate.remove()
    for t in threads:
        t.join(20)
    assert sorted(passed) == list(range(1, WORKERS))


def test_double_barrier(zk_factory, base):
    clients = [zk_factory() for _ in range(3)]
    entered, left = [], []
    guard = threading.Lock()

    def work(i):
        db = DoubleBarrier(clients[i], f"{base}/double", num_clients=3, identifier=f"p{i}")
        db.enter()
        with guard:
            entered.append(i)
            # Nobody enters before all three have arrived.
            assert len(entered) <= 3
        db.leave()
        with guard:
            left.append(i)
            # Nobody leaves before all three have entered.
            assert len(entered) == 3

    run_threads(work, n=3)
    assert sorted(left) == [0, 1, 2]


def test_queue_every_item_consumed_once(zk_factory, base):
    producers = [zk_factory() for _ in range(2)]
    consumers = [zk_factory() for _ in range(2)]
    items = {f"item-{p}-{k}".encode() for p in range(2) for k in range(15)}
    got = []
    guard = threading.Lock()

    def produce(i):
        q = Queue(producers[i], f"{base}/queue")
        for k in range(15):
            q.put(f"item-{i}-{k}".encode())

    run_threads(produce, n=2)

    def consume(i):
        q = Queue(consumers[i], f"{base}/queue")
        while True:
            item = q.get()
            if item is None:
                return
            with guard:
                got.append(item)

    run_threads(consume, n=2)
    assert sorted(got) == sorted(items)
    assert len(got) == len(items)


def test_queue_priority_order(zk, base):
    q = Queue(zk, f"{base}/pq")
    q.put(b"low", priority=90)
    q.put(b"high", priority=10)
    q.put(b"mid", priority=50)
    assert [q.get(), q.get(), q.get(), q.get()] == [b"high", b"mid", b"low", None]


def test_locking_queue(zk_factory, base):
    producer = zk_factory()
    workers = [zk_factory() for _ in range(3)]
    q = LockingQueue(producer, f"{base}/lq")
    q.put_all([f"job{i}".encode() for i in range(9)])
    done = []
    guard = threading.Lock()

    def work(i):
        wq = LockingQueue(workers[i], f"{base}/lq")
        while True:
            item = wq.get(timeout=0.5)
            if item is None:
                return
            with guard:
                done.append(item)
            assert wq.consume()

    run_threads(work, n=3)
    assert sorted(done) == sorted(f"job{i}".encode() for i in range(9))
    assert len(q) == 0
