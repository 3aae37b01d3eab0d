"""Four-letter words on the client port, answered like ZooKeeper's."""

import re

import pytest

from conftest import Server


@pytest.fixture(scope="module")
def srv4():
    """A fresh server with every word allowed, so counts (watches, ephemerals) are exact."""
    s = Server(four_letter_words="*").start()
    yield s
    s.cleanup()


@pytest.fixture
def busy(srv4, zk_factory):
    """One session holding an ephemeral and two watches on srv4."""
    zk = zk_factory(srv4)
    zk.create("/fl_e", ephemeral=True)
    zk.get("/fl_e", watch=lambda e: None)
    zk.exists("/fl_missing", watch=lambda e: None)
    yield zk
    zk.stop()


def mntr(srv):
    out = {}
    for line in srv.four_letter("mntr").splitlines():
        if line:
            key, _, value = line.partition("\t")
            out[key] = value
    return out


def test_ruok(srv4):
    assert srv4.four_letter("ruok") == "imok"


def test_srvr(srv4, busy):
    out = srv4.four_letter("srvr")
    assert out.startswith("Zookeeper version: ")
    assert "Mode: standalone\n" in out
    assert re.search(r"^Zxid: 0x[0-9a-f]+$", out, re.M)
    assert re.search(r"^Latency min/avg/max: \d+/[\d.]+/\d+$", out, re.M)
    assert re.search(r"^Node count: \d+$", out, re.M)
    assert re.search(r"^Connections: \d+$", out, re.M)
    zxid = int(re.search(r"^Zxid: 0x([0-9a-f]+)$", out, re.M).group(1), 16)
    assert zxid == busy.exists("/fl_e").czxid


def test_stat_lists_clients(srv4, busy):
    out = srv4.four_letter("stat")
    assert "Clients:\n" in out
    assert " /127.0.0.1:" in out
    assert "Mode: standalone\n" in out


def test_mntr(srv4, busy):
    m = mntr(srv4)
    for key in [
        "zk_version",
        "zk_avg_latency",
        "zk_max_latency",
        "zk_min_latency",
        "zk_packets_received",
        "zk_packets_sent",
        "zk_num_alive_connections",
        "zk_outstanding_requests",
        "zk_znode_count",
        "zk_watch_count",
        "zk_ephemerals_count",
        "zk_approximate_data_size",
    ]:
        assert key in m, key
    assert m["zk_server_state"] == "standalone"
    assert int(m["zk_ephemerals_count"]) == 1
    assert int(m["zk_watch_count"]) == 2
    # /, /zookeeper, /zookeeper/config, /zookeeper/quota and /fl_e at least.
    assert int(m["zk_znode_count"]) >= 5
    assert int(m["zk_num_alive_connections"]) >= 1


def test_cons_shows_session(srv4, busy):
    out = srv4.four_letter("cons")
    assert f"sid=0x{busy.client_id[0]:x}" in out
    assert "/127.0.0.1:" in out


def test_conf(srv4):
    out = srv4.four_letter("conf")
    assert f"clientPort={srv4.port}\n" in out
    assert f"tickTime={srv4.tick_ms}\n" in out
    assert f"minSessionTimeout={srv4.min_session_timeout_ms}\n" in out
    assert f"maxSessionTimeout={srv4.max_session_timeout_ms}\n" in out
    assert "maxClientCnxns=60\n" in out


def test_envi(srv4):
    out = srv4.four_letter("envi")
    assert out.startswith("Environment:\n")
    assert "zookeeper.version=" in out


def test_watch_words(srv4, busy):
    sid = f"0x{busy.client_id[0]:x}"
    assert srv4.four_letter("wchs") == "1 connections watching 2 paths\nTotal watches:2\n"
    wchc = srv4.four_letter("wchc")
    assert sid in wchc
    assert "\t/fl_e\n" in wchc and "\t/fl_missing\n" in wchc
    wchp = srv4.four_letter("wchp")
    assert f"/fl_e\n\t{sid}\n" in wchp
    assert f"/fl_missing\n\t{sid}\n" in wchp


def test_dump_lists_ephemerals(srv4, busy):
    out = srv4.four_letter("dump")
    assert "Sessions with Ephemerals (1):" in out
    assert f"0x{busy.client_id[0]:x}:\n\t/fl_e\n" in out


def test_isro(srv4):
    assert srv4.four_letter("isro") == "rw"


def test_word_not_allowed_is_refused_clearly(server_factory):
    s = server_factory(four_letter_words="ruok,srvr")
    assert s.four_letter("ruok") == "imok"
    assert "Mode: standalone" in s.four_letter("srvr")
    for word in ["mntr", "stat", "conf", "dump", "wchs"]:
        assert s.four_letter(word) == f"{word} is not executed because it is not in the whitelist.\n"


def test_default_words(server_factory):
    """With no configuration coord allows srvr,ruok,isro,mntr (ZooKeeper's default is srvr)."""
    s = server_factory(four_letter_words="srvr,ruok,isro,mntr")
    assert s.four_letter("isro") == "rw"
    assert "zk_version" in s.four_letter("mntr")
    assert s.four_letter("envi") == "envi is not executed because it is not in the whitelist.\n"
