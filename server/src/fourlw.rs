//! Four-letter words on the client port, in ZooKeeper's output formats.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::shared::Shared;

/// The ZooKeeper release whose client API coord speaks, then coord's own version: clients such as
/// kazoo parse the leading x.y.z.
pub fn version() -> String {
    format!("3.9.3-coord-{}", env!("CARGO_PKG_VERSION"))
}

/// The text answering `word`, or ZooKeeper's refusal when `word` is not allowed.
pub fn answer(shared: &Shared, word: &str) -> String {
    if !shared.config.allows_four_letter_word(word) {
        return format!("{word} is not executed because it is not in the whitelist.\n");
    }
    if !shared.mode().serves() && !matches!(word, "ruok" | "conf" | "envi") {
        return "This ZooKeeper instance is not currently serving requests\n".to_owned();
    }
    match word {
        "ruok" => "imok".to_owned(),
        "isro" => "rw".to_owned(),
        "srvr" => server_stats(shared, false),
        "stat" => server_stats(shared, true),
        "mntr" => monitor(shared),
        "cons" => connections(shared),
        "conf" => configuration(shared),
        "envi" => environment(),
        "wchs" => {
            let (conns, paths, total) = shared.watches.lock().counts();
            format!("{conns} connections watching {paths} paths\nTotal watches:{total}\n")
        }
        "wchc" => {
            let mut out = String::new();
            for (session, paths) in shared.watches.lock().by_session() {
                let _ = writeln!(out, "{session}");
                for path in paths {
                    let _ = writeln!(out, "\t{path}");
                }
            }
            out
        }
        "wchp" => {
            let mut out = String::new();
            for (path, sessions) in shared.watches.lock().by_path() {
                let _ = writeln!(out, "{path}");
                for session in sessions {
                    let _ = writeln!(out, "\t{session}");
                }
            }
            out
        }
        "dump" => dump(shared),
        "crst" => {
            for info in shared.conn_infos() {
                info.received.store(0, Ordering::Relaxed);
                info.sent.store(0, Ordering::Relaxed);
            }
            "Connection stats reset.\n".to_owned()
        }
        "srst" => {
            shared.stats.reset();
            "Server stats reset.\n".to_owned()
        }
        "dirs" => {
            let size = dir_size(&shared.config.data_dir);
            format!("datadir_size: {size}\nlogdir_size: {size}\n")
        }
        _ => format!("{word} is not executed because it is not in the whitelist.\n"),
    }
}

/// The node count as ZooKeeper shows it (`DataTree.getNodeCount`): its node map holds the root
/// twice, as "" and as "/", so a fresh server shows 5.
fn zookeeper_node_count(nodes: usize) -> usize {
    nodes + 1
}

fn sent_total(shared: &Shared) -> u64 {
    shared
        .conn_infos()
        .iter()
        .map(|i| i.sent.load(Ordering::Relaxed))
        .sum()
}

fn server_stats(shared: &Shared, with_clients: bool) -> String {
    let mut out = format!("Zookeeper version: {}, built on coord\n", version());
    if with_clients {
        out.push_str("Clients:\n");
        for info in shared.conn_infos() {
            let _ = writeln!(
                out,
                " /{}[1](queued={},recved={},sent={})",
                info.peer,
                info.outbox_queued.load(Ordering::Relaxed),
                info.received.load(Ordering::Relaxed),
                info.sent.load(Ordering::Relaxed)
            );
        }
        out.push('\n');
    }
    let (min, avg, max) = shared.stats.latency_ms();
    let _ = writeln!(out, "Latency min/avg/max: {min:.0}/{avg:.4}/{max:.0}");
    let _ = writeln!(
        out,
        "Received: {}",
        shared.stats.received.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "Sent: {}", sent_total(shared));
    let _ = writeln!(out, "Connections: {}", shared.conn_infos().len());
    let _ = writeln!(out, "Outstanding: 0");
    let _ = writeln!(out, "Zxid: 0x{:x}", shared.last_zxid());
    let _ = writeln!(out, "Mode: {}", shared.mode().name());
    let node_count = zookeeper_node_count(shared.tree.read().node_count());
    let _ = writeln!(out, "Node count: {node_count}");
    out
}

