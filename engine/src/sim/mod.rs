//! A deterministic simulator of a Zab ensemble.
//!
//! It drives several [`Replica`]s, the same core a runtime drives, with a simulated network
//! (messages cross in their wire form; delay, loss, duplication, partitions; FIFO per link as
//! TCP and QUIC streams are, a broken link losing what it carried), disks (a crash loses what was not fsynced; snapshots
//! compact the log), virtual time and one seeded RNG, the only source of randomness. After
//! every step it checks Zab's safety properties:
//!
//! - one history: no two members ever apply different txns under one zxid, and every member
//!   applies a prefix of the one committed sequence, in order;
//! - a committed txn is durable on a quorum of voters when the leader commits it;
//! - at most one leader is established per epoch;
//! - on disk, acceptedEpoch >= currentEpoch and >= the epoch of every logged zxid.
//!
//! Each member's disk is the runtime's own data dir (`runtime::disk`: txn log, snapshots,
//! epoch files, install marker, suspect marker) on a [`SimStorage`], beside a model of what
//! must be durable. Every start recovers through the runtime's recovery and is checked
//! against the model; damage is done to the stored bytes, and the recovery must find it.
//!
//! After the faults stop and every link heals, a leader must be established and a new write
//! commit on every member within [`SimConfig::settle`] of virtual time, and every member must
//! hold every write a client was told committed. A failure panics with the seed;
//! [`Sim::run`] with the same [`SimConfig`] replays it exactly (equal seeds, equal
//! [`Report::trace_hash`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::runtime::disk::Disk as DataDir;
use crate::storage::{SimStorage, TornWrites};
use crate::zab::{Action, Config, EpochFile, Message, PeerId, Replica};
use crate::{Epoch, RestoreError, Snapshot, StateMachine, Zxid};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub voters: u64,
    pub observers: u64,
    /// How long faults are injected (virtual time).
    pub chaos: Duration,
    /// How long, after the faults stop, the ensemble has to recover.
    pub settle: Duration,
    /// Mean virtual time between breaks of one link (what is in flight on it is lost; the
    /// next message starts a new connection), or None for links that never break.
    pub break_every: Option<Duration>,
    /// Chance that a message is delivered twice.
    pub duplicate_chance: f64,
    /// Mean virtual time between faults (crash, partition, snapshot).
    pub fault_every: Duration,
    /// Mean virtual time between client writes.
    pub write_every: Duration,
    /// [`Config::diff_txns_max`]: small ones make learners go by SNAP.
    pub diff_txns_max: usize,
    /// Chance that a restarting member finds the end of its durable log damaged.
    pub damage_chance: f64,
    /// [`Config::compacted_tail_txns`]: 0 makes every compaction force SNAPs.
    pub compacted_tail_txns: usize,
}

impl SimConfig {
    /// A run whose cluster size and fault rates come from `seed`.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
        SimConfig {
            seed,
            voters: [1, 3, 3, 5][rng.gen_range(0..4)],
            observers: rng.gen_range(0..2),
            chaos: Duration::from_secs(20),
            settle: Duration::from_secs(30),
            break_every: [
                None,
                Some(Duration::from_secs(5)),
                Some(Duration::from_millis(500)),
            ][rng.gen_range(0..3)],
            duplicate_chance: [0.0, 0.005][rng.gen_range(0..2)],
            fault_every: Duration::from_millis(rng.gen_range(300..3000)),
            write_every: Duration::from_millis(rng.gen_range(5..50)),
            // Drawn last, so that the draws above stay what they were for every seed.
            diff_txns_max: [usize::MAX, usize::MAX, 1, 16][rng.gen_range(0..4)],
            damage_chance: [0.0, 0.3][rng.gen_range(0..2)],
            compacted_tail_txns: [0, 8, crate::zab::COMPACTED_TAIL_TXNS_DEFAULT]
                [rng.gen_range(0..3)],
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub steps: u64,
    /// Writes the leader committed (and a client would have been told so).
    pub committed_writes: usize,
    pub crashes: u64,
    /// Durable log tails damaged before a restart (each found by the recovery).
    pub damages: u64,
    pub elections: u64,
    /// A hash of every event in order: equal configs give equal hashes.
    pub trace_hash: u64,
    /// A hash of every member's files at the end: equal configs give byte-equal disks.
    pub disk_hash: u64,
}

const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
enum Event {
    Deliver {
        from: PeerId,
        to: PeerId,
        generation: u64,
        message: Message,
    },
    /// `node` learns that its stream with `peer` broke.
    LinkReset {
        node: usize,
        peer: PeerId,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    /// What [`Replica::poll_timeout`] asked for.
    Timeout {
        node: usize,
        incarnation: u64,
    },
    Fsync {
        node: usize,
        incarnation: u64,
    },
    EpochPersisted {
        node: usize,
        incarnation: u64,
        file: EpochFile,
        epoch: Epoch,
    },
    Restart(usize),
    Fault,
    Write,
}

/// What a member's disk must hold: the model its data dir is checked against.
#[derive(Debug, Clone, Default)]
struct Disk {
    accepted: Epoch,
    current: Epoch,
    snapshot: (Zxid, Vec<(Zxid, Bytes)>),
    log: Vec<(Zxid, Bytes)>,
    /// Appended, not yet fsynced: lost on a crash.
    unsynced: Vec<(Zxid, Bytes)>,
    /// Recovery found the log's tail damaged and cut it: the member must not count until a
    /// leader synced it (`Durable::log_suspect`).
    suspect: bool,
}

impl Disk {
    fn last_zxid(&self) -> Zxid {
        self.log.last().map_or(self.snapshot.0, |(z, _)| *z)
    }

