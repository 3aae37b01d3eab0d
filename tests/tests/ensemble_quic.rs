//! Members over QUIC with mutual TLS, as real processes: credentials that are not the
//! member's stop it at start-up with the key at fault named, and a member whose certificate
//! comes from another CA is refused by its peers, while they go on committing without it.
//!
//! coord-only (ZooKeeper's quorum TLS is not compared here).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use coord_system_tests::ensemble::{quic_lines, Ensemble};
use coord_system_tests::{coord_bin, free_ports, is_coord};
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

const OPEN: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

fn make_certs(dir: &Path) {
    let made = Command::new(coord_bin())
        .args(["certs", "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let printed = String::from_utf8_lossy(&made.stdout);
    assert!(
        printed.contains("member-3.pem") && printed.contains("tls_cert"),
        "{printed}"
    );
}

/// Starts member 1 of a 3-member QUIC ensemble with `lines` in its `[ensemble]` section and
/// expects it to exit at once: returns its exit code and stderr.
fn start_expecting_exit(lines: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6).unwrap();
    let servers: String = (0..3)
        .map(|i| {
            format!(
                "  {{ id = {}, peer_addr = \"127.0.0.1:{}\", client_addr = \"127.0.0.1:{}\" }},\n",
                i + 1,
                ports[2 * i + 1],
                ports[2 * i]
            )
        })
        .collect();
    let config = dir.path().join("m1.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[ensemble]\nid = 1\n{lines}servers = [\n{servers}]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = Command::new(coord_bin())
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn credentials_that_are_not_the_members_stop_it_at_start_up() {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let good = quic_lines(certs.path(), 1);
    let cases = [
        (
            "another member's certificate and key",
            good.replace("member-1.pem", "member-2.pem")
                .replace("member-1.key", "member-2.key"),
            "ensemble.tls_cert",
            "member-1.coord.coord",
        ),
        (
            "a key that is not the certificate's",
            good.replace("member-1.key", "member-2.key"),
            "ensemble.tls_key",
            "",
        ),
        (
            "a missing CA file",
            good.replace("ca.pem", "missing.pem"),
            "ensemble.tls_ca",
            "missing.pem",
        ),
        (
            "another ensemble's name",
            good.replace("name = \"coord\"", "name = \"elsewhere\""),
            "ensemble.tls_cert",
            "member-1.elsewhere.coord",
        ),
        (
            "no certificate setting",
            good.lines()
                .filter(|l| !l.starts_with("tls_cert"))
                .map(|l| format!("{l}\n"))
                .collect(),
            "ensemble.tls_cert",
            "required",
        ),
    ];
    for (what, lines, key, detail) in cases {
        let (code, stderr) = start_expecting_exit(&lines);
        assert_eq!(code, 2, "{what}: {stderr}");
        assert!(stderr.contains(key), "{what}: {stderr}");
        assert!(stderr.contains(detail), "{what}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{what}: one line: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_from_another_ca_is_refused_and_the_others_go_on() {
    if !is_coord() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let foreign = tempfile::tempdir().unwrap();
    make_certs(foreign.path());
    let mut ensemble = Ensemble::start_quic(3, 100, certs.path()).expect("ensemble starts");
    let leader = ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
    // Member 3 (or the next one that does not lead) comes back with a certificate of another CA:
    // self-consistent, so it starts, but no peer accepts it.
    let rogue = (0..3).rev().find(|i| *i != leader).unwrap();
    let id = ensemble.nodes[rogue].id;
    ensemble.kill9(rogue);
    let config = std::fs::read_to_string(ensemble.config_path(rogue)).unwrap();
    let rogue_config = config.replace(
        &quic_lines(certs.path(), id),
        &quic_lines(foreign.path(), id),
    );
    assert_ne!(config, rogue_config);
    std::fs::write(ensemble.config_path(rogue), rogue_config).unwrap();
    ensemble.launch(rogue).unwrap();

    let others: Vec<String> = (0..3)
        .filter(|i| *i != rogue)
        .map(|i| ensemble.nodes[i].client_addr.to_string())
        .collect();
    let client = timeout(
        Duration::from_secs(20),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .connect(&others.join(",")),
    )
    .await
    .unwrap()
    .unwrap();
    for i in 0..20 {
        client
            .create(&format!("/without-the-rogue-{i}"), b"", &OPEN)
            .await
            .unwrap();
    }
    // The rogue never joins: it does not serve, and its log, and its peers', say why.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let mode = ensemble.mode(rogue);
        assert!(
            !matches!(mode.as_deref(), Some("leader" | "follower")),
            "the rogue joined as {mode:?}"
        );
        sleep(Duration::from_millis(100)).await;
    }
    let refused = |i: usize| ensemble.stderr(i).contains("peer connection refused");
    assert!(refused(rogue), "rogue log:\n{}", ensemble.stderr(rogue));
    assert!(
        (0..3).filter(|i| *i != rogue).any(refused),
        "the members did not log the refusal"
    );
    // Once is enough: a rogue retrying does not fill the log.
    let honest = (0..3).find(|i| *i != rogue).unwrap();
    let lines = ensemble
        .stderr(honest)
        .lines()
        .filter(|l| l.contains("peer connection refused"))
        .count();
    assert!(lines <= 4, "{lines} refusal lines");
}
