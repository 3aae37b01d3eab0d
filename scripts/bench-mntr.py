#!/usr/bin/env python3
"""How much `mntr` costs on a big server, and what it does to other clients meanwhile.

Starts a coord server (COORD_BIN, default target/release/coord) on a free loopback port, fills it
with NODES nodes (half of them ephemeral) and WATCHES one-shot watches, then prints:
- the time one `mntr` takes (median and max of 50), and
- the ping round trip of another client while `mntr` is asked in a loop, against an idle one.

    scripts/bench-mntr.py [NODES] [WATCHES]        # defaults: 1000000 1000000

Monitoring scrapes mntr often; it must not walk the tree or the watches under the locks the
apply thread and the reads need. Compare two builds by running this once with each COORD_BIN.
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
import zkraw  # noqa: E402

NODES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
WATCHES = int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000
BATCH = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def four_letter(port, word):
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(word.encode())
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return b"".join(chunks).decode()
            chunks.append(chunk)


def frame(xid, op, body):
    payload = zkraw.pack_int(xid) + zkraw.pack_int(op) + body
    return zkraw.pack_int(len(payload)) + payload


def pipelined(sock, frames, replies):
    """Sends frames from a thread while reading `replies` replies (ignoring events)."""
    sender = threading.Thread(target=lambda: sock.sendall(b"".join(frames)))
    sender.start()
    got = 0
    while got < replies:
        payload = zkraw._recv_frame(sock)
        r = zkraw.Reader(payload)
        xid = r.int()
        r.long()
        err = r.int()
        if xid == zkraw.XID_EVENT:
            continue
        if err not in (zkraw.OK, zkraw.NO_NODE):
            raise SystemExit(f"request {xid} failed with {err}")
        got += 1
    sender.join()


def main():
    binary = os.environ.get("COORD_BIN", "target/release/coord")
    port = free_port()
    data = tempfile.mkdtemp(prefix="bench-mntr-")
    server = subprocess.Popen(
        [binary, "--client-addr", f"127.0.0.1:{port}", "--data-dir", data,
         "--four-letter-words", "*", "--log-level", "warn"],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                if four_letter(port, "ruok") == "imok":
                    break
            except OSError:
                pass
            if time.time() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.05)
        sock, _, _, _ = zkraw.raw_connect("127.0.0.1", port, 30000)
        start = time.time()
        create = b"".join(
            zkraw.pack_int(zkraw.OP_CREATE) + zkraw.pack_bool(False) + zkraw.pack_int(-1)
            + zkraw.pack_string("/n") + zkraw.pack_buffer(b"") + zkraw.pack_acls(zkraw.OPEN_ACL)
            + zkraw.pack_int(mode)
            for mode in (zkraw.PERSISTENT_SEQUENTIAL, zkraw.EPHEMERAL_SEQUENTIAL)
        )
        end = zkraw.pack_int(-1) + zkraw.pack_bool(True) + zkraw.pack_int(-1)
        multis = [
            frame(i + 1, zkraw.OP_MULTI, create * (BATCH // 2) + end)
            for i in range(max(NODES // BATCH, 1))
        ]
        pipelined(sock, multis, len(multis))
        made = time.time() - start
        start = time.time()
        exists = [
            frame(1_000_000 + i, zkraw.OP_EXISTS, zkraw.pack_string(f"/w{i}") + zkraw.pack_bool(True))
            for i in range(WATCHES)
        ]
        pipelined(sock, exists, len(exists))
        watched = time.time() - start
        print(f"{NODES} nodes in {made:.1f} s, {WATCHES} watches in {watched:.1f} s")
        mntr = four_letter(port, "mntr")
        for key in ("zk_znode_count", "zk_ephemerals_count", "zk_watch_count"):
            print(next(line for line in mntr.splitlines() if line.startswith(key)))

        times = []
        for _ in range(50):
            t = time.perf_counter()
            four_letter(port, "mntr")
            times.append(time.perf_counter() - t)
        print(f"mntr: median {statistics.median(times) * 1e3:.2f} ms, max {max(times) * 1e3:.2f} ms")

        pinger = zkraw.RawClient("127.0.0.1", port, timeout_ms=30000)
        pinger.create("/bench", b"")

        def round_trips(seconds, op):
            """Round trips of `op` for `seconds` (at most 100,000 of them)."""
            out = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end and len(out) < 100_000:
                t = time.perf_counter()
                op()
                out.append(time.perf_counter() - t)
            return out

        ops = {
            "read (exists)": lambda: pinger.exists("/bench"),
            "write (setData)": lambda: pinger.set("/bench", b"x"),
        }
        idle = {name: round_trips(3, op) for name, op in ops.items()}
        stop = threading.Event()

        def scrape():
            while not stop.is_set():
                four_letter(port, "mntr")

        scraper = threading.Thread(target=scrape)
        scraper.start()
        busy = {name: round_trips(3, op) for name, op in ops.items()}
        stop.set()
        scraper.join()
        for name in ops:
            for when, xs in (("idle", idle[name]), ("while mntr loops", busy[name])):
                xs.sort()
                print(f"{name} round trip {when}: {len(xs)} in 3 s, "
                      f"median {statistics.median(xs) * 1e3:.2f} ms, "
                      f"p99 {xs[int(len(xs) * 0.99)] * 1e3:.2f} ms, max {xs[-1] * 1e3:.2f} ms")
        pinger.close()
        sock.close()
    finally:
        server.terminate()
        server.wait()
        subprocess.run(["rm", "-rf", data], check=False)


if __name__ == "__main__":
    main()