    fn holds(&self, zxid: Zxid) -> bool {
        zxid <= self.snapshot.0 || self.log.iter().any(|(z, _)| *z == zxid)
    }
}

#[derive(Debug)]
struct Node {
    id: PeerId,
    voter: bool,
    replica: Option<Replica>,
    incarnation: u64,
    disk: Disk,
    /// Where the member's data dir lives; it outlives crashes.
    store: SimStorage,
    /// The data dir, open while the member runs.
    data_dir: Option<DataDir>,
    /// Its log was damaged while it was down: the recovery must notice.
    damaged: bool,
    /// Txns its disk held durably and lost to damage: acknowledged, and gone from this
    /// member by a fault the protocol only contains (the member stops counting until synced).
    lost_to_damage: BTreeSet<Zxid>,
    /// The state machine: the txns applied, in order.
    machine: Vec<(Zxid, Bytes)>,
    fsync_pending: bool,
    /// Writes complete in the order issued, as one runtime thread does them.
    disk_busy_until: Duration,
    /// The [`Event::Timeout`] scheduled for this member, if any.
    timeout_at: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
struct Link {
    up: bool,
    generation: u64,
    /// Deliveries on a link keep their order.
    last_delivery: Duration,
    /// When the link breaks next (with [`SimConfig::break_every`]).
    next_break: Duration,
}

/// The simulation. See the module docs.
pub struct Sim {
    config: SimConfig,
    rng: StdRng,
    now: Duration,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Event>,
    next_seq: u64,
    nodes: Vec<Node>,
    links: BTreeMap<(PeerId, PeerId), Link>,
    quorum: usize,
    /// The one committed history, in zxid order, as members applied it.
    committed: Vec<(Zxid, Bytes)>,
    /// Epoch → the leader established in it.
    leaders: BTreeMap<Epoch, PeerId>,
    /// Writes a leader committed: a client was told they are durable.
    acknowledged: BTreeSet<Bytes>,
    /// Writes proposed, by zxid, on the leader that proposed them.
    proposed: BTreeMap<(usize, Zxid), Bytes>,
    next_write: u64,
    chaos_over: bool,
    /// Prints every event (COORD_SIM_TRACE=1).
    verbose: bool,
    report: Report,
}

fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn encode_machine(machine: &[(Zxid, Bytes)]) -> Bytes {
    let mut out = BytesMut::new();
    for (zxid, txn) in machine {
        out.put_u64(zxid.as_u64());
        out.put_u32(txn.len() as u32);
        out.put_slice(txn);
    }
    out.freeze()
}

/// The machine's state, as the data dir stores and restores it.
#[derive(Default)]
struct SimMachine(Vec<(Zxid, Bytes)>);

struct MachineImage(Bytes);

impl Snapshot for MachineImage {
    fn write_to(&self, writer: &mut dyn io::Write) -> io::Result<()> {
        writer.write_all(&self.0)
    }
}

impl StateMachine for SimMachine {
    type Output = ();
    type Snapshot = MachineImage;

    fn apply(&mut self, zxid: Zxid, txn: &[u8]) {
        self.0.push((zxid, Bytes::copy_from_slice(txn)));
    }

    fn snapshot(&self) -> MachineImage {
        MachineImage(encode_machine(&self.0))
    }

    fn restore(&mut self, reader: &mut dyn io::Read) -> Result<(), RestoreError> {
        let mut data = Vec::new();
        reader.read_to_end(&mut data)?;
        self.0 = decode_machine(&data);
        Ok(())
    }
}

/// Where member `id` keeps its data dir on its store.
fn data_dir_path(id: PeerId) -> PathBuf {
    PathBuf::from(format!("/p{}", id.0))
}

fn decode_machine(mut data: &[u8]) -> Vec<(Zxid, Bytes)> {
    let mut out = Vec::new();
    while data.len() >= 12 {
        let zxid = Zxid::from_u64(u64::from_be_bytes(data[..8].try_into().unwrap_or_default()));
        let len = u32::from_be_bytes(data[8..12].try_into().unwrap_or_default()) as usize;
        out.push((zxid, Bytes::copy_from_slice(&data[12..12 + len])));
        data = &data[12 + len..];
    }
    out
}

impl Sim {
    pub fn new(config: SimConfig) -> Sim {
        let rng = StdRng::seed_from_u64(config.seed);
        let members = config.voters + config.observers;
        let nodes = (1..=members)
            .map(|i| Node {
                id: PeerId(i),
                voter: i <= config.voters,
                replica: None,
                incarnation: 0,
                disk: Disk::default(),
                // Seeded apart from the simulation's RNG, whose draws stay what they were.
                store: SimStorage::new(
                    config.seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    TornWrites::Pages,
                ),
                data_dir: None,
                damaged: false,
                lost_to_damage: BTreeSet::new(),
                machine: Vec::new(),
                fsync_pending: false,
                disk_busy_until: Duration::ZERO,
                timeout_at: None,
            })
            .collect();
        let mut links = BTreeMap::new();
        for a in 1..=members {
            for b in 1..=members {
                if a != b {
                    links.insert(
                        (PeerId(a), PeerId(b)),
                        Link {
                            up: true,
                            generation: 0,
                            last_delivery: Duration::ZERO,
                            next_break: Duration::ZERO,
                        },
                    );
                }
            }
        }
        let quorum = (config.voters / 2 + 1) as usize;
        Sim {
            config,
            rng,
            now: Duration::ZERO,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            next_seq: 0,
            nodes,
            links,
            quorum,
            committed: Vec::new(),
            leaders: BTreeMap::new(),
            acknowledged: BTreeSet::new(),
            proposed: BTreeMap::new(),
            next_write: 0,
            chaos_over: false,
            verbose: std::env::var_os("COORD_SIM_TRACE").is_some(),
            report: Report {
                steps: 0,
                committed_writes: 0,
                crashes: 0,
                damages: 0,
                elections: 0,
                trace_hash: 0xcbf2_9ce4_8422_2325,
                disk_hash: 0xcbf2_9ce4_8422_2325,
            },
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        panic!(
            "simulation seed {} failed at {:?}: {what}\nreplay: COORD_SEED={} cargo test -p coord-engine --test sim",
            self.config.seed, self.now, self.config.seed
        );
    }

    fn schedule(&mut self, after: Duration, event: Event) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.events.insert(seq, event);
        self.queue.push(Reverse((self.now + after, seq)));
    }

