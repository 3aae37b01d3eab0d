#!/usr/bin/env python3
"""Failover time and write throughput of a 3-member ensemble, next to a standalone server.

Starts coord (COORD_BIN, default target/release/coord) on loopback, first standalone, then as a
3-member ensemble with the default tick (2000 ms), and prints:
- write throughput: WRITERS connections each keeping DEPTH creates in flight for SECONDS,
  standalone and through the ensemble (clients spread over the members, so two thirds of the
  writes are forwarded to the leader);
- failover: under that write load, `kill -9` the leader, then the time until the first write is
  acknowledged again (by the new leader), over ROUNDS rounds (the killed member is restarted
  between rounds).

    scripts/bench-ensemble.py [SECONDS] [ROUNDS]      # defaults: 5 5

Compare ratios from one run: the machines are shared and noisy.
"""

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import zkraw  # noqa: E402

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
WRITERS = 6
DEPTH = 64
BINARY = os.environ.get("COORD_BIN", "target/release/coord")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(port, word):
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(word.encode())
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def mode(port):
    try:
        srvr = four_letter(port, "srvr")
    except OSError:
        return None
    return next((l[6:] for l in srvr.splitlines() if l.startswith("Mode: ")), None)


def create_frame(xid, path):
    body = (
        zkraw.pack_string(path) + zkraw.pack_buffer(b"x" * 64) + zkraw.pack_acls(zkraw.OPEN_ACL)
        + zkraw.pack_int(zkraw.PERSISTENT_SEQUENTIAL)
    )
    payload = zkraw.pack_int(xid) + zkraw.pack_int(zkraw.OP_CREATE) + body
    return zkraw.pack_int(len(payload)) + payload


class Load:
    """WRITERS raw connections, each keeping DEPTH sequential creates in flight, reconnecting
    (to the next address) when a connection fails. Records the time of every acknowledgement."""

    def __init__(self, ports):
        self.ports = ports
        self.stop = threading.Event()
        self.acks = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.writer, args=(i,), daemon=True) for i in range(WRITERS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def writer(self, i):
        turn = i
        while not self.stop.is_set():
            port = self.ports[turn % len(self.ports)]
            turn += 1
            try:
                sock, _, _, _ = zkraw.raw_connect("127.0.0.1", port, 10000)
            except (OSError, zkraw.SessionRefused, zkraw.ZkError):
                time.sleep(0.01)
                continue
            sock.settimeout(5)
            sent = {}
            try:
                xid = 1
                for _ in range(DEPTH):
                    sent[xid] = time.monotonic()
                    sock.sendall(create_frame(xid, f"/load/w{i}-"))
                    xid += 1
                while not self.stop.is_set():
                    payload = zkraw._recv_frame(sock)
                    r = zkraw.Reader(payload)
                    rxid = r.int()
                    r.long()
                    err = r.int()
                    if rxid < 0:
                        continue
                    if err != zkraw.OK:
                        raise OSError(f"create failed: {err}")
                    now = time.monotonic()
                    with self.lock:
                        self.acks.append((sent.pop(rxid, now), now))
                    sent[xid] = time.monotonic()
                    sock.sendall(create_frame(xid, f"/load/w{i}-"))
                    xid += 1
            except (OSError, zkraw.ZkError, ValueError):
                pass
            finally:
                sock.close()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=10)

    def acks_between(self, start, end):
        with self.lock:
            return sum(1 for _, t in self.acks if start <= t < end)

    def first_ack_of_a_write_sent_after(self, t0, timeout=30):
        """A write sent after the old leader died was decided by the new one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                later = [acked for sent, acked in self.acks if sent > t0]
            if later:
                return min(later)
            time.sleep(0.005)
        return None


def prepare(port):
    sock, _, _, _ = zkraw.raw_connect("127.0.0.1", port, 10000)
    body = (
        zkraw.pack_string("/load") + zkraw.pack_buffer(b"") + zkraw.pack_acls(zkraw.OPEN_ACL)
        + zkraw.pack_int(zkraw.PERSISTENT)
    )
    payload = zkraw.pack_int(1) + zkraw.pack_int(zkraw.OP_CREATE) + body
    sock.sendall(zkraw.pack_int(len(payload)) + payload)
    zkraw._recv_frame(sock)
    sock.close()


def throughput(ports):
    prepare(ports[0])
    load = Load(ports).start()
    time.sleep(1.0)
    start = time.monotonic()
    time.sleep(SECONDS)
    rate = load.acks_between(start, time.monotonic()) / SECONDS
    load.finish()
    return rate


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    root = tempfile.mkdtemp(prefix="bench-ensemble-")
    procs = []
    try:
        port = free_port()
        standalone = subprocess.Popen(
            [BINARY, "--client-addr", f"127.0.0.1:{port}", "--data-dir", os.path.join(root, "solo"),
             "--log-level", "warn", "--four-letter-words", "*"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(standalone)
        wait_until(lambda: mode(port) == "standalone", 30, "the standalone server")
        solo_rate = throughput([port])
        standalone.kill()
        standalone.wait()

        members = [(i, free_port(), free_port()) for i in (1, 2, 3)]
        servers = "\n".join(
            f'  {{ id = {i}, peer_addr = "127.0.0.1:{peer}", client_addr = "127.0.0.1:{client}" }},'
            for i, client, peer in members
        )
        configs = {}
        for i, client, _ in members:
            cfg = os.path.join(root, f"m{i}.toml")
            with open(cfg, "w") as f:
                f.write(
                    f'data_dir = "{os.path.join(root, f"m{i}")}"\nlog_level = "warn"\n'
                    f'four_letter_words = ["*"]\n[ensemble]\nid = {i}\nservers = [\n{servers}\n]\n'
                )
            configs[i] = cfg
        running = {}

        def launch(i):
            running[i] = subprocess.Popen([BINARY, "--config", configs[i]],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(running[i])

        for i, _, _ in members:
            launch(i)
        ports = {i: client for i, client, _ in members}

        def leader():
            modes = {i: mode(p) for i, p in ports.items() if running[i].poll() is None}
            leaders = [i for i, m in modes.items() if m == "leader"]
            if len(leaders) == 1 and all(m in ("leader", "follower") for m in modes.values()):
                return leaders[0]
            return None

        wait_until(lambda: leader() is not None, 60, "a leader")
        ens_rate = throughput(list(ports.values()))
        print(f"write throughput ({WRITERS} connections x {DEPTH} in flight, {SECONDS:.0f} s):")
        print(f"  standalone        {solo_rate:10.0f} creates/s")
        print(f"  3-member ensemble {ens_rate:10.0f} creates/s  ({ens_rate / solo_rate:.2f} x standalone)")

        failovers = []
        for _ in range(ROUNDS):
            wait_until(lambda: leader() is not None, 60, "a leader")
            old = leader()
            load = Load(list(ports.values())).start()
            time.sleep(1.0)
            killed = time.monotonic()
            running[old].kill()
            running[old].wait()
            first = load.first_ack_of_a_write_sent_after(killed)
            load.finish()
            if first is None:
                raise SystemExit("no write was acknowledged after the leader was killed")
            failovers.append(first - killed)
            launch(old)
            wait_until(lambda: leader() is not None, 60, "the ensemble to recover")
        print(f"failover (kill -9 the leader under load -> first write acknowledged), {ROUNDS} rounds:")
        print(
            f"  median {statistics.median(failovers) * 1000:.0f} ms, "
            f"max {max(failovers) * 1000:.0f} ms, all: "
            + ", ".join(f"{f * 1000:.0f}" for f in failovers)
        )
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
