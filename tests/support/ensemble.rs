//! A local ensemble of real `coord` processes on loopback for the fault tests: each member with
//! its own data dir and free ports, its config file written the way an operator would, and
//! every process killed when the [`Ensemble`] drops.

use std::fs::{self, File};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::{coord_bin, four_letter_word, free_ports};

/// How long a member may take to start answering `ruok`.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// One member: its ports, its process (while it runs) and its files.
#[derive(Debug)]
pub struct Node {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub peer_addr: SocketAddr,
    config: PathBuf,
    data_dir: PathBuf,
    child: Option<Child>,
    runs: u32,
    /// Stopped with SIGSTOP.
    paused: bool,
}

/// A local ensemble under test.
#[derive(Debug)]
pub struct Ensemble {
    pub nodes: Vec<Node>,
    root: TempDir,
    /// Given to every member on its command line.
    args: Vec<String>,
}

impl Ensemble {
    /// Starts `n` members with `tick_ms` and extra top-level TOML lines, and waits until one
    /// leads and all serve.
    pub fn start(n: u64, tick_ms: u64, extra: &str) -> io::Result<Ensemble> {
        Ensemble::start_with_observers(n, 0, tick_ms, extra)
    }

    /// As [`Ensemble::start`], with `observers` more members (the last ids) that never vote.
    pub fn start_with_observers(
        voters: u64,
        observers: u64,
        tick_ms: u64,
        extra: &str,
    ) -> io::Result<Ensemble> {
        Ensemble::start_with_args(voters, observers, tick_ms, extra, &[])
    }

    /// As [`Ensemble::start_with_observers`], every member also given `args` on its command
    /// line.
    pub fn start_with_args(
        voters: u64,
        observers: u64,
        tick_ms: u64,
        extra: &str,
        args: &[String],
    ) -> io::Result<Ensemble> {
        // A free port can be taken (by another test's connection, say) between our probe and
        // a member's bind: then everything starts again on other ports, a few times.
        Ensemble::start_members(voters, observers, tick_ms, extra, args, &|_| String::new())
    }

    /// `n` members whose peers talk QUIC with mutual TLS, with the certificates `coord certs`
    /// wrote to `certs` (member `id`'s in `member-<id>.pem`, ensemble name "coord").
    pub fn start_quic(n: u64, tick_ms: u64, certs: &Path) -> io::Result<Ensemble> {
        Ensemble::start_quic_with(n, tick_ms, "", certs)
    }

    /// As [`Ensemble::start_quic`], with `extra` top-level lines in every member's config.
    pub fn start_quic_with(
        n: u64,
        tick_ms: u64,
        extra: &str,
        certs: &Path,
    ) -> io::Result<Ensemble> {
        let certs = certs.to_path_buf();
        Ensemble::start_members(n, 0, tick_ms, extra, &[], &move |id| quic_lines(&certs, id))
    }

