//! Server configuration: built-in defaults, overridden by a TOML file, overridden by flags.

mod zoocfg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

use crate::tls::{ClientAuth, ClientTlsSettings};

/// The four-letter words answered when the configuration does not list any.
pub const FOUR_LETTER_WORDS_DEFAULT: [&str; 4] = ["srvr", "ruok", "isro", "mntr"];

/// The largest `max_frame_bytes` allowed: a txn holds at most one request's data plus a little,
/// and the engine refuses records above 64 MiB.
pub const MAX_FRAME_BYTES_LIMIT: u64 = 32 << 20;
const _: () = assert!(MAX_FRAME_BYTES_LIMIT * 2 <= coord_engine::log::RECORD_PAYLOAD_MAX as u64);

/// The default `max_reply_bytes`.
pub const MAX_REPLY_BYTES_DEFAULT: u64 = 16 << 20;
/// The largest `max_reply_bytes` allowed.
pub const MAX_REPLY_BYTES_LIMIT: u64 = 256 << 20;
/// How far `max_reply_bytes` must exceed `max_frame_bytes`: a getData reply carries the node's
/// data (at most one request frame) plus its Stat and the reply header.
pub const REPLY_HEADROOM_BYTES: u64 = 64 << 10;
const _: () = assert!(MAX_FRAME_BYTES_LIMIT + REPLY_HEADROOM_BYTES <= MAX_REPLY_BYTES_LIMIT);
/// How far a txn may exceed the request it came from.
pub const TXN_HEADROOM_BYTES: u64 = 64 << 10;
const _: () = assert!(
    MAX_FRAME_BYTES_LIMIT + TXN_HEADROOM_BYTES <= coord_engine::log::RECORD_PAYLOAD_MAX as u64
);

/// The default `max_pending_write_bytes`.
pub const MAX_PENDING_WRITE_BYTES_DEFAULT: u64 = 256 << 20;
/// The largest `max_pending_write_bytes` allowed (in KiB it fits a semaphore's u32 permits).
pub const MAX_PENDING_WRITE_BYTES_LIMIT: u64 = 4 << 30;

/// Every four-letter word the server knows.
pub const FOUR_LETTER_WORDS_KNOWN: [&str; 15] = [
    "ruok", "srvr", "stat", "mntr", "cons", "conf", "envi", "wchs", "wchc", "wchp", "dump", "isro",
    "crst", "srst", "dirs",
];

/// coord: a ZooKeeper-compatible coordination service.
///
/// Run with no arguments, coord starts a standalone server on 127.0.0.1:2181 that keeps its data in
/// ./coord-data. Every setting can come from a TOML file (--config) under its snake_case name, or
/// from the flag of the same name in kebab case; a flag wins over the file.
#[derive(Debug, Default, Parser)]
#[command(name = "coord", version, about, long_about)]
pub struct Flags {
    /// TOML file with any of the settings below, by their snake_case names.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Start from an existing ZooKeeper zoo.cfg (and the myid file in its dataDir) instead of
    /// a TOML file; coord keeps its files in <dataDir>/coord. Flags still win.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    pub zoo_cfg: Option<PathBuf>,

    /// Address the ZooKeeper client port listens on [default: 127.0.0.1:2181].
    #[arg(long, value_name = "ADDR")]
    pub client_addr: Option<String>,

    /// Address of a second client port, over TLS, as ZooKeeper's secureClientPort; its
    /// certificates are set in the file's `[client_tls]` section [default: none].
    #[arg(long, value_name = "ADDR")]
    pub secure_client_addr: Option<String>,

    /// Directory of the txn log and snapshots, created if missing [default: coord-data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The basic time unit in milliseconds, as ZooKeeper's tickTime [default: 2000].
    #[arg(long, value_name = "MS")]
    pub tick_ms: Option<u64>,

    /// Smallest session timeout granted to a client [default: 2 ticks].
    #[arg(long, value_name = "MS")]
    pub min_session_timeout_ms: Option<u64>,

    /// Largest session timeout granted to a client [default: 20 ticks].
    #[arg(long, value_name = "MS")]
    pub max_session_timeout_ms: Option<u64>,

    /// Largest request frame accepted, as ZooKeeper's jute.maxbuffer; at most 32 MiB
    /// [default: 1048575].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<u64>,

    /// Largest reply sent; a read whose reply would be larger is answered with
    /// MarshallingError instead. At least max_frame_bytes + 64 KiB, at most 256 MiB
    /// [default: 16 MiB, or max_frame_bytes + 64 KiB if that is larger].
    #[arg(long, value_name = "BYTES")]
    pub max_reply_bytes: Option<u64>,

    /// Bytes of writes proposed and not yet committed, server-wide, as ZooKeeper's
    /// globalOutstandingLimit: past it, connections stop reading requests until the disk
    /// catches up. At least 1 MiB and max_frame_bytes [default: 256 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_pending_write_bytes: Option<u64>,

    /// Most concurrent connections from one IP address; 0 = no limit [default: 60].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<u64>,

