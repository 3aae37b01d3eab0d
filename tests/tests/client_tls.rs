//! Clients over TLS, with the `zookeeper-client` crate's TLS against a real coord process:
//! certificate identities in `x509` ACLs, the three `client_auth` modes, a plaintext client on
//! the secure port (refused, nobody else harmed), and the port's certificate rotated by SIGHUP.
//!
//! coord-only: ZooKeeper's secure port needs Java keystores set up another way.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use coord_system_tests::raw::{connect_request, path_watch_body, request};
use coord_system_tests::{
    coord_certs, four_letter_word, free_port, is_coord, CoordServer, ServerConfig,
};
use tempfile::TempDir;
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

/// Runs `coord certs` into `dir`: a CA, the client port's certificate and client certificates
/// for alice, bob and root.
fn make_certs(dir: &Path) {
    let printed = coord_certs(dir, &["--members", "1", "--clients", "alice,bob,root"]);
    assert!(
        printed.contains("server.pem") && printed.contains("[client_tls]"),
        "{printed}"
    );
}

struct TlsServer {
    server: CoordServer,
    certs: TempDir,
    secure_port: u16,
}

impl TlsServer {
    /// A standalone coord with a secure client port whose `[client_tls]` section holds
    /// `settings`, its certificates from `coord certs`.
    fn start(client_auth: &str, settings: &str) -> TlsServer {
        let certs = tempfile::tempdir().unwrap();
        make_certs(certs.path());
        let file = |name: &str| certs.path().join(name).display().to_string();
        let config = certs.path().join("tls.toml");
        std::fs::write(
            &config,
            format!(
                "[client_tls]\ncert = \"{}\"\nkey = \"{}\"\nca = \"{}\"\nclient_auth = \
                 \"{client_auth}\"\n{settings}",
                file("server.pem"),
                file("server.key"),
                file("ca.pem"),
            ),
        )
        .unwrap();
        let secure_port = free_port().unwrap();
        let server = CoordServer::start_with(ServerConfig {
            extra_args: vec![
                "--config".into(),
                config.display().to_string(),
                "--secure-client-addr".into(),
                format!("127.0.0.1:{secure_port}"),
            ],
            ..ServerConfig::default()
        })
        .unwrap();
        TlsServer {
            server,
            certs,
            secure_port,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.certs.path().join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// TLS options trusting `ca_file`, presenting `who`'s client certificate if given.
    fn options(&self, ca_file: &Path, who: Option<&str>) -> zk::TlsOptions {
        let ca = std::fs::read_to_string(ca_file).unwrap();
        let options = zk::TlsOptions::new().with_pem_ca(&ca).unwrap();
        match who {
            Some(who) => options
                .with_pem_identity(
                    &self.read(&format!("client-{who}.pem")),
                    &self.read(&format!("client-{who}.key")),
                )
                .unwrap(),
            None => options,
        }
    }

    async fn connect_with(&self, options: zk::TlsOptions) -> Result<zk::Client, zk::Error> {
        install_ring();
        timeout(
            Duration::from_secs(10),
            zk::Client::connector()
                .with_session_timeout(Duration::from_secs(5))
                .with_tls(options)
                .secure_connect(&format!("127.0.0.1:{}", self.secure_port)),
        )
        .await
        .unwrap_or(Err(zk::Error::Timeout))
    }

    async fn connect(&self, who: Option<&str>) -> Result<zk::Client, zk::Error> {
        self.connect_with(self.options(&self.path("ca.pem"), who))
            .await
    }
}

/// zookeeper-client builds its TLS configuration with rustls's process-wide provider; the
/// workspace enables more than one, so the test picks.
fn install_ring() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TLS connection made by hand (rustls, blocking), trusting `ca_pem`, presenting `identity`
/// (certificate and key PEM) if given. The handshake is driven to its end; in TLS 1.3 a server
/// that refuses the client's certificate says so only after that, on the first read.
fn raw_tls(
    port: u16,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

fn read_frame(stream: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len)?;
    let mut frame = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut frame)?;
    Ok(frame)
}

/// Whether a session can be opened over a hand-made TLS connection: the handshake, a
/// ConnectRequest, and its ConnectResponse. Err says where it stopped.
fn raw_session(
    port: u16,
    ca_pem: &str,
    identity: Option<(String, String)>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut stream = raw_tls(port, ca_pem, identity)?;
    stream.write_all(&framed(&connect_request(2000, 0, &[0; 16])))?;
    read_frame(&mut stream)?;
    Ok(stream)
}

fn x509_only(subject: &str) -> Vec<zk::Acl> {
    vec![zk::Acl::new(
        zk::Permission::ALL,
        zk::AuthId::new("x509", subject),
    )]
}

#[tokio::test]
async fn an_x509_acl_admits_its_subject_and_refuses_another() {
    if !is_coord() {
        return;
    }
    let tls = TlsServer::start("need", "superuser = \"CN=root\"\n");
    let alice = tls.connect(Some("alice")).await.unwrap();
    let acl = x509_only("CN=alice");
    alice
        .create(
            "/alice",
            b"hers",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&acl)),
        )
        .await
        .unwrap();
    assert_eq!(alice.get_data("/alice").await.unwrap().0, b"hers");
    alice.set_data("/alice", b"still hers", None).await.unwrap();

    let bob = tls.connect(Some("bob")).await.unwrap();
    assert_eq!(bob.get_data("/alice").await.unwrap_err(), zk::Error::NoAuth);
    assert_eq!(
        bob.set_data("/alice", b"mine", None).await.unwrap_err(),
        zk::Error::NoAuth
    );

    // The super user by certificate reads and changes anything.
    let root = tls.connect(Some("root")).await.unwrap();
    let (data, _, watcher) = root.get_and_watch_data("/alice").await.unwrap();
    assert_eq!(data, b"still hers");
    // Its watches see what only it may read.
    alice.set_data("/alice", b"still hers", None).await.unwrap();
    let event = timeout(Duration::from_secs(10), watcher.changed())
        .await
        .expect("the super user's data watch never fired");
    assert_eq!(event.event_type, zk::EventType::NodeDataChanged);
    root.set_acl("/alice", &x509_only("CN=bob"), None)
        .await
        .unwrap();
    assert_eq!(bob.get_data("/alice").await.unwrap().0, b"still hers");
    assert_eq!(
        alice.get_data("/alice").await.unwrap_err(),
        zk::Error::NoAuth
    );

    // Nobody on the plaintext port holds a certificate identity.
    let plain = zk::Client::connector()
        .connect(&tls.server.connect_string())
        .await
        .unwrap();
    assert_eq!(
        plain.get_data("/alice").await.unwrap_err(),
        zk::Error::NoAuth
    );
    // Asking again for the x509 identity is OK where a certificate proved one; on a
    // plaintext connection it fails, as in ZooKeeper.
    alice.auth("x509", b"").await.unwrap();
    assert_eq!(
        alice.get_data("/alice").await.unwrap_err(),
        zk::Error::NoAuth
    );
    assert_eq!(
        plain.auth("x509", b"").await.unwrap_err(),
        zk::Error::AuthFailed
    );
    // An x509 id that is not a distinguished name is not an ACL.
    assert_eq!(
        alice
            .create(
                "/bad",
                b"",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&x509_only("alice")))
            )
            .await
            .unwrap_err(),
        zk::Error::InvalidAcl
    );
}