    fn replica_config(&self, id: PeerId) -> Config {
        Config {
            id,
            voters: self
                .nodes
                .iter()
                .filter(|n| n.voter)
                .map(|n| n.id)
                .collect(),
            observers: self
                .nodes
                .iter()
                .filter(|n| !n.voter)
                .map(|n| n.id)
                .collect(),
            tick: TICK,
            init_limit_ticks: 10,
            sync_limit_ticks: 5,
            diff_txns_max: self.config.diff_txns_max,
            diff_bytes_max: crate::zab::DIFF_BYTES_MAX_DEFAULT,
            compacted_tail_txns: self.config.compacted_tail_txns,
        }
    }

    fn start(&mut self, node: usize) {
        let id = self.nodes[node].id;
        let config = self.replica_config(id);
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.timeout_at = None;
        n.disk.unsynced.clear();
        n.fsync_pending = false;
        n.disk_busy_until = Duration::ZERO;
        // The runtime's recovery reads the data dir: it must find what the model holds, or,
        // after damage, a shorter log it knows to be suspect.
        n.store.restart();
        let mut machine = SimMachine::default();
        let durable =
            match DataDir::open_in(Arc::new(n.store.clone()), &data_dir_path(id), &mut machine) {
                Ok((data_dir, durable)) => {
                    n.data_dir = Some(data_dir);
                    durable
                }
                Err(e) => self.fail(format!("{id:?}: the data dir does not open: {e}")),
            };
        let n = &self.nodes[node];
        let model = &n.disk;
        let found_log = &durable.log;
        let log_ok = found_log.len() <= model.log.len()
            && model.log[..found_log.len()] == found_log[..]
            && (found_log.len() == model.log.len() || durable.log_suspect);
        if (
            durable.accepted_epoch,
            durable.current_epoch,
            durable.snapshot_zxid,
        ) != (model.accepted, model.current, model.snapshot.0)
            || machine.0 != model.snapshot.1
            || !log_ok
            || (model.suspect && !durable.log_suspect)
            || (n.damaged && !durable.log_suspect)
        {
            self.fail(format!(
                "{id:?}: recovery found epochs {:?}/{:?}, snapshot {}, log to {:?} (suspect: {}); \
                 the disk holds {:?}/{:?}, snapshot {}, log to {:?} (suspect: {})",
                durable.accepted_epoch,
                durable.current_epoch,
                durable.snapshot_zxid,
                found_log.last().map(|(z, _)| *z),
                durable.log_suspect,
                model.accepted,
                model.current,
                model.snapshot.0,
                model.log.last().map(|(z, _)| *z),
                model.suspect,
            ));
        }
        let n = &mut self.nodes[node];
        n.damaged = false;
        // Damage cut the log: that is what the member now holds.
        let kept = durable.log.len();
        n.lost_to_damage
            .extend(n.disk.log[kept..].iter().map(|(zxid, _)| *zxid));
        n.disk.log = durable.log.clone();
        n.disk.suspect = durable.log_suspect;
        // The machine is rebuilt from the snapshot only: the log's tail may be uncommitted.
        n.machine = machine.0;
        match Replica::new(config, durable, self.now) {
            Ok(replica) => self.nodes[node].replica = Some(replica),
            Err(e) => self.fail(format!("{id:?} cannot start from its disk: {e}")),
        }
        self.report.elections += 1;
        let jitter = Duration::from_millis(self.rng.gen_range(0..50));
        let incarnation = self.nodes[node].incarnation;
        self.schedule(jitter, Event::Tick { node, incarnation });
        self.drain(node);
    }