    /// Four-letter words answered on the client port, comma-separated; "*" allows all
    /// [default: srvr,ruok,isro,mntr].
    #[arg(long, value_name = "WORDS", value_delimiter = ',')]
    pub four_letter_words: Option<Vec<String>>,

    /// How often empty containers and expired TTL nodes are removed [default: 60000].
    #[arg(long, value_name = "MS")]
    pub reap_interval_ms: Option<u64>,

    /// Take a snapshot after this many txns [default: 100000].
    #[arg(long, value_name = "N")]
    pub snapshot_every_txns: Option<u64>,

    /// The super user, "user:base64(sha1(user:password))" as ZooKeeper's
    /// DigestAuthenticationProvider.superDigest [default: none].
    #[arg(long, value_name = "DIGEST")]
    pub superuser_digest: Option<String>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives [default: info].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Option<Subcommand>,
}

/// What else `coord` can do than run one server.
#[derive(Debug, clap::Subcommand)]
pub enum Subcommand {
    /// Runs a local ensemble on loopback, one process per member, each with its own data dir
    /// under DIR; prints the connect string; Ctrl-C stops them all.
    Dev {
        /// How many members (1, 3, 5, ...; at most 9).
        #[arg(long, default_value_t = 3, value_name = "N")]
        servers: usize,
        /// Where the members' configs, data dirs and logs go.
        #[arg(long, default_value = "coord-dev", value_name = "DIR")]
        dir: PathBuf,
        /// The members' tick in milliseconds.
        #[arg(long = "tick-ms", default_value_t = 2000, value_name = "MS")]
        tick_ms: u64,
        /// Any free ports, instead of 2181.. and 2888.. when those are free.
        #[arg(long)]
        any_ports: bool,
        /// How the members reach each other: "tcp", or "quic" (mutual TLS, with the
        /// certificates `coord certs` made in --certs).
        #[arg(long, default_value = "tcp", value_name = "TRANSPORT")]
        transport: String,
        /// Where `coord certs` put the certificates, for --transport quic.
        #[arg(long, default_value = "coord-certs", value_name = "DIR")]
        certs: PathBuf,
    },
    /// Makes a development CA and certificates for an ensemble's members (and clients) in DIR,
    /// and prints the config lines that use them. For trying QUIC out, not for production:
    /// the CA's key is written beside the certificates.
    Certs {
        /// Where the files go (created if missing; existing files are not overwritten).
        #[arg(long, default_value = "coord-certs", value_name = "DIR")]
        dir: PathBuf,
        /// The ensemble's name, in every member certificate ([ensemble].name).
        #[arg(long, default_value = ENSEMBLE_NAME_DEFAULT, value_name = "NAME")]
        ensemble: String,
        /// Member certificates for ids 1..=N.
        #[arg(long, default_value_t = 3, value_name = "N")]
        members: u64,
        /// Client certificates, one per name (comma-separated); each client's x509 identity is
        /// "CN=<name>".
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        clients: Vec<String>,
        /// More host names or addresses for the secure client port's certificate (server.pem),
        /// which always names localhost, 127.0.0.1 and ::1 (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "NAMES")]
        hosts: Vec<String>,
    },
}

/// The `[ensemble]` section of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnsembleFile {
    id: u64,
    init_limit_ticks: Option<u32>,
    sync_limit_ticks: Option<u32>,
    servers: Vec<ServerFile>,
    /// "tcp" (the default) or "quic".
    transport: Option<String>,
    /// The ensemble's name, in its members' certificates (QUIC).
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    name: Option<String>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerFile {
    id: u64,
    peer_addr: String,
    client_addr: String,
    role: Option<String>,
}

/// The `[client_tls]` section of the TOML file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientTlsFile {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    ca: Option<PathBuf>,
    client_auth: Option<String>,
    superuser: Option<String>,
}

/// The highest member id. It is the top byte of the session ids a member gives out, and a top
/// byte of 0xff marks a TTL node's owner, so 255 is not allowed (ZooKeeper refuses it too when
/// TTL nodes are enabled, which they always are in coord).
pub const SERVER_ID_MAX: u64 = 254;

/// The TOML file: the same settings as the flags, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    client_addr: Option<String>,
    secure_client_addr: Option<String>,
    client_tls: Option<ClientTlsFile>,
    data_dir: Option<PathBuf>,
    tick_ms: Option<u64>,
    min_session_timeout_ms: Option<u64>,
    max_session_timeout_ms: Option<u64>,
    max_frame_bytes: Option<u64>,
    max_reply_bytes: Option<u64>,
    max_pending_write_bytes: Option<u64>,
    max_connections_per_ip: Option<u64>,
    four_letter_words: Option<Vec<String>>,
    reap_interval_ms: Option<u64>,
    snapshot_every_txns: Option<u64>,
    superuser_digest: Option<String>,
    log_level: Option<String>,
    ensemble: Option<EnsembleFile>,
}