#[tokio::test]
async fn client_auth_need_want_and_none() {
    if !is_coord() {
        return;
    }
    let need = TlsServer::start("need", "");
    let ca = need.read("ca.pem");
    let alice = || Some((need.read("client-alice.pem"), need.read("client-alice.key")));
    // Another CA's certificate for the same subject, CN=alice.
    let rogue = tempfile::tempdir().unwrap();
    make_certs(rogue.path());
    let rogue_alice = || {
        let read = |name: &str| std::fs::read_to_string(rogue.path().join(name)).unwrap();
        Some((read("client-alice.pem"), read("client-alice.key")))
    };
    raw_session(need.secure_port, &ca, alice()).unwrap();
    for (who, identity) in [("no certificate", None), ("another CA's", rogue_alice())] {
        let refused = raw_session(need.secure_port, &ca, identity);
        assert!(
            refused.is_err(),
            "{who} got a session under client_auth = \"need\""
        );
    }
    need.connect(Some("alice")).await.unwrap();

    // "want": a client without a certificate connects, and is nobody.
    let want = TlsServer::start("want", "");
    let alice = want.connect(Some("alice")).await.unwrap();
    alice
        .create(
            "/alice",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::new(&x509_only("CN=alice"))),
        )
        .await
        .unwrap();
    let anonymous = want.connect(None).await.unwrap();
    assert_eq!(
        anonymous.get_data("/alice").await.unwrap_err(),
        zk::Error::NoAuth
    );
    // Optional is not unchecked: a certificate from another CA is refused.
    assert!(
        raw_session(want.secure_port, &want.read("ca.pem"), rogue_alice()).is_err(),
        "another CA's certificate got a session under client_auth = \"want\""
    );

    // "none": certificates are not asked for, so one offered proves nothing.
    let none = TlsServer::start("none", "");
    let alice = none.connect(Some("alice")).await.unwrap();
    assert_eq!(
        alice
            .create(
                "/x",
                b"",
                &zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all())
            )
            .await
            .unwrap_err(),
        zk::Error::InvalidAcl,
        "an `auth` ACL needs an authenticated id, and none was proven"
    );
}

