//! `coord --zoo-cfg FILE`: start from an existing ZooKeeper `zoo.cfg` (and the `myid` file in
//! its `dataDir`), so an operator can point coord at the configuration they already have.
//!
//! coord keeps its own files in `<dataDir>/coord` and never touches ZooKeeper's. A key coord
//! does not use is one warning naming it; a key whose meaning coord cannot honour (TLS, dynamic
//! reconfiguration, local sessions, custom auth providers, another election algorithm) is an
//! error naming it.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::ConfigError;

/// What a `zoo.cfg` says, in coord's terms. Addresses are resolved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ZooCfg {
    pub tick_ms: Option<u64>,
    pub init_limit: Option<u32>,
    pub sync_limit: Option<u32>,
    pub client_addr: Option<SocketAddr>,
    /// `<dataDir>/coord`.
    pub data_dir: Option<PathBuf>,
    pub max_client_cnxns: Option<u64>,
    pub min_session_timeout_ms: Option<u64>,
    pub max_session_timeout_ms: Option<u64>,
    pub four_letter_words: Option<Vec<String>>,
    pub jute_maxbuffer: Option<u64>,
    pub snap_count: Option<u64>,
    /// `(id, peer_addr, client_addr, observer)` per `server.N` line.
    pub servers: Vec<(u64, SocketAddr, SocketAddr, bool)>,
    /// From `<dataDir>/myid`, when there are `server.N` lines.
    pub myid: Option<u64>,
    /// One line per key coord does not use.
    pub warnings: Vec<String>,
}

/// Keys whose meaning coord cannot honour: starting as if they were absent would surprise.
const UNSUPPORTED: &[&str] = &[
    "secureClientPort",
    "secureClientPortAddress",
    "dynamicConfigFile",
    "reconfigEnabled",
    "localSessionsEnabled",
    "localSessionsUpgradingEnabled",
    "electionAlg",
    "sslQuorum",
    "portUnification",
    "serverCnxnFactory",
];

/// Key prefixes coord cannot honour.
const UNSUPPORTED_PREFIXES: &[&str] = &["ssl.", "authProvider.", "group.", "weight."];

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, ConfigError> {
    value
        .parse()
        .map_err(|_| invalid("zoo_cfg", format!("{key}={value:?} is not a number")))
}

fn resolve(key: &str, host: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| invalid("zoo_cfg", format!("{key}: cannot resolve {host:?}")))
}

/// Reads `path` and the `myid` next to its data.
pub fn read(path: &Path) -> Result<ZooCfg, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut cfg = parse(&text)?;
    if !cfg.servers.is_empty() {
        let data = cfg
            .data_dir
            .as_ref()
            .and_then(|d| d.parent())
            .ok_or_else(|| invalid("zoo_cfg", "server.N lines need dataDir (for myid)"))?;
        let myid_path = data.join("myid");
        let myid = std::fs::read_to_string(&myid_path).map_err(|source| ConfigError::Read {
            path: myid_path.clone(),
            source,
        })?;
        cfg.myid = Some(number("myid", myid.trim())?);
    }
    Ok(cfg)
}