    /// As [`Ensemble::start_with_args`], with `member_lines(id)` added to member `id`'s
    /// `[ensemble]` section.
    pub fn start_members(
        voters: u64,
        observers: u64,
        tick_ms: u64,
        extra: &str,
        args: &[String],
        member_lines: &dyn Fn(u64) -> String,
    ) -> io::Result<Ensemble> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Ensemble::try_start(voters, observers, tick_ms, extra, args, member_lines) {
                Err(err) if attempt < 3 && err.to_string().contains("Address already in use") => {
                    continue
                }
                started => return started,
            }
        }
    }

    fn try_start(
        voters: u64,
        observers: u64,
        tick_ms: u64,
        extra: &str,
        args: &[String],
        member_lines: &dyn Fn(u64) -> String,
    ) -> io::Result<Ensemble> {
        let n = voters + observers;
        let root = tempfile::Builder::new()
            .prefix("coord-ensemble")
            .tempdir()?;
        let ports = free_ports(2 * n as usize)?;
        let mut addrs = Vec::new();
        for (id, pair) in (1..=n).zip(ports.chunks(2)) {
            let client = SocketAddr::from(([127, 0, 0, 1], pair[0]));
            let peer = SocketAddr::from(([127, 0, 0, 1], pair[1]));
            addrs.push((id, client, peer));
        }
        let servers: String = addrs
            .iter()
            .map(|(id, client, peer)| {
                let role = if *id > voters { "observer" } else { "participant" };
                format!(
                    "  {{ id = {id}, peer_addr = \"{peer}\", client_addr = \"{client}\", role = \"{role}\" }},\n"
                )
            })
            .collect();
        let mut nodes = Vec::new();
        for (id, client_addr, peer_addr) in &addrs {
            let data_dir = root.path().join(format!("m{id}"));
            let config = root.path().join(format!("m{id}.toml"));
            let lines = member_lines(*id);
            let text = format!(
                "data_dir = \"{}\"\ntick_ms = {tick_ms}\nfour_letter_words = [\"*\"]\n{extra}\n\
                 [ensemble]\nid = {id}\n{lines}servers = [\n{servers}]\n",
                data_dir.display()
            );
            fs::write(&config, text)?;
            nodes.push(Node {
                id: *id,
                client_addr: *client_addr,
                peer_addr: *peer_addr,
                config,
                data_dir,
                child: None,
                runs: 0,
                paused: false,
            });
        }
        let mut ensemble = Ensemble {
            nodes,
            root,
            args: args.to_vec(),
        };
        for i in 0..ensemble.nodes.len() {
            ensemble.launch(i)?;
        }
        ensemble.wait_for_leader(START_TIMEOUT)?;
        Ok(ensemble)
    }

    /// Every member's client address, as a connect string.
    pub fn connect_string(&self) -> String {
        self.nodes
            .iter()
            .map(|n| n.client_addr.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s config file (rewrite it, then [`Ensemble::launch`] to restart it so).
    pub fn config_path(&self, i: usize) -> &Path {
        &self.nodes[i].config
    }

    pub fn data_dir(&self, i: usize) -> &Path {
        &self.nodes[i].data_dir
    }

    /// Starts member `i` (again) on its data dir.
    pub fn launch(&mut self, i: usize) -> io::Result<()> {
        let node = &mut self.nodes[i];
        node.runs += 1;
        let stderr = File::create(
            self.root
                .path()
                .join(format!("m{}.stderr.{}", node.id, node.runs)),
        )?;
        let child = Command::new(coord_bin())
            .arg("--config")
            .arg(&node.config)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()?;
        node.child = Some(child);
        node.paused = false;
        let (id, addr) = (node.id, node.client_addr);
        let deadline = Instant::now() + START_TIMEOUT;
        while four_letter_word(addr, "ruok").map_or(true, |a| a != "imok") {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "member {id} did not start: {}",
                    self.stderr(i)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// What member `i`'s current run wrote to stderr.
    pub fn stderr(&self, i: usize) -> String {
        let node = &self.nodes[i];
        fs::read_to_string(
            self.root
                .path()
                .join(format!("m{}.stderr.{}", node.id, node.runs)),
        )
        .unwrap_or_default()
    }

    /// Member `i`'s process id, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.nodes[i].child.is_some()
    }

    /// SIGKILL member `i`. A paused member dies paused: it never runs again, so what sits
    /// unread in its sockets dies with it.
    pub fn kill9(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            node.paused = false;
        }
    }

    /// SIGSTOP member `i`: it stays alive but does nothing, as a machine that hangs.
    pub fn pause(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            signal(child, "-STOP");
            self.nodes[i].paused = true;
        }
    }

    /// SIGHUP member `i` (a QUIC member reloads its certificates).
    pub fn hup(&self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            signal(child, "-HUP");
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&mut self, i: usize) {
        if let Some(child) = &self.nodes[i].child {
            signal(child, "-CONT");
            self.nodes[i].paused = false;
        }
    }

    /// The mode member `i` reports in `srvr` (`leader`, `follower`, `observer`), or None if it
    /// does not answer or does not serve.
    pub fn mode(&self, i: usize) -> Option<String> {
        if self.nodes[i].child.is_none() || self.nodes[i].paused {
            return None;
        }
        let srvr = four_letter_word(self.nodes[i].client_addr, "srvr").ok()?;
        srvr.lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_owned)
    }

    /// One `mntr` value of member `i`.
    pub fn mntr(&self, i: usize, key: &str) -> Option<String> {
        let mntr = four_letter_word(self.nodes[i].client_addr, "mntr").ok()?;
        mntr.lines().find_map(|l| {
            let (k, v) = l.split_once('\t')?;
            (k == key).then(|| v.to_owned())
        })
    }

    /// Waits until exactly one running member leads and every running one serves; returns the
    /// leader's index.
    pub fn wait_for_leader(&self, timeout: Duration) -> io::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let modes: Vec<Option<String>> = (0..self.nodes.len()).map(|i| self.mode(i)).collect();
            let running: Vec<usize> = (0..self.nodes.len())
                .filter(|i| self.nodes[*i].child.is_some() && !self.nodes[*i].paused)
                .collect();
            let leaders: Vec<usize> = running
                .iter()
                .copied()
                .filter(|i| modes[*i].as_deref() == Some("leader"))
                .collect();
            let all_serve = running.iter().all(|i| {
                matches!(
                    modes[*i].as_deref(),
                    Some("leader" | "follower" | "observer")
                )
            });
            if leaders.len() == 1 && all_serve {
                return Ok(leaders[0]);
            }
            if Instant::now() > deadline {
                let logs: String = (0..self.nodes.len())
                    .map(|i| {
                        let stderr = self.stderr(i);
                        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
                        let tail: Vec<&str> = tail.into_iter().rev().collect();
                        format!("--- member {} ---\n{}\n", self.nodes[i].id, tail.join("\n"))
                    })
                    .collect();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no single leader within {timeout:?}: {modes:?}\n{logs}"),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill")
        .arg(sig)
        .arg(child.id().to_string())
        .status();
}

impl Drop for Ensemble {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// Member `id`'s `[ensemble]` lines for QUIC with the certificates in `certs`.
pub fn quic_lines(certs: &Path, id: u64) -> String {
    format!(
        "transport = \"quic\"\nname = \"coord\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        certs.join("ca.pem").display(),
        certs.join(format!("member-{id}.pem")).display(),
        certs.join(format!("member-{id}.key")).display(),
    )
}