/// The settings in force, every value checked.
#[derive(Debug, Clone)]
pub struct Config {
    pub client_addr: SocketAddr,
    /// The client port over TLS, if any; `client_tls` is set with it.
    pub secure_client_addr: Option<SocketAddr>,
    pub client_tls: Option<ClientTlsSettings>,
    pub data_dir: PathBuf,
    pub tick_ms: u64,
    pub min_session_timeout_ms: u64,
    pub max_session_timeout_ms: u64,
    pub max_frame_bytes: usize,
    /// The bound on any one reply frame: a node's data always fits, with room for its Stat.
    pub max_reply_bytes: usize,
    /// The budget of writes proposed and not yet resolved; one request always fits.
    pub max_pending_write_bytes: u64,
    /// 0 = no limit.
    pub max_connections_per_ip: usize,
    /// Lower-case words; contains every known word when "*" was given.
    pub four_letter_words: Vec<String>,
    pub reap_interval_ms: u64,
    pub snapshot_every_txns: u64,
    pub superuser_digest: Option<String>,
    pub log_level: String,
    /// Set when this server is a member of an ensemble.
    pub ensemble: Option<EnsembleConfig>,
    /// Settings read and not used (from a zoo.cfg), one line each, for the log.
    pub warnings: Vec<String>,
}