fn monitor(shared: &Shared) -> String {
    let (min, avg, max) = shared.stats.latency_ms();
    // Counters only: mntr is scraped often, and must not walk the tree or the watches under
    // the locks the apply thread needs.
    let (node_count, ephemerals, data_size, digest, digest_zxid) = {
        let tree = shared.tree.read();
        (
            zookeeper_node_count(tree.node_count()),
            tree.ephemeral_count(),
            tree.approximate_data_size(),
            tree.digest(),
            tree.last_zxid(),
        )
    };
    let (_, _, watch_count) = shared.watches.lock().counts();
    let engine = shared.engine.stats();
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key}\t{value}");
    };
    line("zk_version", format!("{}, built on coord", version()));
    line("zk_server_state", shared.mode().name().to_owned());
    line("zk_avg_latency", format!("{avg:.4}"));
    line("zk_max_latency", format!("{max:.0}"));
    line("zk_min_latency", format!("{min:.0}"));
    line(
        "zk_packets_received",
        shared.stats.received.load(Ordering::Relaxed).to_string(),
    );
    line("zk_packets_sent", sent_total(shared).to_string());
    line(
        "zk_num_alive_connections",
        shared.conn_infos().len().to_string(),
    );
    line("zk_outstanding_requests", "0".to_owned());
    line("zk_znode_count", node_count.to_string());
    line("zk_watch_count", watch_count.to_string());
    line("zk_ephemerals_count", ephemerals.to_string());
    line("zk_approximate_data_size", data_size.to_string());
    line("zk_global_sessions", shared.sessions.count().to_string());
    line(
        "zk_uptime",
        shared.started.elapsed().as_millis().to_string(),
    );
    line("zk_last_zxid", format!("0x{:x}", engine.last_zxid.as_u64()));
    line("zk_txns_logged", engine.txns_logged.to_string());
    line("zk_fsync_count", engine.fsyncs.to_string());
    line("zk_snapshot_count", engine.snapshots.to_string());
    // coord's: a digest of every node (path, data, Stat, ACL), kept as the tree changes, so
    // that replicas can be compared at the same zxid.
    line("zk_tree_digest", format!("{digest:016x}"));
    line(
        "zk_tree_digest_zxid",
        format!("0x{:x}", digest_zxid.as_u64()),
    );
    if let Some(stats) = shared.engine.member().map(|m| m.stats()) {
        if let Some(learners) = stats.learners {
            line(
                "zk_learners",
                (learners.followers + learners.observers).to_string(),
            );
            line("zk_followers", learners.followers.to_string());
            line("zk_synced_followers", learners.synced_followers.to_string());
            line("zk_synced_observers", learners.synced_observers.to_string());
            line("zk_pending_syncs", learners.pending_syncs.to_string());
        }
        // As ZooKeeper counts them, a DIFF preceded by a TRUNC is a DIFF; coord's
        // zk_trunc_count tells those apart.
        let syncs = stats.syncs;
        line("zk_diff_count", (syncs.diff + syncs.trunc).to_string());
        line("zk_trunc_count", syncs.trunc.to_string());
        line("zk_snap_count", syncs.snap.to_string());
    }
    if let Some(fds) = open_file_descriptors() {
        line("zk_open_file_descriptor_count", fds.to_string());
    }
    out
}

fn connections(shared: &Shared) -> String {
    let mut out = String::new();
    for info in shared.conn_infos() {
        let _ = writeln!(
            out,
            " /{}[1](queued={},recved={},sent={},sid=0x{:x},est={})",
            info.peer,
            info.outbox_queued.load(Ordering::Relaxed),
            info.received.load(Ordering::Relaxed),
            info.sent.load(Ordering::Relaxed),
            info.session_id.load(Ordering::Relaxed),
            info.established.elapsed().as_millis()
        );
    }
    out.push('\n');
    out
}