    /// Before a restart, sometimes damages the end of the member's durable log, as bit rot of
    /// a batch that was fsynced (and may have been acknowledged): the recovery must cut it and
    /// mark the log suspect. Only while a quorum of voters stays trusted, or no leader could
    /// ever be elected again (which is what the rule is for: an operator must step in then).
    fn maybe_damage(&mut self, node: usize) {
        if self.chaos_over || self.config.damage_chance == 0.0 {
            return;
        }
        if !self.rng.gen_bool(self.config.damage_chance) {
            return;
        }
        let voters = self.nodes.iter().filter(|n| n.voter).count();
        let quorum = voters / 2 + 1;
        let suspect = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.voter && (n.disk.suspect || *i == node))
            .count();
        if self.nodes[node].voter && voters - suspect < quorum {
            return;
        }
        let n = &self.nodes[node];
        if n.disk.log.is_empty() {
            return;
        }
        // The newest segment's last batch: its last nonzero byte (zeros may follow it) lies in
        // the batch's final 4 bytes or just before, and every batch is longer than 40 bytes.
        let dir = data_dir_path(n.id);
        let Some((path, bytes)) = n.store.files().into_iter().rfind(|(path, _)| {
            path.parent() == Some(dir.as_path())
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with("log.") && !name.ends_with(".tmp"))
        }) else {
            return;
        };
        let Some(last) = bytes.iter().rposition(|b| *b != 0) else {
            return;
        };
        let offset = last.saturating_sub(self.rng.gen_range(0..16));
        let id = n.id;
        if self.nodes[node].store.rot(&path, offset) {
            self.nodes[node].damaged = true;
            self.report.damages += 1;
            if self.verbose {
                eprintln!("  damage {id:?}: {} at byte {offset}", path.display());
            }
        }
    }

    /// Runs the whole simulation: faults for `chaos`, then healing and `settle`.
    pub fn run(mut self) -> Report {
        for node in 0..self.nodes.len() {
            self.start(node);
        }
        let fault = self.exp(self.config.fault_every);
        self.schedule(fault, Event::Fault);
        let write = self.exp(self.config.write_every);
        self.schedule(write, Event::Write);
        let chaos_end = self.config.chaos;
        let deadline = chaos_end + self.config.settle;
        let mut settled_at = None;
        const STEPS_MAX: u64 = 5_000_000;
        while let Some(Reverse((at, seq))) = self.queue.pop() {
            self.report.steps += 1;
            if self.report.steps > STEPS_MAX {
                self.fail("too many steps");
            }
            self.now = at;
            if !self.chaos_over && self.now >= chaos_end {
                self.heal();
            }
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            let line = format!("{:?} {event:?}", self.now);
            if self.verbose {
                eprintln!("{line}");
            }
            self.report.trace_hash = fnv(self.report.trace_hash, line.as_bytes());
            self.step(event);
            self.check_disks();
            if self.chaos_over && settled_at.is_none() && self.converged() {
                settled_at = Some(self.now);
                break;
            }
            if self.now > deadline {
                break;
            }
        }
        if settled_at.is_none() {
            self.fail(format!(
                "no convergence within {:?} of healing; history ends at {:?}; newest leader {:?}; \
                 members {:?}",
                self.config.settle,
                self.committed.last().map(|(z, _)| *z),
                self.leaders.iter().last(),
                self.nodes
                    .iter()
                    .map(|n| (
                        n.id,
                        n.replica.as_ref().map(|r| (
                            r.role(),
                            r.established_epoch(),
                            r.last_appended(),
                            r.last_committed()
                        )),
                        n.machine.last().map(|(z, _)| *z)
                    ))
                    .collect::<Vec<_>>()
            ));
        }
        self.report.committed_writes = self.acknowledged.len();
        for n in &self.nodes {
            for (path, bytes) in n.store.files() {
                self.report.disk_hash =
                    fnv(self.report.disk_hash, path.as_os_str().as_encoded_bytes());
                self.report.disk_hash = fnv(self.report.disk_hash, &bytes);
            }
        }
        self.report
    }

    /// How long a write takes to be durable: mostly milliseconds, sometimes a stall of seconds,
    /// so that roles change while writes are outstanding.
    /// Writes of one member complete in order: after the ones before them.
    fn disk_latency(&mut self, node: usize) -> Duration {
        let latency = if self.rng.gen_bool(0.01) {
            Duration::from_millis(self.rng.gen_range(300..3000))
        } else {
            Duration::from_micros(self.rng.gen_range(100..5000))
        };
        let done = self.nodes[node].disk_busy_until.max(self.now) + latency;
        self.nodes[node].disk_busy_until = done;
        done - self.now
    }

    fn exp(&mut self, mean: Duration) -> Duration {
        let u: f64 = self.rng.gen_range(0.0001..1.0);
        mean.mul_f64(-u.ln()).max(Duration::from_millis(1))
    }