/// A configuration problem, reported in one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// Merges defaults, the file named by `--config` (if any) and the flags, then checks values.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let file = match (&flags.config, &flags.zoo_cfg) {
            (Some(path), _) => read_file(path)?,
            (None, Some(path)) => {
                let zoo = zoocfg::read(path)?;
                warnings.clone_from(&zoo.warnings);
                from_zoo_cfg(zoo)
            }
            (None, None) => File::default(),
        };
        let mut config = Self::merge(flags, file)?;
        config.warnings = warnings;
        Ok(config)
    }

    fn merge(flags: Flags, file: File) -> Result<Config, ConfigError> {
        let ensemble = file.ensemble.map(ensemble).transpose()?;
        // A member listens where the ensemble's list says, unless told otherwise.
        let member_client_addr = ensemble
            .as_ref()
            .and_then(|e| e.me())
            .map(|me| me.client_addr.to_string());
        let client_addr = flags
            .client_addr
            .or(file.client_addr)
            .or(member_client_addr)
            .unwrap_or_else(|| "127.0.0.1:2181".to_owned());
        let client_addr: SocketAddr = client_addr
            .parse()
            .map_err(|e| invalid("client_addr", format!("{client_addr:?}: {e}")))?;

        let secure_client_addr = flags
            .secure_client_addr
            .or(file.secure_client_addr)
            .map(|addr| {
                addr.parse::<SocketAddr>()
                    .map_err(|e| invalid("secure_client_addr", format!("{addr:?}: {e}")))
            })
            .transpose()?;
        let client_tls =
            match (secure_client_addr, file.client_tls) {
                (Some(_), Some(tls)) => Some(client_tls(tls)?),
                (Some(_), None) => return Err(invalid(
                    "client_tls",
                    "a [client_tls] section (cert, key, ca) is required with secure_client_addr",
                )),
                (None, Some(_)) => {
                    return Err(invalid(
                        "secure_client_addr",
                        "is required with [client_tls]: the port to serve TLS clients on",
                    ))
                }
                (None, None) => None,
            };
        if secure_client_addr == Some(client_addr) && client_addr.port() != 0 {
            return Err(invalid(
                "secure_client_addr",
                "must differ from client_addr (one port cannot serve both)",
            ));
        }

        let data_dir = flags
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("coord-data"));
        if data_dir.as_os_str().is_empty() {
            return Err(invalid("data_dir", "must not be empty"));
        }

        let tick_ms = flags.tick_ms.or(file.tick_ms).unwrap_or(2000);
        if tick_ms == 0 {
            return Err(invalid("tick_ms", "must be at least 1"));
        }
        let min_session_timeout_ms = flags
            .min_session_timeout_ms
            .or(file.min_session_timeout_ms)
            .unwrap_or(tick_ms.saturating_mul(2));
        let max_session_timeout_ms = flags
            .max_session_timeout_ms
            .or(file.max_session_timeout_ms)
            .unwrap_or(tick_ms.saturating_mul(20));
        if min_session_timeout_ms == 0 {
            return Err(invalid("min_session_timeout_ms", "must be at least 1"));
        }
        if max_session_timeout_ms < min_session_timeout_ms {
            return Err(invalid(
                "max_session_timeout_ms",
                format!(
                    "{max_session_timeout_ms} is below min_session_timeout_ms {min_session_timeout_ms}"
                ),
            ));
        }
        if max_session_timeout_ms > i32::MAX as u64 {
            return Err(invalid("max_session_timeout_ms", "must fit in 32 bits"));
        }

        let max_frame_bytes = flags
            .max_frame_bytes
            .or(file.max_frame_bytes)
            .unwrap_or(1_048_575);
        // A connect request alone needs about 50 bytes; the upper bound keeps every txn a request
        // can produce under the engine's record bound.
        if !(64..=MAX_FRAME_BYTES_LIMIT).contains(&max_frame_bytes) {
            return Err(invalid(
                "max_frame_bytes",
                format!("{max_frame_bytes} is outside 64..={MAX_FRAME_BYTES_LIMIT}"),
            ));
        }

        let reply_bytes_min = max_frame_bytes + REPLY_HEADROOM_BYTES;
        let max_reply_bytes = flags
            .max_reply_bytes
            .or(file.max_reply_bytes)
            .unwrap_or(MAX_REPLY_BYTES_DEFAULT.max(reply_bytes_min));
        if !(reply_bytes_min..=MAX_REPLY_BYTES_LIMIT).contains(&max_reply_bytes) {
            return Err(invalid(
                "max_reply_bytes",
                format!(
                    "{max_reply_bytes} is outside {reply_bytes_min}..={MAX_REPLY_BYTES_LIMIT} \
                     (max_frame_bytes + 64 KiB, so that any node's data can be read)"
                ),
            ));
        }

        let max_pending_write_bytes = flags
            .max_pending_write_bytes
            .or(file.max_pending_write_bytes)
            .unwrap_or(MAX_PENDING_WRITE_BYTES_DEFAULT);
        let pending_min = max_frame_bytes.max(1 << 20);
        if !(pending_min..=MAX_PENDING_WRITE_BYTES_LIMIT).contains(&max_pending_write_bytes) {
            return Err(invalid(
                "max_pending_write_bytes",
                format!(
                    "{max_pending_write_bytes} is outside {pending_min}..={MAX_PENDING_WRITE_BYTES_LIMIT} \
                     (at least 1 MiB and max_frame_bytes)"
                ),
            ));
        }

        let max_connections_per_ip = flags
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or(60);

        let words = flags.four_letter_words.or(file.four_letter_words);
        let four_letter_words = match words {
            None => FOUR_LETTER_WORDS_DEFAULT
                .iter()
                .map(|w| (*w).to_owned())
                .collect(),
            Some(words) => four_letter_words(words)?,
        };

        let reap_interval_ms = flags
            .reap_interval_ms
            .or(file.reap_interval_ms)
            .unwrap_or(60_000);
        if reap_interval_ms == 0 {
            return Err(invalid("reap_interval_ms", "must be at least 1"));
        }
        let snapshot_every_txns = flags
            .snapshot_every_txns
            .or(file.snapshot_every_txns)
            .unwrap_or(100_000);
        if snapshot_every_txns == 0 {
            return Err(invalid("snapshot_every_txns", "must be at least 1"));
        }

        let superuser_digest = flags.superuser_digest.or(file.superuser_digest);
        if let Some(digest) = &superuser_digest {
            let valid = digest
                .split_once(':')
                .is_some_and(|(user, hash)| !user.is_empty() && !hash.is_empty());
            if !valid {
                return Err(invalid(
                    "superuser_digest",
                    "expected \"user:base64(sha1(user:password))\"",
                ));
            }
        }

        let log_level = flags
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".to_owned());
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&log_level) {
            return Err(invalid("log_level", format!("{log_level:?}: {e}")));
        }

        Ok(Config {
            client_addr,
            secure_client_addr,
            client_tls,
            data_dir,
            tick_ms,
            min_session_timeout_ms,
            max_session_timeout_ms,
            max_frame_bytes: max_frame_bytes as usize,
            max_reply_bytes: max_reply_bytes as usize,
            max_pending_write_bytes,
            max_connections_per_ip: max_connections_per_ip as usize,
            four_letter_words,
            reap_interval_ms,
            snapshot_every_txns,
            superuser_digest,
            log_level,
            ensemble,
            warnings: Vec::new(),
        })
    }

    /// The bound on bytes queued for one client: one more reply of the largest size fits above
    /// the level at which the connection stops reading requests, so replies are never dropped
    /// for a client that reads; only events for a client that stopped reading can cross it.
    pub fn outbox_bytes_max(&self) -> usize {
        (crate::outbox::OUTBOX_PAUSE_BYTES + 2 * self.max_reply_bytes).max(64 << 20)
    }

    /// The largest txn one request may produce: its own size plus what the server adds (the
    /// `auth` ACL entries expanded into the caller's ids, sequence suffixes, txn framing).
    pub fn txn_bytes_max(&self) -> usize {
        self.max_frame_bytes + TXN_HEADROOM_BYTES as usize
    }

    /// `max_pending_write_bytes` in the KiB units of the write budget.
    pub fn write_budget_units(&self) -> u32 {
        u32::try_from(self.max_pending_write_bytes / 1024).unwrap_or(u32::MAX)
    }

    /// Whether `word` may be answered on the client port.
    pub fn allows_four_letter_word(&self, word: &str) -> bool {
        self.four_letter_words.iter().any(|w| w == word)
    }
}

fn read_file(path: &Path) -> Result<File, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        // toml's message spans several lines (a caret under the source); one line is wanted.
        message: e.message().to_owned()
            + &e.span()
                .map(|s| format!(" (at byte {})", s.start))
                .unwrap_or_default(),
    })
}