fn configuration(shared: &Shared) -> String {
    let c = &shared.config;
    let mut out = String::new();
    let _ = writeln!(out, "clientPort={}", c.client_addr.port());
    let _ = writeln!(out, "clientPortAddress={}", c.client_addr);
    if let Some(secure) = c.secure_client_addr {
        let _ = writeln!(out, "secureClientPort={}", secure.port());
        let _ = writeln!(out, "secureClientPortAddress={secure}");
    }
    let _ = writeln!(out, "dataDir={}", c.data_dir.display());
    let _ = writeln!(out, "dataLogDir={}", c.data_dir.display());
    let _ = writeln!(out, "tickTime={}", c.tick_ms);
    let _ = writeln!(out, "maxClientCnxns={}", c.max_connections_per_ip);
    let _ = writeln!(out, "minSessionTimeout={}", c.min_session_timeout_ms);
    let _ = writeln!(out, "maxSessionTimeout={}", c.max_session_timeout_ms);
    let _ = writeln!(out, "jute.maxbuffer={}", c.max_frame_bytes);
    let _ = writeln!(out, "snapCount={}", c.snapshot_every_txns);
    let _ = writeln!(out, "reapIntervalMs={}", c.reap_interval_ms);
    let _ = writeln!(out, "serverId={}", shared.engine.server_id());
    if let Some(ensemble) = &c.ensemble {
        let _ = writeln!(out, "initLimit={}", ensemble.init_limit_ticks);
        let _ = writeln!(out, "syncLimit={}", ensemble.sync_limit_ticks);
        for server in &ensemble.servers {
            let role = match server.role {
                crate::config::Role::Participant => "participant",
                crate::config::Role::Observer => "observer",
            };
            // ZooKeeper's form: host:quorumPort:electionPort:role;clientAddress. coord carries
            // election and replication on one peer port.
            let _ = writeln!(
                out,
                "server.{}={}:{}:{}:{role};{}",
                server.id,
                server.peer_addr.ip(),
                server.peer_addr.port(),
                server.peer_addr.port(),
                server.client_addr
            );
        }
    }
    out
}

fn environment() -> String {
    let mut out = String::from("Environment:\n");
    let _ = writeln!(out, "zookeeper.version={}, built on coord", version());
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let _ = writeln!(out, "host.name={}", host.trim());
    }
    let _ = writeln!(out, "os.name={}", std::env::consts::OS);
    let _ = writeln!(out, "os.arch={}", std::env::consts::ARCH);
    if let Ok(dir) = std::env::current_dir() {
        let _ = writeln!(out, "user.dir={}", dir.display());
    }
    let _ = writeln!(out, "process.id={}", std::process::id());
    out
}

fn dump(shared: &Shared) -> String {
    let mut out = String::from("SessionTracker dump:\n");
    let _ = writeln!(out, "Global Sessions({}):", shared.sessions.count());
    let tree = shared.tree.read();
    let mut sessions: Vec<(i64, i32)> = tree
        .sessions()
        .map(|(id, info)| (id, info.timeout_ms))
        .collect();
    sessions.sort_unstable();
    for (id, timeout) in sessions {
        let _ = writeln!(out, "0x{id:x}\t{timeout}ms");
    }
    let by_session = tree.ephemerals_by_session();
    out.push_str("ephemeral nodes dump:\n");
    let _ = writeln!(out, "Sessions with Ephemerals ({}):", by_session.len());
    for (session, paths) in by_session {
        let _ = writeln!(out, "0x{session:x}:");
        for path in paths {
            let _ = writeln!(out, "\t{path}");
        }
    }
    out
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn open_file_descriptors() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}

/// Asks the server at `addr` a four-letter word; None if it does not answer within a second.
pub fn ask(addr: std::net::SocketAddr, word: &str) -> Option<String> {
    use std::io::{Read, Write as _};
    let timeout = std::time::Duration::from_secs(1);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.write_all(word.as_bytes()).ok()?;
    let mut answer = String::new();
    // Bounded: the server closes after answering, and the read times out otherwise.
    stream.take(1 << 20).read_to_string(&mut answer).ok()?;
    Some(answer)
}
