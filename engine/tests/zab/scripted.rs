//! Scripted scenarios as data: each file in `engine/src/zab/testdata/` is a script of commands
//! on a [`Cluster`], each followed by the trace or state it must produce (the `datadriven`
//! format; `REWRITE=1 cargo test -p coord-engine --test zab scripted` rewrites the expected
//! parts, which then need reading before they are committed).
//!
//! Commands:
//! - `cluster voters=3 [observers=1] [diff_txns_max=N] [compacted_tail_txns=N] [accepted=E
//!   current=E] [tick_ms=500]`: a new cluster; every disk starts with those epochs.
//! - `run [ms=2000]`: deliver and tick for that long; prints deliveries (not heartbeats) and
//!   the actions that change a disk or a role.
//! - `step [n=1]`: deliver the next `n` messages in flight.
//! - `write`: the leader proposes each line of the input.
//! - `crash id=N`, `start id=N`, `isolate id=N`, `cut from=N to=M` (one way), `lose
//!   kind=KIND` (every message of that kind, as the trace names it, is lost), `heal` (undoes
//!   both), `replay kind=KIND [to=N]` (every message of that kind sent so far, to `N` or to
//!   anyone, arrives again, stale),
//!   `slow id=N` (appends wait), `fsync id=N` (the disk catches up and is fast again),
//!   `compact id=N` (snapshot and drop the log it covers), `damage id=N [n=1]` (the last `n`
//!   durable log records are lost, and the member knows it).
//! - `state`: one line per member. `check`: the invariants hold (prints `ok`).

use std::collections::BTreeSet;
use std::time::Duration;

use coord_engine::zab::PeerId;
use coord_engine::Epoch;
use datadriven::TestCase;

use super::cluster::{message_line, txns, z, Cluster, Disk};

/// Runs one scenario file of `engine/src/zab/testdata/`.
pub fn run_file(name: &str) {
    let path = format!("{}/src/zab/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    datadriven::walk(&path, |file| {
        let mut cluster: Option<Cluster> = None;
        file.run(|case| execute(&mut cluster, case));
    });
}

