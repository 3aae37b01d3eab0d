//! coord-client against the `zookeeper-client` crate, on the same coord server: ops/s for each
//! workload, both clients measured in alternating rounds of one run (the machine is shared and
//! noisy: read the ratio, not the absolute numbers).
//!
//! `cargo build --release -p coord && cargo bench -p coord-system-tests --bench clients [SECONDS] [ROUNDS]`

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coord_system_tests::CoordServer;

/// Operations one task may run in one round at most, whatever the time: keeps every loop
/// bounded in count as well as in time.
const OPS_PER_TASK_MAX: u64 = 5_000_000;

#[derive(Clone, Copy)]
enum Work {
    GetData,
    SetData,
}

#[derive(Clone, Copy)]
enum Which {
    Coord,
    ZookeeperClient,
}

async fn round(connect: &str, which: Which, work: Work, tasks: usize, span: Duration) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + span;
    let mut handles = Vec::new();
    match which {
        Which::Coord => {
            let client = coord_client::Client::connect(connect, Duration::from_secs(10))
                .await
                .unwrap();
            for _ in 0..tasks {
                let (client, done) = (client.clone(), done.clone());
                handles.push(tokio::spawn(async move {
                    let mut n = 0;
                    while n < OPS_PER_TASK_MAX && Instant::now() < deadline {
                        match work {
                            Work::GetData => drop(client.get_data("/bench").await.unwrap()),
                            Work::SetData => {
                                client.set_data("/bench", b"x", -1).await.unwrap();
                            }
                        }
                        n += 1;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                }));
            }
        }
        Which::ZookeeperClient => {
            let client = zookeeper_client::Client::connect(connect).await.unwrap();
            for _ in 0..tasks {
                let (client, done) = (client.clone(), done.clone());
                handles.push(tokio::spawn(async move {
                    let mut n = 0;
                    while n < OPS_PER_TASK_MAX && Instant::now() < deadline {
                        match work {
                            Work::GetData => drop(client.get_data("/bench").await.unwrap()),
                            Work::SetData => {
                                client.set_data("/bench", b"x", None).await.unwrap();
                            }
                        }
                        n += 1;
                    }
                    done.fetch_add(n, Ordering::Relaxed);
                }));
            }
        }
    }
    let started = Instant::now();
    for handle in handles {
        handle.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    let seconds: f64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(3.0);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    if std::env::var_os("COORD_BIN").is_none() {
        let release =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/coord");
        if !release.exists() {
            eprintln!("build the server first: cargo build --release -p coord");
            std::process::exit(2);
        }
        std::env::set_var("COORD_BIN", release);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = CoordServer::start().expect("server starts");
    let connect = server.connect_string();
    runtime.block_on(async {
        let setup = coord_client::Client::connect(&connect, Duration::from_secs(10))
            .await
            .unwrap();
        let open = coord_client::Acl::open_unsafe();
        setup
            .create(
                "/bench",
                &[7; 100],
                &open,
                coord_client::CreateMode::Persistent,
            )
            .await
            .unwrap();
    });
    let span = Duration::from_secs_f64(seconds);
    println!("{seconds} s per round, {rounds} rounds, median ops/s; coord server {connect}");
    println!(
        "{:<28} {:>14} {:>18} {:>7}",
        "workload", "coord-client", "zookeeper-client", "ratio"
    );
    for (name, work, tasks) in [
        ("getData, 1 in flight", Work::GetData, 1),
        ("getData, 64 in flight", Work::GetData, 64),
        ("setData, 1 in flight", Work::SetData, 1),
        ("setData, 64 in flight", Work::SetData, 64),
    ] {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for r in 0..rounds {
            // Alternate which goes first, so neither always gets the warmer machine.
            let order = if r % 2 == 0 {
                [Which::Coord, Which::ZookeeperClient]
            } else {
                [Which::ZookeeperClient, Which::Coord]
            };
            for which in order {
                let rate = runtime.block_on(round(&connect, which, work, tasks, span));
                match which {
                    Which::Coord => ours.push(rate),
                    Which::ZookeeperClient => theirs.push(rate),
                }
            }
        }
        let (ours, theirs) = (median(ours), median(theirs));
        println!(
            "{name:<28} {ours:>14.0} {theirs:>18.0} {:>6.2}x",
            ours / theirs
        );
    }
}
