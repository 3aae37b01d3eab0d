//! Prints the latency of one durable log append (a 4 KiB record, one batch, one `sync_data`)
//! through [`coord_engine::log::Log`], next to a plain append + `fdatasync` to a growing file
//! (what the log did before it preallocated its segments), measured in one run.
//!
//! `cargo run --release -p coord-engine --example log_append -- [DIR] [COUNT]`; DIR defaults
//! to a temporary directory under `target/`, which should be on the disk a server would use.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use coord_engine::log::Log;
use coord_engine::{Epoch, Zxid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let count: u32 = args.next().map_or(Ok(2000), |n| n.parse())?;
    let payload = vec![0xA5u8; 4096];
    for round in 1..=2 {
        let dir = tempfile::tempdir_in(&base)?;
        let mut log = Log::open(dir.path(), |_, _| {})?;
        let mut times = Vec::with_capacity(count as usize);
        for n in 1..=count {
            let zxid = Zxid::new(Epoch(1), n);
            let start = Instant::now();
            log.append_batch(&[(zxid, &payload)])?;
            times.push(start.elapsed());
        }
        report(round, "log (preallocated segments)", &mut times);

        let path = dir.path().join("plain");
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut times = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let start = Instant::now();
            file.write_all(&payload)?;
            file.sync_data()?;
            times.push(start.elapsed());
        }
        report(round, "plain append + fdatasync", &mut times);
    }
    Ok(())
}

fn report(round: u32, what: &str, times: &mut [Duration]) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let total: Duration = times.iter().sum();
    println!(
        "round {round}: {what:28} p50 {:>6.0} µs  p90 {:>6.0} µs  p99 {:>6.0} µs  max {:>6.0} µs  {:>6.0} appends/s",
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
        times.len() as f64 / total.as_secs_f64()
    );
}