/// The settings of a zoo.cfg, as if they came from a TOML file.
fn from_zoo_cfg(zoo: zoocfg::ZooCfg) -> File {
    let ensemble = (!zoo.servers.is_empty()).then(|| EnsembleFile {
        id: zoo.myid.unwrap_or(0),
        init_limit_ticks: zoo.init_limit,
        sync_limit_ticks: zoo.sync_limit,
        servers: zoo
            .servers
            .iter()
            .map(|(id, peer, client, observer)| ServerFile {
                id: *id,
                peer_addr: peer.to_string(),
                client_addr: client.to_string(),
                role: Some(if *observer { "observer" } else { "participant" }.to_owned()),
            })
            .collect(),
        transport: None,
        name: None,
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    });
    File {
        client_addr: zoo.client_addr.map(|a| a.to_string()),
        secure_client_addr: None,
        client_tls: None,
        data_dir: zoo.data_dir,
        tick_ms: zoo.tick_ms,
        min_session_timeout_ms: zoo.min_session_timeout_ms,
        max_session_timeout_ms: zoo.max_session_timeout_ms,
        max_frame_bytes: zoo.jute_maxbuffer,
        max_connections_per_ip: zoo.max_client_cnxns,
        four_letter_words: zoo.four_letter_words,
        snapshot_every_txns: zoo.snap_count,
        ensemble,
        ..File::default()
    }
}

fn ensemble(file: EnsembleFile) -> Result<EnsembleConfig, ConfigError> {
    let transport = peer_transport(&file)?;
    let init_limit_ticks = file.init_limit_ticks.unwrap_or(10);
    let sync_limit_ticks = file.sync_limit_ticks.unwrap_or(5);
    if init_limit_ticks == 0 {
        return Err(invalid("ensemble.init_limit_ticks", "must be at least 1"));
    }
    if sync_limit_ticks == 0 {
        return Err(invalid("ensemble.sync_limit_ticks", "must be at least 1"));
    }
    let mut servers: Vec<ServerEntry> = Vec::with_capacity(file.servers.len());
    for server in file.servers {
        if !(1..=SERVER_ID_MAX).contains(&server.id) {
            return Err(invalid(
                "ensemble.servers",
                format!("id {} is outside 1..={SERVER_ID_MAX}", server.id),
            ));
        }
        let addr = |what: &str, text: &str| {
            text.parse::<SocketAddr>().map_err(|e| {
                invalid(
                    "ensemble.servers",
                    format!("{what} {text:?} of server {}: {e}", server.id),
                )
            })
        };
        let peer_addr = addr("peer_addr", &server.peer_addr)?;
        let client_addr = addr("client_addr", &server.client_addr)?;
        let role = match server.role.as_deref() {
            None | Some("participant") => Role::Participant,
            Some("observer") => Role::Observer,
            Some(other) => {
                return Err(invalid(
                    "ensemble.servers",
                    format!(
                        "role {other:?} of server {}: expected \"participant\" or \"observer\"",
                        server.id
                    ),
                ))
            }
        };
        for seen in &servers {
            let clash = if seen.id == server.id {
                Some(format!("id {} is listed twice", server.id))
            } else if seen.peer_addr == peer_addr || seen.client_addr == client_addr {
                Some(format!(
                    "servers {} and {} share an address",
                    seen.id, server.id
                ))
            } else {
                None
            };
            if let Some(message) = clash {
                return Err(invalid("ensemble.servers", message));
            }
        }
        servers.push(ServerEntry {
            id: server.id,
            peer_addr,
            client_addr,
            role,
        });
    }
    if !servers.iter().any(|s| s.role == Role::Participant) {
        return Err(invalid(
            "ensemble.servers",
            "no participant: a quorum of voters is impossible",
        ));
    }
    if !servers.iter().any(|s| s.id == file.id) {
        return Err(invalid(
            "ensemble.id",
            format!("{} is not among ensemble.servers", file.id),
        ));
    }
    Ok(EnsembleConfig {
        id: file.id,
        init_limit_ticks,
        sync_limit_ticks,
        servers,
        transport,
    })
}

/// `[client_tls]`, checked: the files are read and a TLS configuration built from them, so a
/// missing file or a key that is not the certificate's stops the server at start-up.
fn client_tls(file: ClientTlsFile) -> Result<ClientTlsSettings, ConfigError> {
    let required = |key: &'static str, value: Option<PathBuf>| {
        value.ok_or_else(|| invalid(key, "is required with secure_client_addr"))
    };
    let client_auth = match file.client_auth.as_deref() {
        None | Some("need") => ClientAuth::Need,
        Some("want") => ClientAuth::Want,
        Some("none") => ClientAuth::None,
        Some(other) => {
            return Err(invalid(
                "client_tls.client_auth",
                format!("{other:?} is not \"none\", \"want\" or \"need\""),
            ))
        }
    };
    if let Some(superuser) = &file.superuser {
        if !coord_znode::is_valid_x509_id(superuser) {
            return Err(invalid(
                "client_tls.superuser",
                format!("{superuser:?} is not a distinguished name such as \"CN=admin,O=example\""),
            ));
        }
        if client_auth == ClientAuth::None {
            return Err(invalid(
                "client_tls.superuser",
                "needs client certificates (client_auth = \"want\" or \"need\")",
            ));
        }
    }
    let settings = ClientTlsSettings {
        cert: required("client_tls.cert", file.cert)?,
        key: required("client_tls.key", file.key)?,
        ca: file.ca,
        client_auth,
        superuser: file.superuser,
    };
    check_client_tls(&settings)?;
    Ok(settings)
}

