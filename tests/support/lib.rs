//! Helpers for the whole-system tests: start a real `coord` process (or, with `TARGET=zookeeper`,
//! a real Apache ZooKeeper) on a free port, kill it, restart it on the same data, and speak the
//! client wire protocol by hand ([`raw`]).
//!
//! Every server started here is killed when its [`CoordServer`] is dropped, so a failing test
//! never leaks a process.

pub mod ensemble;
pub mod raw;

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to answer `ruok` after its process starts (a JVM is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(40);
/// How long `stop()` waits for a graceful exit before it kills.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which server implementation the tests run against (`TARGET` env: `coord`, `zookeeper`, or
/// `ensemble`: a 3-member coord ensemble whose first member the tests' clients connect to).
/// Tests of coord's own behaviour (`is_coord`) run only against a standalone coord.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Coord,
    ZooKeeper,
    Ensemble,
}

impl Target {
    /// The target chosen by the `TARGET` environment variable (default: coord).
    pub fn from_env() -> Target {
        match std::env::var("TARGET").as_deref() {
            Ok("zookeeper") | Ok("zk") => Target::ZooKeeper,
            Ok("ensemble") => Target::Ensemble,
            _ => Target::Coord,
        }
    }
}

/// True when the tests run against coord (coord-specific tests check this).
pub fn is_coord() -> bool {
    Target::from_env() == Target::Coord
}

/// Server settings; each maps to a coord flag and, where ZooKeeper has one, a ZooKeeper setting.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// `--tick-ms` / `tickTime`.
    pub tick_ms: u32,
    /// `--reap-interval-ms` / `znode.container.checkIntervalMs`.
    pub reap_interval_ms: u32,
    /// `--max-frame-bytes` / `jute.maxbuffer`.
    pub max_frame_bytes: Option<u32>,
    /// `--max-connections-per-ip` / `maxClientCnxns`.
    pub max_connections_per_ip: Option<u32>,
    /// `--snapshot-every-txns` / `snapCount`.
    pub snapshot_every_txns: Option<u64>,
    /// `--superuser-digest` / `zookeeper.DigestAuthenticationProvider.superDigest`.
    pub superuser_digest: Option<String>,
    /// Extra coord-only flags, appended verbatim (ignored for ZooKeeper).
    pub extra_args: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tick_ms: 100,
            reap_interval_ms: 200,
            max_frame_bytes: None,
            max_connections_per_ip: None,
            snapshot_every_txns: None,
            superuser_digest: None,
            extra_args: Vec::new(),
        }
    }
}

/// Where the data lives: a temp dir we own, or a directory the test owns.
#[derive(Debug)]
enum DataDir {
    Temp(TempDir),
    Given(PathBuf),
}

impl DataDir {
    fn path(&self) -> &Path {
        match self {
            DataDir::Temp(dir) => dir.path(),
            DataDir::Given(path) => path,
        }
    }
}

/// A running server process under test (coord, or ZooKeeper with `TARGET=zookeeper`).
#[derive(Debug)]
pub struct CoordServer {
    target: Target,
    config: ServerConfig,
    data: DataDir,
    /// Config files and captured stderr/stdout live here, never in the data dir.
    scratch: TempDir,
    port: u16,
    child: Option<Child>,
    /// With `TARGET=ensemble`: the members, in place of `child`.
    ensemble: Option<ensemble::Ensemble>,
    /// Number of processes started so far (names the stderr file of each run).
    runs: u32,
}

impl CoordServer {
    /// Starts a server with default test settings on a fresh temp data dir.
    pub fn start() -> io::Result<CoordServer> {
        CoordServer::start_with(ServerConfig::default())
    }

    /// Starts a server with `config` on a fresh temp data dir.
    pub fn start_with(config: ServerConfig) -> io::Result<CoordServer> {
        let data = DataDir::Temp(tempfile::Builder::new().prefix("coord-data").tempdir()?);
        CoordServer::start_on(data, config)
    }

    /// Starts a server with `config` on an existing data directory (it is not deleted on drop).
    pub fn start_in(dir: &Path, config: ServerConfig) -> io::Result<CoordServer> {
        CoordServer::start_on(DataDir::Given(dir.to_path_buf()), config)
    }

    fn start_on(data: DataDir, config: ServerConfig) -> io::Result<CoordServer> {
        let mut server = CoordServer {
            target: Target::from_env(),
            config,
            data,
            scratch: tempfile::Builder::new().prefix("coord-scratch").tempdir()?,
            port: 0,
            child: None,
            ensemble: None,
            runs: 0,
        };
        server.launch()?;
        Ok(server)
    }

