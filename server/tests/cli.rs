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

#[test]
fn dev_runs_a_local_ensemble_until_stopped() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coord"))
        .args([
            "dev",
            "--servers",
            "3",
            "--tick-ms",
            "100",
            "--dir",
            "ens",
            "--any-ports",
        ])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run coord dev");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut connect = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("coord dev reports a leader");
        if let Some(string) = line.strip_prefix("connect string: ") {
            connect = Some(string.to_owned());
        }
        if line.ends_with("the ensemble serves") {
            break;
        }
    }
    let addrs: Vec<String> = connect.unwrap().split(',').map(str::to_owned).collect();
    assert_eq!(addrs.len(), 3);
    let srvr = |addr: &str| {
        let mut stream = std::net::TcpStream::connect(addr).ok()?;
        stream.write_all(b"srvr").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let read_modes = || -> Vec<String> {
        addrs
            .iter()
            .map(|a| srvr(a).unwrap_or_default())
            .map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Mode: "))
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    // With a 100 ms tick a member on a loaded machine may miss its leader for a moment and
    // sync again: the ensemble must settle, not hold still.
    let settle = Instant::now() + Duration::from_secs(20);
    let mut modes = read_modes();
    while modes.iter().filter(|m| *m == "follower").count() != 2 && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
        modes = read_modes();
    }
    assert_eq!(
        modes.iter().filter(|m| *m == "leader").count(),
        1,
        "{modes:?}"
    );
    assert_eq!(
        modes.iter().filter(|m| *m == "follower").count(),
        2,
        "{modes:?}"
    );
    for id in 1..=3 {
        assert!(dir.path().join(format!("ens/m{id}")).is_dir());
    }

    // SIGTERM (as Ctrl-C) stops every member.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "coord dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    for addr in &addrs {
        assert!(srvr(addr).is_none(), "member at {addr} still answers");
    }
}

#[test]
fn dev_refuses_an_unreasonable_size() {
    let dir = tempfile::tempdir().unwrap();
    let output = coord(&["dev", "--servers", "12"], dir.path());
    assert_config_error(&output, "--servers");
}

#[test]
fn a_zoo_cfg_starts_coord_with_its_data_beside_zookeepers() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let zk_data = dir.path().join("zk");
    let cfg = dir.path().join("zoo.cfg");
    std::fs::write(
        &cfg,
        format!(
            "tickTime=100\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             4lw.commands.whitelist=ruok,srvr\nautopurge.purgeInterval=1\n",
            zk_data.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_coord"))
        .args(["--zoo-cfg", cfg.to_str().unwrap()])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = false;
    while Instant::now() < deadline && !answered {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            stream.write_all(b"ruok").unwrap();
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            answered = reply == "imok";
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(answered, "no imok on the zoo.cfg's clientPort");
    assert!(
        zk_data.join("coord").is_dir(),
        "data not in <dataDir>/coord"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("autopurge.purgeInterval"),
        "no warning for an unused key: {stderr}"
    );

    std::fs::write(&cfg, format!("clientPort={port}\nsecureClientPort=2281\n")).unwrap();
    let output = coord(&["--zoo-cfg", cfg.to_str().unwrap()], dir.path());
    assert_config_error(&output, "secureClientPort");
}
