//! `coord certs`: a development CA and certificates for an ensemble's members and clients,
//! written to a folder, with the config lines that use them.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use coord_transport::certs::{CertAuthority, Purpose};
use coord_transport::tls::member_name;
use coord_transport::PeerId;
use time::OffsetDateTime;

use crate::config::SERVER_ID_MAX;

/// What `coord certs` was asked for.
#[derive(Debug, Clone)]
pub struct CertsOptions {
    pub dir: PathBuf,
    pub ensemble: String,
    pub members: u64,
    pub clients: Vec<String>,
    /// Names (DNS names or IP addresses) the client port's certificate carries besides
    /// [`SERVER_NAMES_ALWAYS`].
    pub hosts: Vec<String>,
}

/// The names the secure client port's development certificate always carries: clients on the
/// same machine check one of them (ZooKeeper's Java client and kazoo verify the host name).
pub const SERVER_NAMES_ALWAYS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Writes `text` to a new file (never over an existing one); `private` files are readable by
/// their owner alone.
fn write_new(path: &Path, text: &str, private: bool) -> Result<(), String> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Makes the files and prints what it made; the error says which file or option is at fault.
pub fn run(options: &CertsOptions) -> Result<(), String> {
    if options.members == 0 || options.members > SERVER_ID_MAX {
        return Err(format!("--members must be 1..={SERVER_ID_MAX}"));
    }
    // Checked before any file is written.
    for client in &options.clients {
        // A client's certificate must never pass for a member's (whose one name is
        // member-<id>.<ensemble>.coord), nor for anyone's by wildcard.
        let valid = !client.is_empty()
            && client
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !client.starts_with("member-");
        if !valid {
            return Err(format!(
                "invalid --clients name {client:?}: letters, digits, '-' and '_', not starting \
                 with \"member-\""
            ));
        }
    }

    for host in &options.hosts {
        let valid = !host.is_empty()
            && !host.starts_with("member-")
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':'));
        if !valid {
            return Err(format!(
                "invalid --hosts name {host:?}: a DNS name or an IP address (no wildcard, not \
                 starting with \"member-\")"
            ));
        }
    }

    std::fs::create_dir_all(&options.dir)
        .map_err(|e| format!("cannot create {}: {e}", options.dir.display()))?;
    let dir = options
        .dir
        .canonicalize()
        .map_err(|e| format!("{}: {e}", options.dir.display()))?;
    let ca = CertAuthority::new(&format!("coord development CA for {}", options.ensemble))
        .map_err(|e| e.to_string())?;
    let mut made = Vec::new();
    let ca_pem = dir.join("ca.pem");
    write_new(&ca_pem, ca.cert_pem(), false)?;
    write_new(&dir.join("ca.key"), ca.key_pem(), true)?;
    made.push("ca.pem, ca.key: the CA (keep ca.key away from the members)".to_owned());
    for id in 1..=options.members {
        // Refused early: a name that is not a DNS label cannot be in a certificate.
        let name = member_name(&options.ensemble, PeerId(id));
        let issued = ca
            .member(&options.ensemble, PeerId(id))
            .map_err(|e| format!("member {id}: {e}"))?;
        write_new(
            &dir.join(format!("member-{id}.pem")),
            &issued.cert_pem,
            false,
        )?;
        write_new(&dir.join(format!("member-{id}.key")), &issued.key_pem, true)?;
        made.push(format!(
            "member-{id}.pem, member-{id}.key: member {id} ({name})"
        ));
    }
    let now = OffsetDateTime::now_utc();
    let mut server_names: Vec<String> = SERVER_NAMES_ALWAYS.map(str::to_owned).to_vec();
    server_names.extend(options.hosts.iter().cloned());
    let issued = ca
        .issue_for(
            Purpose::Server,
            &format!("coord client port of {}", options.ensemble),
            server_names.clone(),
            now - time::Duration::minutes(5),
            now + time::Duration::days(825),
        )
        .map_err(|e| format!("the client port's certificate: {e}"))?;
    write_new(&dir.join("server.pem"), &issued.cert_pem, false)?;
    write_new(&dir.join("server.key"), &issued.key_pem, true)?;
    made.push(format!(
        "server.pem, server.key: the secure client port (for {})",
        server_names.join(", ")
    ));
    for client in &options.clients {
        // No subject alternative name: a client is its subject, `CN=<name>`.
        let issued = ca
            .issue_for(
                Purpose::Client,
                client,
                Vec::new(),
                now - time::Duration::minutes(5),
                now + time::Duration::days(825),
            )
            .map_err(|e| format!("client {client}: {e}"))?;
        write_new(
            &dir.join(format!("client-{client}.pem")),
            &issued.cert_pem,
            false,
        )?;
        write_new(
            &dir.join(format!("client-{client}.key")),
            &issued.key_pem,
            true,
        )?;
        made.push(format!(
            "client-{client}.pem, client-{client}.key: client {client} (x509 id \"CN={client}\")"
        ));
    }
    println!("coord certs: in {}", dir.display());
    for line in made {
        println!("  {line}");
    }
    println!("\nIn member <id>'s config, under [ensemble]:");
    println!("  transport = \"quic\"");
    println!("  name = \"{}\"", options.ensemble);
    println!("  tls_ca = \"{}\"", ca_pem.display());
    println!("  tls_cert = \"{}\"", dir.join("member-<id>.pem").display());
    println!("  tls_key = \"{}\"", dir.join("member-<id>.key").display());
    println!("\nFor clients over TLS, in any server's config:");
    println!("  secure_client_addr = \"127.0.0.1:2281\"");
    println!("  [client_tls]");
    println!("  cert = \"{}\"", dir.join("server.pem").display());
    println!("  key = \"{}\"", dir.join("server.key").display());
    println!("  ca = \"{}\"", ca_pem.display());
    println!("  client_auth = \"need\"   # or \"want\", \"none\"");
    println!(
        "\nOr try it: coord dev --servers {} --transport quic --certs {}",
        options.members.min(9),
        dir.display()
    );
    Ok(())
}