    /// Which implementation this is.
    pub fn target(&self) -> Target {
        self.target
    }

    /// `127.0.0.1:PORT`, as a ZooKeeper connect string.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The client address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The data directory (for ZooKeeper, its `version-2` subdirectory holds the files; for an
    /// ensemble, member 1's).
    pub fn data_dir(&self) -> &Path {
        match &self.ensemble {
            Some(ensemble) => ensemble.data_dir(0),
            None => self.data.path(),
        }
    }

    /// The PID of the running process, if any.
    pub fn pid(&self) -> Option<u32> {
        if let Some(ensemble) = &self.ensemble {
            return ensemble.pid(0);
        }
        self.child.as_ref().map(Child::id)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        if let Some(ensemble) = &self.ensemble {
            return ensemble.is_running(0);
        }
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Resident memory of the process in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.pid()?;
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// What the current (or last) run wrote to stderr (member 1's, for an ensemble).
    pub fn stderr_text(&self) -> String {
        if let Some(ensemble) = &self.ensemble {
            return ensemble.stderr(0);
        }
        fs::read_to_string(self.stderr_path(self.runs)).unwrap_or_default()
    }

    /// SIGKILL: the process dies without any chance to flush or clean up.
    pub fn kill9(&mut self) {
        if let Some(ensemble) = &mut self.ensemble {
            for i in 0..ensemble.nodes.len() {
                ensemble.kill9(i);
            }
            return;
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits; kills if it does not exit in time. Returns the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if self.ensemble.is_some() {
            // The members are killed: graceful exits are a standalone matter.
            self.kill9();
            return None;
        }
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// Kills (SIGKILL) the running process, if any, and starts a new one on the same data dir
    /// (on a new free port; read `connect_string()` again).
    pub fn restart(&mut self) -> io::Result<()> {
        self.kill9();
        self.launch()
    }

    /// Kills (SIGKILL) the running process and starts a new one on the same data dir and the
    /// same port, so a client's connection string still names it. The ensemble's members keep
    /// their ports anyway.
    pub fn restart_on_same_port(&mut self) -> io::Result<()> {
        self.kill9();
        if self.target == Target::Ensemble {
            return self.launch_ensemble();
        }
        self.runs += 1;
        let mut child = self.spawn()?;
        match wait_ready(&mut child, self.addr(), READY_TIMEOUT) {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(io::Error::new(
                    err.kind(),
                    format!("{err}; server stderr:\n{}", self.stderr_text()),
                ))
            }
        }
    }

    /// Starts the process on the current data dir and waits until it is ready.
    fn launch(&mut self) -> io::Result<()> {
        if self.target == Target::Ensemble {
            return self.launch_ensemble();
        }
        let mut last_err = None;
        // A free port can be taken between our probe and the server's bind: retry a few times.
        for _ in 0..3 {
            self.port = free_port()?;
            self.runs += 1;
            let mut child = self.spawn()?;
            match wait_ready(&mut child, self.addr(), READY_TIMEOUT) {
                Ok(()) => {
                    self.child = Some(child);
                    return Ok(());
                }
                Err(err) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_err = Some(io::Error::new(
                        err.kind(),
                        format!("{err}; server stderr:\n{}", self.stderr_text()),
                    ));
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("server did not start")))
    }

    /// With `TARGET=ensemble`: (re)starts all three members with this server's settings and
    /// waits for a leader; clients connect to member 1.
    fn launch_ensemble(&mut self) -> io::Result<()> {
        if let Some(ensemble) = &mut self.ensemble {
            for i in 0..ensemble.nodes.len() {
                ensemble.launch(i)?;
            }
            ensemble.wait_for_leader(READY_TIMEOUT)?;
            return Ok(());
        }
        let c = &self.config;
        let mut extra = format!("reap_interval_ms = {}\n", c.reap_interval_ms);
        if let Some(n) = c.max_frame_bytes {
            extra.push_str(&format!("max_frame_bytes = {n}\n"));
        }
        if let Some(n) = c.max_connections_per_ip {
            extra.push_str(&format!("max_connections_per_ip = {n}\n"));
        }
        if let Some(n) = c.snapshot_every_txns {
            extra.push_str(&format!("snapshot_every_txns = {n}\n"));
        }
        if let Some(digest) = &c.superuser_digest {
            extra.push_str(&format!("superuser_digest = \"{digest}\"\n"));
        }
        let ensemble =
            ensemble::Ensemble::start_with_args(3, 0, u64::from(c.tick_ms), &extra, &c.extra_args)?;
        self.port = ensemble.nodes[0].client_addr.port();
        self.ensemble = Some(ensemble);
        Ok(())
    }

    fn stderr_path(&self, run: u32) -> PathBuf {
        self.scratch.path().join(format!("stderr.{run}"))
    }

    fn spawn(&self) -> io::Result<Child> {
        let stderr = File::create(self.stderr_path(self.runs))?;
        let stdout = File::create(self.scratch.path().join(format!("stdout.{}", self.runs)))?;
        let mut command = match self.target {
            Target::Coord | Target::Ensemble => {
                coord_command(self.addr(), self.data_dir(), &self.config)
            }
            Target::ZooKeeper => self.zookeeper_command()?,
        };
        command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|err| io::Error::new(err.kind(), format!("spawn {command:?}: {err}")))
    }

    /// A foreground standalone ZooKeeper (Debian's `zookeeper` package) with an equivalent config.
    fn zookeeper_command(&self) -> io::Result<Command> {
        let config = &self.config;
        let mut cfg = format!(
            "tickTime={}\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=*\nadmin.enableServer=false\n",
            config.tick_ms,
            self.data_dir().display(),
            self.port,
        );
        cfg.push_str(&format!(
            "maxClientCnxns={}\n",
            config.max_connections_per_ip.unwrap_or(60)
        ));
        if let Some(n) = config.snapshot_every_txns {
            cfg.push_str(&format!("snapCount={n}\n"));
        }
        let cfg_path = self.scratch.path().join("zoo.cfg");
        fs::write(&cfg_path, cfg)?;
        let java_dir = Path::new("/usr/share/java");
        let classpath = [
            "/etc/zookeeper/conf".to_string(),
            java_dir.join("zookeeper.jar").display().to_string(),
            java_dir.join("slf4j-simple.jar").display().to_string(),
        ]
        .join(":");
        let mut command = Command::new("java");
        command
            .arg("-Xmx256m")
            .arg("-Dzookeeper.extendedTypesEnabled=true")
            .arg(format!(
                "-Dznode.container.checkIntervalMs={}",
                config.reap_interval_ms
            ))
            .arg("-Dznode.container.maxPerMinute=100000")
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn");
        if let Some(n) = config.max_frame_bytes {
            command.arg(format!("-Djute.maxbuffer={n}"));
        }
        if let Some(digest) = &config.superuser_digest {
            command.arg(format!(
                "-Dzookeeper.DigestAuthenticationProvider.superDigest={digest}"
            ));
        }
        command
            .arg("-cp")
            .arg(classpath)
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(cfg_path);
        Ok(command)
    }
}

impl Drop for CoordServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The coord binary: `$COORD_BIN`, else `<workspace>/target/debug/coord`
/// (`$CARGO_TARGET_DIR/debug/coord` when that is set).
pub fn coord_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("COORD_BIN") {
        return PathBuf::from(bin);
    }
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target"),
    };
    target_dir.join("debug").join("coord")
}

