//! `coord dev --servers N`: a local ensemble on loopback for trying replication out. One process
//! per member (this same binary, started with a config file it writes), each with its own data
//! dir under the dev dir; Ctrl-C stops them all.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The most members `coord dev` starts.
pub const DEV_SERVERS_MAX: usize = 9;

/// What `coord dev` was asked for.
#[derive(Debug, Clone)]
pub struct DevOptions {
    pub servers: usize,
    pub dir: PathBuf,
    pub tick_ms: u64,
    /// Any free ports rather than ZooKeeper's usual ones.
    pub any_ports: bool,
    pub transport: DevTransport,
}

/// How the dev members reach each other.
#[derive(Debug, Clone)]
pub enum DevTransport {
    Tcp,
    /// QUIC with mutual TLS, with the certificates `coord certs` wrote to `certs` (for the
    /// default ensemble name).
    Quic {
        certs: PathBuf,
    },
}

/// Why the dev ensemble could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("invalid --servers: {0} is outside 1..={DEV_SERVERS_MAX}")]
    Servers(usize),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DevError {
    let what = what.into();
    move |source| DevError::Io { what, source }
}

/// `preferred` if given and it can be bound now, else any free port.
fn port_near(preferred: Option<u16>) -> io::Result<u16> {
    if let Some(preferred) = preferred {
        if TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
            return Ok(preferred);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

struct Running {
    id: usize,
    child: Child,
    client_addr: SocketAddr,
    secure_addr: Option<SocketAddr>,
    log: PathBuf,
}

/// Writes the members' configs, starts them, prints how to connect, and runs until `stop`
/// resolves; then stops every member (SIGTERM, then SIGKILL after a grace period).
pub async fn run(
    options: DevOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), DevError> {
    let n = options.servers;
    if !(1..=DEV_SERVERS_MAX).contains(&n) {
        return Err(DevError::Servers(n));
    }
    let dir = &options.dir;
    std::fs::create_dir_all(dir).map_err(io_err(format!("cannot create {}", dir.display())))?;
    // Ports near ZooKeeper's usual ones when they are free, so the connect string is familiar.
    let mut members = Vec::new();
    for i in 0..n {
        let usual = |base: u16| (!options.any_ports).then_some(base + i as u16);
        let client = port_near(usual(2181)).map_err(io_err("choosing a client port"))?;
        let peer = port_near(usual(2888)).map_err(io_err("choosing a peer port"))?;
        // Over QUIC, with the client port's certificate `coord certs` made, clients may use
        // TLS too.
        let secure = match &options.transport {
            DevTransport::Quic { certs } if certs.join("server.pem").exists() => {
                Some(port_near(usual(2281)).map_err(io_err("choosing a secure client port"))?)
            }
            _ => None,
        };
        members.push((
            i + 1,
            SocketAddr::from(([127, 0, 0, 1], client)),
            SocketAddr::from(([127, 0, 0, 1], peer)),
            secure.map(|port| SocketAddr::from(([127, 0, 0, 1], port))),
        ));
    }
    let servers: String = members
        .iter()
        .map(|(id, client, peer, _)| {
            format!("  {{ id = {id}, peer_addr = \"{peer}\", client_addr = \"{client}\" }},\n")
        })
        .collect();
    let exe = std::env::current_exe().map_err(io_err("finding the coord binary"))?;
    let mut running: Vec<Running> = Vec::new();
    for (id, client_addr, _, secure_addr) in &members {
        let data_dir = absolute(&dir.join(format!("m{id}")))?;
        let config = dir.join(format!("m{id}.toml"));
        let transport = match &options.transport {
            DevTransport::Tcp => String::new(),
            DevTransport::Quic { certs } => {
                let certs = absolute(certs)?;
                let file = |name: String| certs.join(name).display().to_string();
                format!(
                    "transport = \"quic\"\nname = \"{}\"\ntls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
                    crate::config::ENSEMBLE_NAME_DEFAULT,
                    file("ca.pem".into()),
                    file(format!("member-{id}.pem")),
                    file(format!("member-{id}.key")),
                )
            }
        };
        let client_tls = match (&options.transport, secure_addr) {
            (DevTransport::Quic { certs }, Some(addr)) => {
                let certs = absolute(certs)?;
                let file = |name: &str| certs.join(name).display().to_string();
                format!(
                    "secure_client_addr = \"{addr}\"\n\n[client_tls]\ncert = \"{}\"\n\
                     key = \"{}\"\nca = \"{}\"\nclient_auth = \"want\"\n\n",
                    file("server.pem"),
                    file("server.key"),
                    file("ca.pem"),
                )
            }
            _ => String::new(),
        };
        let text = format!(
            "# Written by `coord dev`; rewritten at each run.\n\
             data_dir = \"{}\"\ntick_ms = {}\nfour_letter_words = [\"*\"]\n{client_tls}\n\
             [ensemble]\nid = {id}\n{transport}servers = [\n{servers}]\n",
            data_dir.display(),
            options.tick_ms
        );
        std::fs::write(&config, text).map_err(io_err(format!("writing {}", config.display())))?;
        let log = dir.join(format!("m{id}.log"));
        let stderr =
            std::fs::File::create(&log).map_err(io_err(format!("creating {}", log.display())))?;
        let child = Command::new(&exe)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(io_err(format!("starting member {id}")));
        match child {
            Ok(child) => running.push(Running {
                id: *id,
                child,
                client_addr: *client_addr,
                secure_addr: *secure_addr,
                log,
            }),
            Err(err) => {
                stop_all(&mut running).await;
                return Err(err);
            }
        }
    }
    let connect: Vec<String> = running.iter().map(|r| r.client_addr.to_string()).collect();
    println!(
        "coord dev: {n} member{} on loopback, data and logs in {}",
        if n == 1 { "" } else { "s" },
        dir.display()
    );
    for member in &running {
        let secure = member
            .secure_addr
            .map(|addr| format!(", TLS {addr}"))
            .unwrap_or_default();
        println!(
            "  member {}: client {}{secure}  (log {})",
            member.id,
            member.client_addr,
            member.log.display()
        );
    }
    println!("connect string: {}", connect.join(","));
    println!(
        "  e.g. /usr/share/zookeeper/bin/zkCli.sh -server {}",
        connect.join(",")
    );
    let secure: Vec<String> = running
        .iter()
        .filter_map(|r| r.secure_addr.map(|a| a.to_string()))
        .collect();
    if !secure.is_empty() {
        println!(
            "connect string over TLS (client certificates from `coord certs --clients`, \
             optional): {}",
            secure.join(",")
        );
    }
    println!("Ctrl-C stops every member.");

    tokio::pin!(stop);
    let mut announced = false;
    let mut poll = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = poll.tick() => {
                for member in &mut running {
                    if let Ok(Some(status)) = member.child.try_wait() {
                        eprintln!(
                            "coord dev: member {} exited ({status}); see {}",
                            member.id,
                            member.log.display()
                        );
                    }
                }
                running.retain_mut(|m| matches!(m.child.try_wait(), Ok(None)));
                if running.is_empty() {
                    return Ok(());
                }
                if !announced {
                    if let Some(leader) = leader(&running) {
                        println!("member {leader} leads; the ensemble serves");
                        announced = true;
                    }
                }
            }
        }
    }
    println!("coord dev: stopping");
    stop_all(&mut running).await;
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, DevError> {
    if path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().map_err(io_err("reading the current dir"))?;
    Ok(cwd.join(path))
}

/// The id of the member that reports `Mode: leader`, once every member serves.
fn leader(running: &[Running]) -> Option<usize> {
    let mut leader = None;
    for member in running {
        let mode = crate::fourlw::ask(member.client_addr, "srvr")?;
        let mode = mode
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))?
            .to_owned();
        match mode.as_str() {
            "leader" => leader = Some(member.id),
            "follower" | "observer" => {}
            _ => return None,
        }
    }
    leader
}

async fn stop_all(running: &mut Vec<Running>) {
    for member in running.iter() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(member.child.id().to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        running.retain_mut(|m| matches!(m.child.try_wait(), Ok(None)));
        if running.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for member in running.iter_mut() {
        let _ = member.child.kill();
        let _ = member.child.wait();
    }
}