#[cfg(feature = "tls")]
fn check_client_tls(settings: &ClientTlsSettings) -> Result<(), ConfigError> {
    crate::tls::server_config(settings)
        .map(drop)
        .map_err(|e| ConfigError::Invalid {
            key: match e.key {
                "ca" => "client_tls.ca",
                "key" => "client_tls.key",
                _ => "client_tls.cert",
            },
            message: e.message,
        })
}

#[cfg(not(feature = "tls"))]
fn check_client_tls(_: &ClientTlsSettings) -> Result<(), ConfigError> {
    Err(invalid(
        "secure_client_addr",
        "this coord was built without client TLS (the `tls` feature)",
    ))
}

/// The default ensemble name, in member certificates (`member-<id>.coord.coord`).
pub const ENSEMBLE_NAME_DEFAULT: &str = "coord";

/// `[ensemble].transport` and its TLS settings, checked: for QUIC, the files are read and the
/// certificate must be this member's (a mistake is found at start-up, naming its key, not by
/// peers refusing the member one by one).
fn peer_transport(file: &EnsembleFile) -> Result<PeerTransport, ConfigError> {
    match file.transport.as_deref().unwrap_or("tcp") {
        "tcp" => {
            for (key, set) in [
                ("ensemble.tls_ca", file.tls_ca.is_some()),
                ("ensemble.tls_cert", file.tls_cert.is_some()),
                ("ensemble.tls_key", file.tls_key.is_some()),
            ] {
                if set {
                    return Err(invalid(key, "is for transport = \"quic\" (TCP has no TLS)"));
                }
            }
            Ok(PeerTransport::Tcp)
        }
        "quic" => quic_transport(file),
        other => Err(invalid(
            "ensemble.transport",
            format!("{other:?} is not \"tcp\" or \"quic\""),
        )),
    }
}

#[cfg(feature = "quic")]
fn quic_transport(file: &EnsembleFile) -> Result<PeerTransport, ConfigError> {
    use coord_transport::tls::{Credentials, TlsError};
    use coord_transport::PeerId;

    let required = |key: &'static str, value: &Option<PathBuf>| {
        value
            .clone()
            .ok_or_else(|| invalid(key, "is required with transport = \"quic\""))
    };
    let tls = QuicTls {
        name: file
            .name
            .clone()
            .unwrap_or_else(|| ENSEMBLE_NAME_DEFAULT.to_owned()),
        ca: required("ensemble.tls_ca", &file.tls_ca)?,
        cert: required("ensemble.tls_cert", &file.tls_cert)?,
        key: required("ensemble.tls_key", &file.tls_key)?,
    };
    let key_of = |path: &str| {
        if path == tls.ca.display().to_string() {
            "ensemble.tls_ca"
        } else if path == tls.key.display().to_string() {
            "ensemble.tls_key"
        } else {
            "ensemble.tls_cert"
        }
    };
    let checked = Credentials::load(&tls.ca, &tls.cert, &tls.key)
        .and_then(|credentials| credentials.check_member(&tls.name, PeerId(file.id)));
    match checked {
        Ok(()) => Ok(PeerTransport::Quic(tls)),
        Err(e @ (TlsError::Read { .. } | TlsError::Empty { .. })) => {
            let path = match &e {
                TlsError::Read { path, .. } | TlsError::Empty { path, .. } => path.clone(),
                _ => String::new(),
            };
            Err(invalid(key_of(&path), e.to_string()))
        }
        Err(e @ TlsError::BadEnsembleName(_)) => Err(invalid("ensemble.name", e.to_string())),
        Err(e @ TlsError::KeyMismatch(_)) => Err(invalid("ensemble.tls_key", e.to_string())),
        Err(e) => Err(invalid("ensemble.tls_cert", e.to_string())),
    }
}

#[cfg(not(feature = "quic"))]
fn quic_transport(_: &EnsembleFile) -> Result<PeerTransport, ConfigError> {
    Err(invalid(
        "ensemble.transport",
        "this coord was built without QUIC (the `quic` feature)",
    ))
}

/// How a member reaches its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerTransport {
    /// Plain TCP: the network must be trusted.
    Tcp,
    /// QUIC with mutual TLS 1.3: members prove their ids with certificates.
    Quic(QuicTls),
}

/// The QUIC transport's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicTls {
    /// `[ensemble].name`: member `id`'s certificate names `member-<id>.<name>.coord`.
    pub name: String,
    /// `[ensemble].tls_ca`: the ensemble's CA certificate(s), PEM.
    pub ca: PathBuf,
    /// `[ensemble].tls_cert`: this member's certificate (then any intermediates), PEM.
    pub cert: PathBuf,
    /// `[ensemble].tls_key`: this member's private key, PEM.
    pub key: PathBuf,
}