/// Runs `coord certs --dir DIR ARGS...` (a dev CA and certificates) and returns what it
/// printed; panics if it fails.
pub fn coord_certs(dir: &Path, args: &[&str]) -> String {
    let made = Command::new(coord_bin())
        .args(["certs", "--dir"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("coord certs: {e}"));
    assert!(made.status.success(), "coord certs: {made:?}");
    String::from_utf8_lossy(&made.stdout).into_owned()
}

/// The coord command line for `config` (without spawning it).
pub fn coord_command(addr: SocketAddr, data_dir: &Path, config: &ServerConfig) -> Command {
    let mut command = Command::new(coord_bin());
    command
        .arg("--client-addr")
        .arg(addr.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--tick-ms")
        .arg(config.tick_ms.to_string())
        .arg("--reap-interval-ms")
        .arg(config.reap_interval_ms.to_string())
        .arg("--four-letter-words")
        .arg("*");
    if let Some(n) = config.max_frame_bytes {
        command.arg("--max-frame-bytes").arg(n.to_string());
    }
    if let Some(n) = config.max_connections_per_ip {
        command.arg("--max-connections-per-ip").arg(n.to_string());
    }
    if let Some(n) = config.snapshot_every_txns {
        command.arg("--snapshot-every-txns").arg(n.to_string());
    }
    if let Some(digest) = &config.superuser_digest {
        command.arg("--superuser-digest").arg(digest);
    }
    command.args(&config.extra_args);
    command
}

/// The outcome of a coord run that was expected to exit by itself.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

/// Runs coord on `data_dir` and waits for it to exit on its own (e.g. refusing a corrupt log).
/// Fails if it is still running after `timeout` (the process is then killed).
pub fn run_coord_expecting_exit(
    data_dir: &Path,
    config: &ServerConfig,
    timeout: Duration,
) -> io::Result<Exited> {
    let scratch = tempfile::Builder::new().prefix("coord-exit").tempdir()?;
    let stderr_path = scratch.path().join("stderr");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut child = coord_command(addr, data_dir, config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&stderr_path)?)
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            return Ok(Exited { status, stderr });
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = fs::read_to_string(&stderr_path).unwrap_or_default();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("coord still running after {timeout:?}; stderr:\n{stderr}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port that was free a moment ago (bind port 0, read it, close).
pub fn free_port() -> io::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `n` distinct free ports: all held at once while they are picked, so that none is picked
/// twice (one at a time, the system may hand the same one out again).
pub fn free_ports(n: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// Sends a four-letter word and returns the whole answer (the server closes after answering).
pub fn four_letter_word(addr: SocketAddr, word: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(word.as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Polls until the port accepts, `ruok` answers `imok` and `srvr` reports serving, or the
/// process exits, or the deadline.
fn wait_ready(child: &mut Child, addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!(
                "server exited before it was ready: {status}"
            )));
        }
        if let Ok(answer) = four_letter_word(addr, "ruok") {
            // ZooKeeper answers `ruok` before it serves sessions; `srvr` tells the difference.
            let serving = four_letter_word(addr, "srvr")
                .map(|srvr| !srvr.contains("not currently serving"))
                .unwrap_or(false);
            if answer == "imok" && serving {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("server at {addr} not ready after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Connects a `zookeeper-client` session with a short session timeout, retrying until `timeout`.
pub async fn connect_client(
    server: &CoordServer,
    timeout: Duration,
) -> Result<zookeeper_client::Client, zookeeper_client::Error> {
    zookeeper_client::Client::connector()
        .with_session_timeout(Duration::from_secs(4))
        .with_connection_timeout(timeout)
        .connect(&server.connect_string())
        .await
}

/// A well-behaved `zookeeper-client` session that keeps creating and reading nodes under its
/// own prefix until [`Background::finish`]; bad-input tests assert it never saw an error.
#[derive(Debug)]
pub struct Background {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<Result<u64, String>>,
}

impl Background {
    /// Connects and starts the loop; `prefix` is a fresh top-level node name like `/bg`.
    pub async fn start(server: &CoordServer, prefix: &str) -> Result<Background, String> {
        use std::sync::atomic::{AtomicBool, Ordering};
        use zookeeper_client as zk;
        let client = connect_client(server, Duration::from_secs(10))
            .await
            .map_err(|e| format!("background connect: {e}"))?;
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        client
            .create(prefix, b"", &open)
            .await
            .map_err(|e| format!("background create {prefix}: {e}"))?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let prefix = prefix.to_string();
        let task = tokio::spawn(async move {
            let mut done = 0u64;
            // Bounded by the stop flag and a hard cap (no test runs this long).
            let ops_max = 1_000_000u64;
            while !stop_flag.load(Ordering::Relaxed) && done < ops_max {
                let path = format!("{prefix}/n{done}");
                let value = format!("value-{done}");
                let step = async {
                    client.create(&path, value.as_bytes(), &open).await?;
                    let (data, _) = client.get_data(&path).await?;
                    Ok::<_, zk::Error>(data)
                };
                match tokio::time::timeout(Duration::from_secs(10), step).await {
                    Ok(Ok(data)) if data == value.as_bytes() => done += 1,
                    Ok(Ok(data)) => return Err(format!("{path}: read back {data:?}")),
                    Ok(Err(e)) => return Err(format!("{path}: {e}")),
                    Err(_) => return Err(format!("{path}: no answer within 10s")),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let children = client
                .list_children(&prefix)
                .await
                .map_err(|e| format!("final list: {e}"))?;
            if children.len() as u64 != done {
                return Err(format!("{} children, {done} creates", children.len()));
            }
            Ok(done)
        });
        Ok(Background { stop, task })
    }

    /// Stops the loop; returns how many create+read rounds succeeded, or the first failure.
    pub async fn finish(self) -> Result<u64, String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(format!("background task: {e}")),
        }
    }
}

/// Every system test's whole body runs under this deadline, so a server that never answers
/// fails the test instead of hanging the suite.
pub const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a test body under [`TEST_DEADLINE`].
///
/// # Panics
/// When the body does not finish in time (that is the test failing).
pub async fn within_deadline<F: std::future::Future<Output = ()>>(body: F) {
    if tokio::time::timeout(TEST_DEADLINE, body).await.is_err() {
        panic!("test did not finish within {TEST_DEADLINE:?} (a request was never answered?)");
    }
}