/// Parses the text of a `zoo.cfg` (Java properties: `key=value`, `#` comments).
pub fn parse(text: &str) -> Result<ZooCfg, ConfigError> {
    let mut cfg = ZooCfg::default();
    let mut client_port: Option<u16> = None;
    let mut client_host: Option<String> = None;
    let mut servers: Vec<(u64, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(invalid(
                "zoo_cfg",
                format!("line {line:?} is not key=value"),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        if UNSUPPORTED.contains(&key) || UNSUPPORTED_PREFIXES.iter().any(|p| key.starts_with(p)) {
            // electionAlg=3 is the only one ZooKeeper still has, and coord's; reconfig off is
            // what coord does anyway.
            let harmless = matches!(
                (key, value),
                ("electionAlg", "3") | ("reconfigEnabled", "false")
            );
            if !harmless {
                return Err(invalid(
                    "zoo_cfg",
                    format!("{key} is not supported by coord"),
                ));
            }
            continue;
        }
        match key {
            "tickTime" => cfg.tick_ms = Some(number(key, value)?),
            "initLimit" => cfg.init_limit = Some(number(key, value)?),
            "syncLimit" => cfg.sync_limit = Some(number(key, value)?),
            "clientPort" => client_port = Some(number(key, value)?),
            "clientPortAddress" => client_host = Some(value.to_owned()),
            "dataDir" => cfg.data_dir = Some(Path::new(value).join("coord")),
            "maxClientCnxns" => cfg.max_client_cnxns = Some(number(key, value)?),
            "minSessionTimeout" => cfg.min_session_timeout_ms = Some(number(key, value)?),
            "maxSessionTimeout" => cfg.max_session_timeout_ms = Some(number(key, value)?),
            "4lw.commands.whitelist" => {
                cfg.four_letter_words =
                    Some(value.split(',').map(|w| w.trim().to_owned()).collect())
            }
            "jute.maxbuffer" => cfg.jute_maxbuffer = Some(number(key, value)?),
            "snapCount" => cfg.snap_count = Some(number(key, value)?),
            _ => match key.strip_prefix("server.") {
                Some(id) => servers.push((number(key, id)?, value.to_owned())),
                None => cfg
                    .warnings
                    .push(format!("zoo.cfg key {key} is not used by coord; ignored")),
            },
        }
    }
    // As ZooKeeper: all interfaces unless clientPortAddress says otherwise.
    if let Some(port) = client_port {
        let host = client_host.clone().unwrap_or_else(|| "0.0.0.0".to_owned());
        cfg.client_addr = Some(resolve("clientPortAddress", &host, port)?);
    }
    for (id, spec) in servers {
        cfg.servers
            .push(server_line(id, &spec, client_port, cfg.client_addr)?);
    }
    Ok(cfg)
}

/// `host:quorumPort:electionPort[:participant|:observer][;[clientHost:]clientPort]`. coord
/// carries election and replication on the quorum port; the election port is not used.
fn server_line(
    id: u64,
    spec: &str,
    client_port: Option<u16>,
    client_addr: Option<SocketAddr>,
) -> Result<(u64, SocketAddr, SocketAddr, bool), ConfigError> {
    let bad = |why: &str| invalid("zoo_cfg", format!("server.{id}={spec:?}: {why}"));
    let (peer, client) = match spec.split_once(';') {
        Some((peer, client)) => (peer, Some(client)),
        None => (spec, None),
    };
    let parts: Vec<&str> = peer.split(':').collect();
    if parts.len() < 3 || parts.len() > 4 {
        return Err(bad("expected host:quorumPort:electionPort[:role]"));
    }
    let quorum_port: u16 = parts[1].parse().map_err(|_| bad("bad quorum port"))?;
    let _election_port: u16 = parts[2].parse().map_err(|_| bad("bad election port"))?;
    let observer = match parts.get(3) {
        None | Some(&"participant") => false,
        Some(&"observer") => true,
        Some(_) => return Err(bad("role must be participant or observer")),
    };
    let peer_addr = resolve(&format!("server.{id}"), parts[0], quorum_port)?;
    let client_addr = match client {
        Some(client) => {
            match client.rsplit_once(':') {
                Some((host, port)) => {
                    let port: u16 = port.parse().map_err(|_| bad("bad client port"))?;
                    resolve(&format!("server.{id}"), host, port)?
                }
                // No host: that server's own (ZooKeeper would listen on every interface there;
                // the member's own listen address is clientPortAddress:clientPort if given).
                None => {
                    let port: u16 = client.parse().map_err(|_| bad("bad client port"))?;
                    SocketAddr::new(peer_addr.ip(), port)
                }
            }
        }
        // The same client port on that server's host.
        None => {
            let port = client_port
                .or(client_addr.map(|a| a.port()))
                .ok_or_else(|| bad("no client port (add ;clientPort or clientPort=)"))?;
            SocketAddr::new(peer_addr.ip(), port)
        }
    };
    Ok((id, peer_addr, client_addr, observer))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# The number of milliseconds of each tick
tickTime=200
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
clientPortAddress=127.0.0.1
maxClientCnxns=100
4lw.commands.whitelist=srvr, mntr,ruok
autopurge.snapRetainCount=3
snapCount=5000
server.1=127.0.0.1:2888:3888
server.2=127.0.0.1:2889:3889:participant;127.0.0.1:2182
server.3=127.0.0.1:2890:3890:observer;2183
";

    #[test]
    fn a_zoo_cfg_maps_to_coord_settings() {
        let cfg = parse(SAMPLE).unwrap();
        assert_eq!(cfg.tick_ms, Some(200));
        assert_eq!((cfg.init_limit, cfg.sync_limit), (Some(10), Some(5)));
        assert_eq!(
            cfg.data_dir,
            Some(PathBuf::from("/var/lib/zookeeper/coord"))
        );
        assert_eq!(cfg.client_addr, Some("127.0.0.1:2181".parse().unwrap()));
        assert_eq!(cfg.max_client_cnxns, Some(100));
        assert_eq!(
            cfg.four_letter_words,
            Some(vec!["srvr".into(), "mntr".into(), "ruok".into()])
        );
        assert_eq!(cfg.snap_count, Some(5000));
        assert_eq!(
            cfg.servers,
            vec![
                (
                    1,
                    "127.0.0.1:2888".parse().unwrap(),
                    "127.0.0.1:2181".parse().unwrap(),
                    false
                ),
                (
                    2,
                    "127.0.0.1:2889".parse().unwrap(),
                    "127.0.0.1:2182".parse().unwrap(),
                    false
                ),
                (
                    3,
                    "127.0.0.1:2890".parse().unwrap(),
                    "127.0.0.1:2183".parse().unwrap(),
                    true
                ),
            ]
        );
        assert_eq!(cfg.warnings.len(), 1);
        assert!(cfg.warnings[0].contains("autopurge.snapRetainCount"));
    }

    #[test]
    fn keys_coord_cannot_honour_are_errors_naming_them() {
        for line in [
            "secureClientPort=2281",
            "dynamicConfigFile=/etc/zk.dyn",
            "localSessionsEnabled=true",
            "ssl.keyStore.location=/k",
            "electionAlg=1",
            "reconfigEnabled=true",
        ] {
            let key = line.split('=').next().unwrap();
            let err = parse(&format!("clientPort=2181\n{line}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{line}: {err}");
        }
        assert!(parse("electionAlg=3\nreconfigEnabled=false\n").is_ok());
        assert!(parse("tickTime=fast\n").is_err());
        assert!(parse("server.1=host-without-ports\n").is_err());
    }
}