fn four_letter_words(words: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut allowed = Vec::new();
    for word in words {
        let word = word.trim().to_ascii_lowercase();
        if word.is_empty() {
            continue;
        }
        if word == "*" {
            return Ok(FOUR_LETTER_WORDS_KNOWN
                .iter()
                .map(|w| (*w).to_owned())
                .collect());
        }
        if !FOUR_LETTER_WORDS_KNOWN.contains(&word.as_str()) {
            return Err(invalid(
                "four_letter_words",
                format!(
                    "unknown word {word:?}; known: {}",
                    FOUR_LETTER_WORDS_KNOWN.join(", ")
                ),
            ));
        }
        if !allowed.contains(&word) {
            allowed.push(word);
        }
    }
    Ok(allowed)
}

/// A member's part in the ensemble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Participant,
    Observer,
}

/// One member, as every member's configuration lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEntry {
    pub id: u64,
    /// Where its peers reach it: election and replication share this one port.
    pub peer_addr: SocketAddr,
    /// Its ZooKeeper client port.
    pub client_addr: SocketAddr,
    pub role: Role,
}

/// The `[ensemble]` section, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsembleConfig {
    /// This member's id.
    pub id: u64,
    pub init_limit_ticks: u32,
    pub sync_limit_ticks: u32,
    pub servers: Vec<ServerEntry>,
    pub transport: PeerTransport,
}