/// The bytes `coord` sends a plaintext client on its secure port, until it closes the socket
/// (None if it is still open after 10 s).
fn plaintext_attempt(port: u16, first: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(first);
    let mut got = Vec::new();
    match stream.read_to_end(&mut got) {
        Ok(_) => Some(got),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(got),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_plaintext_client_on_the_secure_port_is_refused_and_harms_nobody() {
    if !is_coord() {
        return;
    }
    let tls = TlsServer::start("need", "");
    let alice = tls.connect(Some("alice")).await.unwrap();
    alice
        .create(
            "/counter",
            b"0",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();

    // Plaintext clients, a ZooKeeper handshake, a four-letter word and garbage, hammer the
    // secure port while alice goes on writing.
    let port = tls.secure_port;
    let hammer = std::thread::spawn(move || {
        let attempts: [Vec<u8>; 3] = [
            connect_request(5000, 0, &[0; 16]),
            b"ruok".to_vec(),
            vec![0xff; 4096],
        ];
        let mut closed = 0;
        for round in 0..20 {
            let reply = plaintext_attempt(port, &attempts[round % attempts.len()]);
            let reply = reply.expect("the secure port kept a plaintext client's socket open");
            // At most a TLS alert: never a ConnectResponse or "imok".
            assert!(
                reply.is_empty() || reply[0] == 0x15,
                "a plaintext client got {reply:?}"
            );
            closed += 1;
        }
        closed
    });
    let mut writes = 0u32;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hammer.is_finished() && Instant::now() < deadline {
        writes += 1;
        alice
            .set_data("/counter", writes.to_string().as_bytes(), None)
            .await
            .unwrap();
    }
    assert_eq!(hammer.join().unwrap(), 20);
    let (data, _) = alice.get_data("/counter").await.unwrap();
    assert_eq!(data, writes.to_string().as_bytes());
    // And new TLS clients still get in.
    tls.connect(Some("bob")).await.unwrap();
    // The plaintext port names the secure one, as ZooKeeper's `conf` does.
    let conf = four_letter_word(tls.server.addr(), "conf").unwrap();
    assert!(
        conf.contains(&format!("secureClientPort={port}\n")),
        "{conf}"
    );

    // The refusals are logged, but not one line per attempt.
    let log = tls.server.stderr_text();
    let refused = log.matches("TLS client refused").count();
    assert!(
        (1..=3).contains(&refused),
        "{refused} refusal lines for 20 attempts of 3 kinds:\n{log}"
    );
}

/// Replies far larger than the socket takes at once, to a client that stops reading for a
/// while, all arrive whole over TLS. (That a frame with nothing after it leaves the TLS
/// layer's buffer is `conn`'s unit test: here the client rarely catches the server there.)
#[tokio::test]
async fn a_big_reply_over_tls_leaves_whole_with_nothing_after_it() {
    if !is_coord() {
        return;
    }
    let tls = TlsServer::start("need", "");
    let alice = tls.connect(Some("alice")).await.unwrap();
    let blob = vec![b'x'; 900 << 10];
    alice
        .create(
            "/big",
            &blob,
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let identity = Some((tls.read("client-alice.pem"), tls.read("client-alice.key")));
    let port = tls.secure_port;
    let ca = tls.read("ca.pem");
    const READS: i32 = 16;
    let data = tokio::task::spawn_blocking(move || {
        let mut stream = raw_session(port, &ca, identity).unwrap();
        for xid in 1..=READS {
            stream
                .write_all(&framed(&request(xid, 4, &path_watch_body("/big", false))))
                .unwrap();
        }
        // Not reading for a while fills the socket, so the server's writes wait part-way.
        std::thread::sleep(Duration::from_millis(500));
        (1..=READS)
            .map(|_| read_frame(&mut stream).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for reply in data {
        // ReplyHeader (16 bytes), the data's length, the data, then its Stat.
        assert_eq!(&reply[20..20 + blob.len()], &blob[..]);
    }
}

#[tokio::test]
async fn sighup_puts_a_new_client_port_certificate_in_use() {
    if !is_coord() {
        return;
    }
    let tls = TlsServer::start("need", "");
    let old_ca = tls.path("ca.pem");
    // A second CA, and a new certificate for the client port from it.
    let rotated = tempfile::tempdir().unwrap();
    make_certs(rotated.path());
    let new_ca = rotated.path().join("ca.pem");
    let trusting = |ca: &Path| tls.options(ca, Some("alice"));

    let before = tls.connect(Some("alice")).await.unwrap();
    assert!(
        tls.connect_with(trusting(&new_ca)).await.is_err(),
        "a client trusting only the new CA got in before the rotation"
    );

    // A bad file first: the old credentials stay in use.
    std::fs::write(tls.path("server.pem"), "not a certificate").unwrap();
    hangup(&tls.server);
    sleep(Duration::from_millis(500)).await;
    tls.connect_with(trusting(&old_ca)).await.unwrap();

    for name in ["server.pem", "server.key"] {
        std::fs::copy(rotated.path().join(name), tls.path(name)).unwrap();
    }
    hangup(&tls.server);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tls.connect_with(trusting(&new_ca)).await {
            Ok(_) => break,
            Err(e) if Instant::now() > deadline => panic!("never rotated: {e}"),
            Err(_) => sleep(Duration::from_millis(100)).await,
        }
    }
    assert!(
        tls.connect_with(trusting(&old_ca)).await.is_err(),
        "the old certificate is still in use"
    );
    // The connection made before the rotation goes on.
    before
        .create(
            "/still-here",
            b"",
            &zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all()),
        )
        .await
        .unwrap();
    let log = tls.server.stderr_text();
    assert!(log.contains("client TLS credentials not reloaded"), "{log}");
    assert!(log.contains("client TLS credentials reloaded"), "{log}");
}

fn hangup(server: &CoordServer) {
    let pid = server.pid().unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}