    fn step(&mut self, event: Event) {
        // As the runtime does: every input to a member comes at a time the core learns first.
        let target = match &event {
            Event::Deliver { to, .. } => Some((to.0 - 1) as usize),
            Event::LinkReset { node, .. }
            | Event::Tick { node, .. }
            | Event::Fsync { node, .. }
            | Event::EpochPersisted { node, .. } => Some(*node),
            _ => None,
        };
        if let Some(node) = target {
            let now = self.now;
            if let Some(replica) = &mut self.nodes[node].replica {
                replica.handle_timeout(now);
            }
        }
        match event {
            Event::Timeout { node, incarnation } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation {
                    return;
                }
                n.timeout_at = None;
                if let Some(replica) = &mut n.replica {
                    replica.handle_timeout(now);
                    self.drain(node);
                }
            }
            Event::Deliver {
                from,
                to,
                generation,
                message,
            } => {
                let link = self.links[&(from, to)];
                if !link.up || link.generation != generation {
                    return;
                }
                let node = (to.0 - 1) as usize;
                if let Some(replica) = &mut self.nodes[node].replica {
                    replica.handle_message(from, message);
                    self.drain(node);
                }
            }
            Event::LinkReset { node, peer } => {
                if let Some(replica) = &mut self.nodes[node].replica {
                    replica.handle_link_reset(peer);
                    self.drain(node);
                }
            }
            Event::Tick { node, incarnation } => {
                let now = self.now;
                if self.nodes[node].incarnation != incarnation {
                    return;
                }
                if let Some(replica) = &mut self.nodes[node].replica {
                    replica.handle_tick(now);
                    self.drain(node);
                    self.schedule(TICK, Event::Tick { node, incarnation });
                }
            }
            Event::Fsync { node, incarnation } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation || n.replica.is_none() {
                    return;
                }
                n.fsync_pending = false;
                let Some(last) = n.disk.unsynced.last().map(|(z, _)| *z) else {
                    return;
                };
                let synced: Vec<(Zxid, Bytes)> = n.disk.unsynced.drain(..).collect();
                // A txn applied (committed elsewhere) before it was fsynced here may already be
                // in a snapshot.
                // The runtime logs them all the same (recovery skips what a snapshot covers).
                let refs: Vec<(Zxid, &[u8])> = synced.iter().map(|(z, t)| (*z, &t[..])).collect();
                let result = n.data_dir.as_mut().map(|d| d.append(&refs));
                if let Some(Err(e)) = result {
                    self.fail(format!("{:?}: append failed: {e}", self.nodes[node].id));
                }
                let n = &mut self.nodes[node];
                let snapshot = n.disk.snapshot.0;
                n.disk
                    .log
                    .extend(synced.into_iter().filter(|(z, _)| *z > snapshot));
                if let Some(replica) = &mut n.replica {
                    replica.handle_persisted(last);
                }
                self.drain(node);
            }
            Event::EpochPersisted {
                node,
                incarnation,
                file,
                epoch,
            } => {
                let n = &mut self.nodes[node];
                if n.incarnation != incarnation {
                    return;
                }
                match file {
                    EpochFile::Accepted => n.disk.accepted = epoch,
                    EpochFile::Current => n.disk.current = epoch,
                }
                if let Some(Err(e)) = n.data_dir.as_ref().map(|d| d.write_epoch(file, epoch)) {
                    self.fail(format!(
                        "{:?}: epoch write failed: {e}",
                        self.nodes[node].id
                    ));
                }
                let n = &mut self.nodes[node];
                if let Some(replica) = &mut n.replica {
                    replica.handle_epoch_persisted(file, epoch);
                    self.drain(node);
                }
            }
            Event::Restart(node) => {
                if self.nodes[node].replica.is_none() {
                    self.maybe_damage(node);
                    self.start(node);
                }
            }
            Event::Fault => {
                if !self.chaos_over {
                    self.fault();
                    let next = self.exp(self.config.fault_every);
                    self.schedule(next, Event::Fault);
                }
            }
            Event::Write => {
                // After healing, writes go on until one commits in the newest epoch; then the
                // members must catch up with a history that no longer grows (unless a new
                // leader takes over, which needs a write of its own).
                if !(self.chaos_over && self.fresh_write_committed()) {
                    self.write();
                }
                let next = self.exp(self.config.write_every);
                self.schedule(next, Event::Write);
            }
        }
    }

    /// A client write to whichever member leads an established epoch.
    fn write(&mut self) {
        let Some(node) = self.nodes.iter().position(|n| {
            n.replica
                .as_ref()
                .is_some_and(|r| r.established_epoch().is_some())
        }) else {
            return;
        };
        self.next_write += 1;
        let txn = Bytes::from(format!("w{}", self.next_write));
        let result = self.nodes[node]
            .replica
            .as_mut()
            .map(|r| r.handle_propose(txn.clone()));
        if let Some(Ok(zxid)) = result {
            self.proposed.insert((node, zxid), txn);
        }
        self.drain(node);
    }

    /// Crash and restart a member, break or heal links, or snapshot a member's state.
    fn fault(&mut self) {
        let members = self.nodes.len();
        match self.rng.gen_range(0..6) {
            0 | 1 => {
                let node = self.rng.gen_range(0..members);
                if self.nodes[node].replica.is_some() {
                    self.crash(node);
                    let back = Duration::from_millis(self.rng.gen_range(10..2000));
                    self.schedule(back, Event::Restart(node));
                }
            }
            2 => {
                // Isolate one member, both ways or one way.
                let node = PeerId(self.rng.gen_range(1..=members as u64));
                let both = self.rng.gen_bool(0.7);
                let cut: Vec<(PeerId, PeerId)> = self
                    .links
                    .keys()
                    .filter(|(a, b)| *b == node || (both && *a == node))
                    .copied()
                    .collect();
                self.cut(cut);
            }
            3 => {
                // Split the members in two.
                let side: Vec<bool> = (0..members).map(|_| self.rng.gen_bool(0.5)).collect();
                let cut: Vec<(PeerId, PeerId)> = self
                    .links
                    .keys()
                    .filter(|(a, b)| side[(a.0 - 1) as usize] != side[(b.0 - 1) as usize])
                    .copied()
                    .collect();
                self.cut(cut);
            }
            4 => self.heal_links(),
            _ => {
                // A member snapshots what it applied and compacts its log.
                let node = self.rng.gen_range(0..members);
                let n = &mut self.nodes[node];
                if let Some((zxid, _)) = n.machine.last().cloned() {
                    if zxid > n.disk.snapshot.0 && n.replica.is_some() {
                        let image = MachineImage(encode_machine(&n.machine));
                        let path = data_dir_path(n.id);
                        let written = crate::snapshot::write(&n.store, &path, zxid, &image)
                            .map_err(crate::EngineError::from)
                            .and_then(|_| match n.data_dir.as_mut() {
                                Some(d) => d.drop_covered(),
                                None => Ok(()),
                            });
                        if let Err(e) = written {
                            self.fail(format!("{:?}: snapshot failed: {e}", self.nodes[node].id));
                        }
                        let n = &mut self.nodes[node];
                        n.disk.snapshot = (zxid, n.machine.clone());
                        n.disk.log.retain(|(z, _)| *z > zxid);
                        if let Some(replica) = &mut n.replica {
                            replica.handle_compacted(zxid);
                        }
                    }
                }
            }
        }
    }

    /// Takes links down: their streams break, and stay broken until healed.
    fn cut(&mut self, links: Vec<(PeerId, PeerId)>) {
        for (a, b) in links {
            if self.links.get(&(a, b)).is_some_and(|l| l.up) {
                self.break_link(a, b);
                if let Some(link) = self.links.get_mut(&(a, b)) {
                    link.up = false;
                }
            }
        }
    }

    fn crash(&mut self, node: usize) {
        if self.verbose {
            eprintln!("  crash {:?}", self.nodes[node].id);
        }
        let id = self.nodes[node].id;
        let links: Vec<(PeerId, PeerId)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == id || *b == id)
            .copied()
            .collect();
        for (a, b) in links {
            self.break_link(a, b);
        }
        let n = &mut self.nodes[node];
        n.replica = None;
        n.data_dir = None;
        // What was not fsynced is gone.
        n.disk.unsynced.clear();
        n.machine.clear();
        n.incarnation += 1;
        n.timeout_at = None;
        self.report.crashes += 1;
    }

    /// Breaks the stream `from` → `to`: what it carries is lost, and both ends learn of it
    /// before anything of the next stream arrives (the receiver in the link's order).
    fn break_link(&mut self, from: PeerId, to: PeerId) {
        let now = self.now;
        let Some(link) = self.links.get_mut(&(from, to)) else {
            return;
        };
        link.generation += 1;
        let at = link.last_delivery.max(now);
        link.last_delivery = at;
        let after = at - now;
        self.schedule(
            after,
            Event::LinkReset {
                node: (to.0 - 1) as usize,
                peer: from,
            },
        );
        let delay = Duration::from_micros(self.rng.gen_range(100..2000));
        self.schedule(
            delay,
            Event::LinkReset {
                node: (from.0 - 1) as usize,
                peer: to,
            },
        );
    }

    /// Brings links back; each starts a new stream, whose start both ends hear of.
    fn heal_links(&mut self) {
        let down: Vec<(PeerId, PeerId)> = self
            .links
            .iter()
            .filter(|(_, l)| !l.up)
            .map(|(k, _)| *k)
            .collect();
        for (a, b) in down {
            if let Some(link) = self.links.get_mut(&(a, b)) {
                link.up = true;
            }
            self.break_link(a, b);
        }
    }

    fn heal(&mut self) {
        self.chaos_over = true;
        self.heal_links();
        for node in 0..self.nodes.len() {
            if self.nodes[node].replica.is_none() {
                self.start(node);
            }
        }
    }

    /// Every member runs, one leads an established epoch, and every member applied the same
    /// history, which holds every acknowledged write and one written after healing.
    fn converged(&mut self) -> bool {
        let established = self
            .nodes
            .iter()
            .filter(|n| {
                n.replica
                    .as_ref()
                    .is_some_and(|r| r.established_epoch().is_some())
            })
            .count();
        if established != 1 || self.nodes.iter().any(|n| n.replica.is_none()) {
            return false;
        }
        let Some(last) = self.committed.last().map(|(z, _)| *z) else {
            return false;
        };
        if !self.fresh_write_committed()
            || self
                .nodes
                .iter()
                .any(|n| n.machine.last().map(|(z, _)| *z) != Some(last))
        {
            return false;
        }
        let applied: BTreeSet<&Bytes> = self.committed.iter().map(|(_, t)| t).collect();
        if let Some(lost) = self.acknowledged.iter().find(|w| !applied.contains(w)) {
            self.fail(format!("acknowledged write {lost:?} was lost"));
        }
        true
    }

    /// A txn of the newest established epoch is committed (applied somewhere).
    fn fresh_write_committed(&self) -> bool {
        let newest = self.leaders.keys().last().copied().unwrap_or_default();
        self.committed
            .last()
            .is_some_and(|(z, _)| z.epoch() == newest)
    }

    fn check_disks(&self) {
        for n in self.nodes.iter().filter(|n| n.voter) {
            let d = &n.disk;
            if d.accepted < d.current {
                self.fail(format!("{:?}: acceptedEpoch below currentEpoch", n.id));
            }
            if d.accepted < d.last_zxid().epoch() {
                self.fail(format!("{:?}: acceptedEpoch below its log", n.id));
            }
        }
    }

    /// A member advertises only what its disk holds (PITFALLS 1-3, 11).
    fn check_advertised(&self, from: PeerId, message: &Message) {
        let Some(n) = self.nodes.iter().find(|n| n.id == from) else {
            return;
        };
        if !n.voter {
            return;
        }
        let d = &n.disk;
        let claim = match message {
            Message::Notification {
                vote,
                state: crate::zab::PeerState::Looking,
                ..
            } if vote.leader == from => Some((vote.epoch, d.current, vote.zxid)),
            Message::FollowerInfo {
                accepted_epoch,
                last_zxid,
                ..
            } => Some((*accepted_epoch, d.accepted, *last_zxid)),
            Message::AckEpoch {
                current_epoch,
                last_zxid,
                ..
            } => Some((*current_epoch, d.current, *last_zxid)),
            Message::Ack { zxid, .. } if !d.holds(*zxid) => self.fail(format!(
                "{from:?} acknowledged {zxid}, which its disk lacks"
            )),
            _ => None,
        };
        if let Some((epoch, durable_epoch, zxid)) = claim {
            if epoch > durable_epoch || zxid > d.last_zxid() {
                self.fail(format!(
                    "{from:?} advertised epoch {epoch:?} and zxid {zxid} in {message:?}; its disk \
                     holds {durable_epoch:?} and {}",
                    d.last_zxid()
                ));
            }
        }
    }

    fn send(&mut self, from: PeerId, to: PeerId, message: Message) {
        self.check_advertised(from, &message);
        // Every message crosses in its wire form, as a transport carries it.
        let mut wire = Vec::new();
        message.encode(&mut wire);
        let message = match Message::decode(&wire) {
            Ok(decoded) if decoded == message => decoded,
            other => self.fail(format!(
                "{message:?} does not survive its wire form: {other:?}"
            )),
        };
        let key = (from, to);
        let Some(link) = self.links.get(&key).copied() else {
            return;
        };
        if !link.up {
            return;
        }
        if let Some(every) = self.config.break_every {
            if self.now >= link.next_break {
                let next = self.now + self.exp(every);
                if let Some(link) = self.links.get_mut(&key) {
                    link.next_break = next;
                }
                self.break_link(from, to);
                return;
            }
        }
        let Some(link) = self.links.get(&key).copied() else {
            return;
        };
        let copies = if self.rng.gen_bool(self.config.duplicate_chance) {
            2
        } else {
            1
        };
        let delay = Duration::from_micros(self.rng.gen_range(200..10_000));
        let at = (self.now + delay).max(link.last_delivery);
        if let Some(link) = self.links.get_mut(&key) {
            link.last_delivery = at;
        }
        for _ in 0..copies {
            let event = Event::Deliver {
                from,
                to,
                generation: link.generation,
                message: message.clone(),
            };
            let after = at - self.now;
            self.schedule(after, event);
        }
    }

    /// Carries out a member's actions, in order, and checks what they claim; then arms the
    /// member's timer if it asks for one.
    fn drain(&mut self, node: usize) {
        self.drain_actions(node);
        let n = &mut self.nodes[node];
        let wanted = n.replica.as_ref().and_then(Replica::poll_timeout);
        if let Some(at) = wanted {
            if n.timeout_at != Some(at) {
                n.timeout_at = Some(at);
                let incarnation = n.incarnation;
                let after = at.saturating_sub(self.now);
                self.schedule(after, Event::Timeout { node, incarnation });
            }
        }
    }

    fn drain_actions(&mut self, node: usize) {
        loop {
            let Some(action) = self.nodes[node]
                .replica
                .as_mut()
                .and_then(|r| r.poll_action())
            else {
                break;
            };
            let id = self.nodes[node].id;
            let incarnation = self.nodes[node].incarnation;
            if self.verbose && !matches!(action, Action::Send { .. }) {
                eprintln!("  {id:?} {action:?}");
            }
            match action {
                Action::Send { to, message } => self.send(id, to, message),
                Action::PersistAcceptedEpoch(epoch) => {
                    self.write_epoch(node, EpochFile::Accepted, epoch)
                }
                Action::PersistCurrentEpoch(epoch) => {
                    self.write_epoch(node, EpochFile::Current, epoch)
                }
                Action::Append { zxid, txn } => {
                    let n = &mut self.nodes[node];
                    n.disk.unsynced.push((zxid, txn));
                    if !n.fsync_pending {
                        n.fsync_pending = true;
                        let after = self.disk_latency(node);
                        self.schedule(after, Event::Fsync { node, incarnation });
                    }
                }
                Action::Truncate { after } => {
                    let d = &mut self.nodes[node].disk;
                    if after < d.snapshot.0 {
                        self.fail(format!("{id:?} truncates below its snapshot"));
                    }
                    d.log.retain(|(z, _)| *z <= after);
                    d.unsynced.retain(|(z, _)| *z <= after);
                    let result = self.nodes[node]
                        .data_dir
                        .as_mut()
                        .map(|dir| dir.truncate_after(after));
                    if let Some(Err(e)) = result {
                        self.fail(format!("{id:?}: truncate failed: {e}"));
                    }
                }
                Action::SendSnapshot { to, epoch, zxid } => {
                    let machine = &self.nodes[node].machine;
                    if machine.last().map_or(Zxid::ZERO, |(z, _)| *z) != zxid {
                        self.fail(format!(
                            "{id:?} asked to snapshot at {zxid}, applied elsewhere"
                        ));
                    }
                    let data = encode_machine(machine);
                    self.send(id, to, Message::Snap { epoch, zxid, data });
                }
                Action::InstallSnapshot { zxid, data } => {
                    let machine = decode_machine(&data);
                    self.check_prefix(id, &machine);
                    let result = self.nodes[node]
                        .data_dir
                        .as_mut()
                        .map(|dir| dir.install_snapshot(zxid, data.clone()));
                    if let Some(Err(e)) = result {
                        self.fail(format!("{id:?}: snapshot install failed: {e}"));
                    }
                    let n = &mut self.nodes[node];
                    n.disk.snapshot = (zxid, machine.clone());
                    n.disk.log.clear();
                    n.disk.unsynced.clear();
                    n.machine = machine;
                }
                Action::Commit { zxid } => {
                    let is_leader = self.nodes[node]
                        .replica
                        .as_ref()
                        .is_some_and(|r| r.established_epoch().is_some());
                    if is_leader {
                        self.check_commit_durable(id, zxid);
                        let acked: Vec<Bytes> = self
                            .proposed
                            .range((node, Zxid::ZERO)..=(node, zxid))
                            .map(|(_, t)| t.clone())
                            .collect();
                        self.acknowledged.extend(acked);
                        self.proposed.retain(|(n, z), _| *n != node || *z > zxid);
                    }
                }
                Action::Apply { zxid, txn } => self.apply(node, zxid, txn),
                Action::Disconnect { peer } => {
                    self.break_link(id, peer);
                    self.break_link(peer, id);
                }
                Action::LogTrusted => {
                    self.nodes[node].disk.suspect = false;
                    if let Some(Err(e)) = self.nodes[node].data_dir.as_ref().map(DataDir::trust_log)
                    {
                        self.fail(format!("{id:?}: could not trust the log: {e}"));
                    }
                }
                Action::RoleChanged { .. } => {
                    // A new role: proposals the old one made are no longer the client's.
                    self.proposed.retain(|(n, _), _| *n != node);
                }
            }
        }
        if let Some(epoch) = self.nodes[node]
            .replica
            .as_ref()
            .and_then(|r| r.established_epoch())
        {
            let id = self.nodes[node].id;
            match self.leaders.get(&epoch) {
                Some(other) if *other != id => self.fail(format!(
                    "two leaders established in {epoch:?}: {other:?}, {id:?}"
                )),
                _ => {
                    self.leaders.insert(epoch, id);
                }
            }
        }
    }

    /// An epoch file changes when its write completes; a crash before loses it.
    fn write_epoch(&mut self, node: usize, file: EpochFile, epoch: Epoch) {
        let after = self.disk_latency(node);
        let incarnation = self.nodes[node].incarnation;
        self.schedule(
            after,
            Event::EpochPersisted {
                node,
                incarnation,
                file,
                epoch,
            },
        );
    }

    /// A txn the leader commits is durable on a quorum of voters.
    fn check_commit_durable(&self, leader: PeerId, zxid: Zxid) {
        let durable = self
            .nodes
            .iter()
            .filter(|n| n.voter && (n.disk.holds(zxid) || n.lost_to_damage.contains(&zxid)))
            .count();
        // A member may lose what it acknowledged to damage between its ACK and the commit:
        // it was durable on a quorum when counted, and the damaged member no longer counts.
        if durable < self.quorum {
            self.fail(format!(
                "{leader:?} committed {zxid} durable on {durable} voters, below a quorum"
            ));
        }
    }

    fn check_prefix(&self, id: PeerId, machine: &[(Zxid, Bytes)]) {
        for (i, entry) in machine.iter().enumerate() {
            if self.committed.get(i) != Some(entry) {
                self.fail(format!(
                    "{id:?} holds {:?} at position {i}, the history has {:?}",
                    entry,
                    self.committed.get(i)
                ));
            }
        }
    }

    fn apply(&mut self, node: usize, zxid: Zxid, txn: Bytes) {
        let id = self.nodes[node].id;
        let position = self.nodes[node].machine.len();
        if let Some((last, _)) = self.nodes[node].machine.last() {
            if *last >= zxid {
                self.fail(format!("{id:?} applied {zxid} after {last}"));
            }
        }
        match self.committed.get(position) {
            Some(entry) if *entry != (zxid, txn.clone()) => self.fail(format!(
                "{id:?} applied {zxid} {txn:?} at position {position}, the history has {entry:?}"
            )),
            Some(_) => {}
            None => {
                if let Some((last, _)) = self.committed.last() {
                    if *last >= zxid {
                        self.fail(format!(
                            "{id:?} extends the history with {zxid} after {last}"
                        ));
                    }
                }
                if position != self.committed.len() {
                    self.fail(format!("{id:?} skipped part of the history"));
                }
                self.committed.push((zxid, txn.clone()));
            }
        }
        self.nodes[node].machine.push((zxid, txn));
    }
}
