//! The `coord` command line: defaults, help, and one-line configuration errors with exit code 2.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn coord(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coord"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run coord")
}

fn assert_config_error(output: &Output, key: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains(key), "{key} not named in: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
}

#[test]
fn help_documents_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = coord(&["--help"], dir.path());
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--config",
        "--client-addr",
        "--data-dir",
        "--tick-ms",
        "--min-session-timeout-ms",
        "--max-session-timeout-ms",
        "--max-frame-bytes",
        "--max-reply-bytes",
        "--max-pending-write-bytes",
        "--max-connections-per-ip",
        "--four-letter-words",
        "--reap-interval-ms",
        "--snapshot-every-txns",
        "--superuser-digest",
        "--log-level",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn unknown_config_key_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("coord.toml");
    std::fs::write(&config, "tick_ms = 100\nclient_adr = \"127.0.0.1:1\"\n").unwrap();
    let output = coord(&["--config", config.to_str().unwrap()], dir.path());
    assert_config_error(&output, "client_adr");
}

#[test]
fn bad_values_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = coord(&["--tick-ms", "0"], dir.path());
    assert_config_error(&output, "tick_ms");
    let output = coord(&["--client-addr", "not-an-address"], dir.path());
    assert_config_error(&output, "client_addr");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "max_frame_bytes = \"big\"\n").unwrap();
    let output = coord(&["--config", config.to_str().unwrap()], dir.path());
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn unusable_data_dir_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let output = coord(
        &[
            "--data-dir",
            file.to_str().unwrap(),
            "--client-addr",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    assert_config_error(&output, "data_dir");
}

#[test]
fn second_server_on_the_same_data_dir_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut first = Command::new(env!("CARGO_BIN_EXE_coord"))
        .args(["--client-addr", &addr, "--data-dir", "data"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "first server never listened");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = coord(
        &["--client-addr", "127.0.0.1:0", "--data-dir", "data"],
        dir.path(),
    );
    let _ = first.kill();
    let _ = first.wait();
    assert_config_error(&output, "data_dir");
    assert!(String::from_utf8_lossy(&output.stderr).contains("locked"));
}

#[test]
fn no_arguments_starts_a_standalone_server_with_local_data() {
    // The embedded default listens on 127.0.0.1:2181; skip only if that port is taken here.
    if TcpListener::bind("127.0.0.1:2181").is_err() {
        eprintln!("port 2181 is in use; the default cannot be exercised on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coord"))
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = false;
    while Instant::now() < deadline {
        if let Ok(mut stream) = std::net::TcpStream::connect("127.0.0.1:2181") {
            use std::io::{Read, Write};
            stream.write_all(b"ruok").unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            answered = reply == "imok";
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(answered, "no imok from the default server");
    assert!(dir.path().join("coord-data").is_dir());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .find(|l| l.contains("listening on 127.0.0.1:2181"))
        .unwrap_or_else(|| panic!("no listening line in: {stderr}"));
    assert!(line.contains("coord-data"), "{line}");
}