impl EnsembleConfig {
    pub fn me(&self) -> Option<&ServerEntry> {
        self.servers.iter().find(|s| s.id == self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let flags = Flags::try_parse_from(std::iter::once("coord").chain(args.iter().copied()))
            .expect("flags parse");
        Config::load(flags)
    }

    #[test]
    fn reply_bound_follows_a_larger_frame_bound() {
        let config = parse(&["--max-frame-bytes", &(32u32 << 20).to_string()]).unwrap();
        assert_eq!(config.max_reply_bytes, (32 << 20) + (64 << 10));
        assert!(config.txn_bytes_max() <= coord_engine::log::RECORD_PAYLOAD_MAX);
        assert!(
            config.outbox_bytes_max()
                >= crate::outbox::OUTBOX_PAUSE_BYTES + 2 * config.max_reply_bytes
        );
    }

    #[test]
    fn defaults_are_a_standalone_server_on_2181() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.client_addr.to_string(), "127.0.0.1:2181");
        assert_eq!(config.data_dir, PathBuf::from("coord-data"));
        assert_eq!(config.tick_ms, 2000);
        assert_eq!(config.min_session_timeout_ms, 4000);
        assert_eq!(config.max_session_timeout_ms, 40000);
        assert_eq!(config.max_frame_bytes, 1_048_575);
        assert_eq!(config.max_reply_bytes, 16 << 20);
        assert_eq!(config.max_pending_write_bytes, 256 << 20);
        assert_eq!(config.max_connections_per_ip, 60);
        assert_eq!(config.four_letter_words, ["srvr", "ruok", "isro", "mntr"]);
        assert_eq!(config.reap_interval_ms, 60_000);
        assert_eq!(config.snapshot_every_txns, 100_000);
        assert_eq!(config.superuser_digest, None);
        assert_eq!(config.log_level, "info");
    }

    #[test]
    fn session_timeout_bounds_follow_the_tick() {
        let config = parse(&["--tick-ms", "100"]).unwrap();
        assert_eq!(config.min_session_timeout_ms, 200);
        assert_eq!(config.max_session_timeout_ms, 2000);
    }

    #[test]
    fn flag_wins_over_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coord.toml");
        std::fs::write(
            &path,
            "client_addr = \"127.0.0.1:3000\"\ntick_ms = 50\nfour_letter_words = [\"*\"]\n",
        )
        .unwrap();
        let config = parse(&[
            "--config",
            path.to_str().unwrap(),
            "--client-addr",
            "127.0.0.1:4000",
        ])
        .unwrap();
        assert_eq!(config.client_addr.to_string(), "127.0.0.1:4000");
        assert_eq!(config.tick_ms, 50);
        assert_eq!(
            config.four_letter_words.len(),
            FOUR_LETTER_WORDS_KNOWN.len()
        );
    }

    #[test]
    fn unknown_file_key_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coord.toml");
        std::fs::write(&path, "tick_msec = 5\n").unwrap();
        let err = parse(&["--config", path.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("tick_msec"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    fn ensemble_file(body: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coord.toml");
        std::fs::write(&path, body).unwrap();
        parse(&["--config", path.to_str().unwrap()])
    }

    const SERVERS: &str = r#"servers = [
  { id = 1, peer_addr = "127.0.0.1:2888", client_addr = "127.0.0.1:2181" },
  { id = 2, peer_addr = "127.0.0.1:2889", client_addr = "127.0.0.1:2182" },
  { id = 3, peer_addr = "127.0.0.1:2890", client_addr = "127.0.0.1:2183", role = "observer" },
]
"#;

    #[test]
    fn an_ensemble_member_listens_where_its_entry_says() {
        let config = ensemble_file(&format!("[ensemble]\nid = 2\n{SERVERS}")).unwrap();
        assert_eq!(config.client_addr.to_string(), "127.0.0.1:2182");
        let ensemble = config.ensemble.unwrap();
        assert_eq!(
            (ensemble.init_limit_ticks, ensemble.sync_limit_ticks),
            (10, 5)
        );
        assert_eq!(ensemble.servers[2].role, Role::Observer);
    }

    /// A CA-less pair of files for `[client_tls]`: a self-signed certificate and its key, and
    /// the key of another certificate.
    #[cfg(feature = "tls")]
    fn client_tls_files(dir: &std::path::Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        std::fs::write(dir.join("other.key"), other.serialize_pem()).unwrap();
    }

    #[cfg(feature = "tls")]
    #[test]
    fn client_tls_mistakes_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        client_tls_files(dir.path());
        let d = dir.path().display();
        let section = |lines: &str| {
            format!(
                "secure_client_addr = \"127.0.0.1:2281\"\n[client_tls]\n\
                 cert = \"{d}/server.pem\"\nkey = \"{d}/server.key\"\nca = \"{d}/ca.pem\"\n{lines}"
            )
        };
        let good = ensemble_file(&section(
            "client_auth = \"want\"\nsuperuser = \"CN=root\"\n",
        ))
        .unwrap();
        let tls = good.client_tls.unwrap();
        assert_eq!(tls.client_auth, ClientAuth::Want);
        assert_eq!(tls.superuser.as_deref(), Some("CN=root"));
        assert_eq!(
            good.secure_client_addr,
            Some("127.0.0.1:2281".parse().unwrap())
        );
        let need = ensemble_file(&section("")).unwrap();
        assert_eq!(need.client_tls.unwrap().client_auth, ClientAuth::Need);

        for (body, key) in [
            (
                "secure_client_addr = \"127.0.0.1:2281\"\n".to_owned(),
                "invalid client_tls:",
            ),
            (
                format!("[client_tls]\ncert = \"{d}/server.pem\"\n"),
                "invalid secure_client_addr:",
            ),
            (
                section("").replace("server.pem", "missing.pem"),
                "invalid client_tls.cert:",
            ),
            (
                section("").replace("server.key", "other.key"),
                "invalid client_tls.key:",
            ),
            (
                section("").replace(&format!("ca = \"{d}/ca.pem\"\n"), ""),
                "invalid client_tls.ca:",
            ),
            (
                section("client_auth = \"maybe\"\n"),
                "invalid client_tls.client_auth:",
            ),
            (
                section("superuser = \"root\"\n"),
                "invalid client_tls.superuser:",
            ),
            (
                section("client_auth = \"none\"\nsuperuser = \"CN=root\"\n"),
                "invalid client_tls.superuser:",
            ),
            (
                section("").replace("2281", "2181"),
                "invalid secure_client_addr:",
            ),
        ] {
            let err = ensemble_file(&body).unwrap_err().to_string();
            assert!(err.contains(key), "{body}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
        // "none" needs no CA.
        let none =
            section("client_auth = \"none\"\n").replace(&format!("ca = \"{d}/ca.pem\"\n"), "");
        assert!(ensemble_file(&none).is_ok());
    }

    #[test]
    fn bad_ensembles_name_their_key() {
        for (body, key) in [
            (format!("[ensemble]\nid = 4\n{SERVERS}"), "ensemble.id"),
            (
                format!("[ensemble]\nid = 1\n{}", SERVERS.replace("id = 2", "id = 1")),
                "ensemble.servers",
            ),
            (
                format!("[ensemble]\nid = 1\n{}", SERVERS.replace(":2889", ":2888")),
                "ensemble.servers",
            ),
            (
                format!("[ensemble]\nid = 1\n{}", SERVERS.replace("observer", "boss")),
                "ensemble.servers",
            ),
            (
                "[ensemble]\nid = 1\nservers = [{ id = 1, peer_addr = \"127.0.0.1:1\", client_addr = \"127.0.0.1:2\", role = \"observer\" }]\n".to_string(),
                "ensemble.servers",
            ),
            (
                format!("[ensemble]\nid = 1\nsync_limit_ticks = 0\n{SERVERS}"),
                "ensemble.sync_limit_ticks",
            ),
        ] {
            let err = ensemble_file(&body).unwrap_err().to_string();
            assert!(err.contains(key), "{body}: {err}");
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn bad_values_name_their_key() {
        for (args, key) in [
            (&["--client-addr", "nowhere"][..], "client_addr"),
            (&["--tick-ms", "0"][..], "tick_ms"),
            (
                &[
                    "--min-session-timeout-ms",
                    "500",
                    "--max-session-timeout-ms",
                    "100",
                ][..],
                "max_session_timeout_ms",
            ),
            (&["--max-frame-bytes", "3"][..], "max_frame_bytes"),
            (&["--max-reply-bytes", "1048575"][..], "max_reply_bytes"),
            (
                &["--max-frame-bytes", "4096", "--max-reply-bytes", "69631"][..],
                "max_reply_bytes",
            ),
            (
                &["--max-pending-write-bytes", "1000"][..],
                "max_pending_write_bytes",
            ),
            (
                &["--four-letter-words", "ruok,nope"][..],
                "four_letter_words",
            ),
            (&["--superuser-digest", "nocolon"][..], "superuser_digest"),
            (&["--log-level", "[[["][..], "log_level"),
        ] {
            let err = parse(args).unwrap_err().to_string();
            assert!(err.contains(key), "{args:?}: {err}");
        }
    }
}
