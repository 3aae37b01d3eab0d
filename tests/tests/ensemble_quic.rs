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
use coord_system_tests::{coord_bin, coord_certs, free_ports, is_coord};
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

const OPEN: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());

fn make_certs(dir: &Path) {
    let printed = coord_certs(dir, &[]);
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

/// Waits until member `i`'s log holds `text` `times` times.
async fn logged(ensemble: &Ensemble, i: usize, text: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = ensemble.stderr(i).matches(text).count();
        if seen >= times {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {} logged {text:?} {seen} times:\n{}",
            ensemble.nodes[i].id,
            ensemble.stderr(i)
        );
        sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_on_sighup_without_taking_the_ensemble_down() {
    if !is_coord() {
        return;
    }
    let old = tempfile::tempdir().unwrap();
    make_certs(old.path());
    let new = tempfile::tempdir().unwrap();
    make_certs(new.path());
    let read = |dir: &Path, name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let mut ensemble = Ensemble::start_quic(3, 100, old.path()).expect("ensemble starts");
    let client = timeout(
        Duration::from_secs(20),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .connect(&ensemble.connect_string()),
    )
    .await
    .unwrap()
    .unwrap();
    client.create("/before", b"", &OPEN).await.unwrap();

    // A bad new file changes nothing, and says why.
    let member_1 = read(old.path(), "member-1.pem");
    std::fs::write(old.path().join("member-1.pem"), "not a certificate").unwrap();
    ensemble.hup(0);
    logged(&ensemble, 0, "not reloaded", 1).await;
    std::fs::write(old.path().join("member-1.pem"), member_1).unwrap();

    // Rotation to a new CA: every member trusts both CAs, then members 1 and 3 take
    // certificates of the new CA, each on a SIGHUP, while the ensemble keeps serving.
    let bundle = read(old.path(), "ca.pem") + &read(new.path(), "ca.pem");
    std::fs::write(old.path().join("ca.pem"), bundle).unwrap();
    for i in 0..3 {
        ensemble.hup(i);
        logged(&ensemble, i, "credentials reloaded", 1).await;
    }
    for id in [1, 3] {
        for ext in ["pem", "key"] {
            let name = format!("member-{id}.{ext}");
            std::fs::write(old.path().join(&name), read(new.path(), &name)).unwrap();
        }
        let i = (id - 1) as usize;
        ensemble.hup(i);
        logged(&ensemble, i, "credentials reloaded", 2).await;
        client
            .create(&format!("/after-rotating-{id}"), b"", &OPEN)
            .await
            .unwrap();
    }

    // Member 2 comes back trusting the new CA alone: it can join only if members 1 and 3 now
    // present their new certificates, and accept its own.
    ensemble.kill9(1);
    let config = std::fs::read_to_string(ensemble.config_path(1)).unwrap();
    let rotated = config.replace(&quic_lines(old.path(), 2), &quic_lines(new.path(), 2));
    assert_ne!(config, rotated);
    std::fs::write(ensemble.config_path(1), rotated).unwrap();
    ensemble.launch(1).unwrap();
    ensemble
        .wait_for_leader(Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("member 2 did not join with the new CA: {e}"));
    let on_2 = timeout(
        Duration::from_secs(20),
        zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .connect(&ensemble.nodes[1].client_addr.to_string()),
    )
    .await
    .unwrap()
    .unwrap();
    on_2.sync("/").await.unwrap();
    for path in ["/before", "/after-rotating-1", "/after-rotating-3"] {
        assert!(on_2.check_stat(path).await.unwrap().is_some(), "{path}");
    }
}

#[test]
fn coord_certs_refuses_a_client_name_that_could_pass_for_a_member() {
    if !is_coord() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let made = Command::new(coord_bin())
        .args(["certs", "--clients", "alice,member-1.coord.coord", "--dir"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(made.status.code(), Some(2), "{made:?}");
    assert!(String::from_utf8_lossy(&made.stderr).contains("--clients"));
    assert!(!out.exists(), "files were written before the refusal");
}