/// Every scenario file, so that a test can check none is left out.
pub fn files() -> BTreeSet<String> {
    let dir = format!("{}/src/zab/testdata", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn execute(cluster: &mut Option<Cluster>, case: &mut TestCase) -> Result<String, String> {
    let id = |case: &mut TestCase| -> Result<PeerId, String> {
        case.take_arg::<u64>("id")
            .map(PeerId)
            .map_err(|e| e.to_string())
    };
    if case.directive == "cluster" {
        let voters = case.take_arg("voters").map_err(|e| e.to_string())?;
        let observers = opt(case, "observers")?.unwrap_or(0);
        let accepted = opt(case, "accepted")?.unwrap_or(0);
        let current = opt(case, "current")?.unwrap_or(0);
        let tick = Duration::from_millis(opt(case, "tick_ms")?.unwrap_or(500));
        let disk = Disk {
            accepted: Epoch(accepted),
            current: Epoch(current),
            ..Disk::default()
        };
        let mut c = Cluster::with_disks(voters, observers, tick, disk);
        let diff_txns_max = opt(case, "diff_txns_max")?;
        let compacted_tail_txns = opt(case, "compacted_tail_txns")?;
        if diff_txns_max.is_some() || compacted_tail_txns.is_some() {
            c.diff_txns_max = diff_txns_max.unwrap_or(c.diff_txns_max);
            c.compacted_tail_txns = compacted_tail_txns.unwrap_or(0);
            for id in c.members() {
                c.start(id);
            }
        }
        c.take_trace();
        *cluster = Some(c);
        case.expect_empty().map_err(|e| e.to_string())?;
        return Ok("ok\n".to_owned());
    }
    let c = cluster.as_mut().ok_or("no cluster yet")?;
    let mut out = String::new();
    match case.directive.as_str() {
        "run" => {
            let ms = opt(case, "ms")?.unwrap_or(2000);
            c.run(Duration::from_millis(ms));
        }
        "step" => {
            for _ in 0..opt(case, "n")?.unwrap_or(1) {
                c.step();
            }
        }
        "write" => {
            for line in case.input.lines() {
                let Some(leader) = c.leader() else {
                    return Err("no established leader".to_owned());
                };
                let zxid = c
                    .replicas
                    .get_mut(&leader)
                    .unwrap()
                    .handle_propose(line.to_owned().into())
                    .map_err(|e| e.to_string())?;
                c.drain(leader);
                out.push_str(&format!("{leader:?} proposes {} {line}\n", z(zxid)));
            }
        }
        "crash" => {
            let id = id(case)?;
            c.crash(id);
        }
        "start" => {
            let id = id(case)?;
            c.start(id);
        }
        "isolate" => {
            let id = id(case)?;
            c.isolate(id);
        }
        "heal" => c.heal(),
        "lose" => {
            let kind: String = case.take_arg("kind").map_err(|e| e.to_string())?;
            c.lost_kinds.insert(kind);
        }
        "replay" => {
            let kind: String = case.take_arg("kind").map_err(|e| e.to_string())?;
            let to = opt(case, "to")?.map(PeerId);
            let stale: Vec<_> = c
                .sent
                .iter()
                .filter(|(_, dest, m)| {
                    message_line(m).starts_with(kind.as_str()) && to.is_none_or(|to| to == *dest)
                })
                .cloned()
                .collect();
            out.push_str(&format!("{} stale {kind} in flight\n", stale.len()));
            c.inflight.extend(stale);
        }
        "cut" => {
            let from = PeerId(case.take_arg("from").map_err(|e| e.to_string())?);
            let to = PeerId(case.take_arg("to").map_err(|e| e.to_string())?);
            c.cut.insert((from, to));
        }
        "slow" => {
            let id = id(case)?;
            c.slow.insert(id);
        }
        "fsync" => {
            let id = id(case)?;
            c.slow.remove(&id);
            c.fsync(id);
        }
        "compact" => {
            let id = id(case)?;
            let at = c.compact(id);
            out.push_str(&format!("{id:?} snapshot at {}\n", z(at)));
        }
        "damage" => {
            let id = id(case)?;
            if c.replicas.contains_key(&id) {
                return Err(format!("{id:?} must be down to damage its disk"));
            }
            let disk = c.disks.get_mut(&id).unwrap();
            for _ in 0..opt(case, "n")?.unwrap_or(1) {
                disk.log.pop();
            }
            disk.suspect = true;
        }
        "state" => return Ok(c.state()),
        "check" => {
            check(c)?;
            return Ok("ok\n".to_owned());
        }
        other => return Err(format!("unknown command {other:?}")),
    }
    case.expect_empty().map_err(|e| e.to_string())?;
    for line in c.take_trace() {
        out.push_str(&line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("ok\n");
    }
    Ok(out)
}

fn opt<T: std::str::FromStr>(case: &mut TestCase, key: &str) -> Result<Option<T>, String>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    case.try_take_arg(key).map_err(|e| e.to_string())
}

/// The invariants a scenario may ask for at any point: applied histories are prefixes of one
/// another, nothing is applied past the commit point, and epoch files agree with the logs.
fn check(c: &Cluster) -> Result<(), String> {
    let histories: Vec<(PeerId, Vec<String>)> = c
        .replicas
        .keys()
        .map(|id| (*id, txns(&c.applied[id])))
        .collect();
    for (a, ha) in &histories {
        for (b, hb) in &histories {
            let n = ha.len().min(hb.len());
            if ha[..n] != hb[..n] {
                return Err(format!("{a:?} applied {ha:?} but {b:?} applied {hb:?}"));
            }
        }
    }
    for (id, r) in &c.replicas {
        let applied = c.applied[id].last().map(|(z, _)| *z).unwrap_or_default();
        if applied > r.last_committed() {
            return Err(format!(
                "{id:?} applied {} past its commit point",
                z(applied)
            ));
        }
    }
    for (id, disk) in &c.disks {
        let last = disk.log.last().map_or(disk.snapshot_zxid(), |(z, _)| *z);
        if disk.accepted < disk.current
            || (!c.observers.contains(id) && disk.accepted < last.epoch())
        {
            return Err(format!("{id:?}'s epoch files disagree with its log"));
        }
    }
    Ok(())
}
