//! Linearizability of writes on a 3-member ensemble under faults.
//!
//! Three clients, one per member, run register operations on a few keys: create, set with an
//! expected version (compare-and-set), and read after `sync`, while the leader is killed and
//! restarted and a follower is paused. Every invocation and completion is recorded in one real
//! time order, per key (linearizability is local: a history is linearizable if each key's is),
//! and checked with stateright's `LinearizabilityTester` against a sequential model of a znode.
//! A write whose outcome is unknown (the connection failed) stays in flight forever: it may or
//! may not have taken effect. A read that failed has no effect and stays in flight too. At the
//! end every member reads every key after `sync`, so a lost acknowledged write is an anomaly.
//!
//! coord-only: the ZooKeeper target runs standalone.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_system_tests::ensemble::Ensemble;
use coord_system_tests::is_coord;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

const KEYS: usize = 4;
const CLIENTS: usize = 3;
/// Operations per client at most: the clients run until the faults are over, bounded.
const OPS_PER_CLIENT: usize = 250;
const OP_TIMEOUT: Duration = Duration::from_secs(3);

/// A znode as a register: absent, or a value with its data version.
#[derive(Clone, Debug, Default, PartialEq)]
struct Znode(Option<(u32, i32)>);

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Create(u32),
    /// setData with an expected version (-1: any).
    Cas {
        value: u32,
        version: i32,
    },
    Read,
}

#[derive(Clone, Debug, PartialEq)]
enum Ret {
    Created,
    Exists,
    /// The new version.
    Set(i32),
    BadVersion,
    NoNode,
    Read(Option<(u32, i32)>),
}

impl SequentialSpec for Znode {
    type Op = Op;
    type Ret = Ret;

    fn invoke(&mut self, op: &Op) -> Ret {
        match (op, self.0) {
            (Op::Create(_), Some(_)) => Ret::Exists,
            (Op::Create(v), None) => {
                self.0 = Some((*v, 0));
                Ret::Created
            }
            (Op::Cas { .. }, None) => Ret::NoNode,
            // -1 is ZooKeeper's "any version".
            (Op::Cas { value, version }, Some((_, current)))
                if *version == -1 || *version == current =>
            {
                self.0 = Some((*value, current + 1));
                Ret::Set(current + 1)
            }
            (Op::Cas { .. }, Some(_)) => Ret::BadVersion,
            (Op::Read, state) => Ret::Read(state),
        }
    }
}

/// Who invoked an operation: a client, and how many of its operations were left in flight
/// before (a thread with an operation in flight forever must not invoke another).
type Thread = (usize, u32);

/// One tester per key, behind one lock: the order of calls is the real-time order.
struct History {
    keys: Vec<LinearizabilityTester<Thread, Znode>>,
    log: Vec<String>,
}

impl History {
    fn invoke(&mut self, key: usize, thread: Thread, op: Op) {
        self.log.push(format!("k{key} {thread:?} invoke {op:?}"));
        self.keys[key].on_invoke(thread, op).unwrap();
    }

    fn ret(&mut self, key: usize, thread: Thread, ret: Ret) {
        self.log.push(format!("k{key} {thread:?} return {ret:?}"));
        self.keys[key].on_return(thread, ret).unwrap();
    }
}

fn path(key: usize) -> String {
    format!("/lin/k{key}")
}

async fn connect(hosts: &str) -> zk::Client {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let connected = zk::Client::connector()
            .with_session_timeout(Duration::from_secs(6))
            .with_connection_timeout(Duration::from_secs(2))
            .connect(hosts)
            .await;
        match connected {
            Ok(client) => return client,
            Err(e) => {
                assert!(Instant::now() < deadline, "connect to {hosts}: {e}");
                sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Runs one operation; `None` if its outcome is unknown.
async fn run(client: &zk::Client, key: usize, op: &Op) -> Option<Ret> {
    let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
    let path = path(key);
    let result = match op {
        Op::Create(v) => timeout(OP_TIMEOUT, client.create(&path, &v.to_be_bytes(), &open))
            .await
            .ok()?
            .map(|_| Ret::Created),
        Op::Cas { value, version } => timeout(
            OP_TIMEOUT,
            client.set_data(&path, &value.to_be_bytes(), Some(*version)),
        )
        .await
        .ok()?
        .map(|stat| Ret::Set(stat.version)),
        Op::Read => {
            let read = async {
                client.sync(&path).await?;
                client.get_data(&path).await
            };
            timeout(OP_TIMEOUT, read).await.ok()?.map(|(data, stat)| {
                let value = u32::from_be_bytes(data.try_into().unwrap_or([0; 4]));
                Ret::Read(Some((value, stat.version)))
            })
        }
    };
    match result {
        Ok(ret) => Some(ret),
        Err(zk::Error::NodeExists) => Some(Ret::Exists),
        Err(zk::Error::BadVersion) => Some(Ret::BadVersion),
        Err(zk::Error::NoNode) if matches!(op, Op::Read) => Some(Ret::Read(None)),
        Err(zk::Error::NoNode) => Some(Ret::NoNode),
        Err(_) => None,
    }
}

async fn client_loop(
    id: usize,
    hosts: String,
    seed: u64,
    history: Arc<Mutex<History>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut client = connect(&hosts).await;
    let mut lost = 0u32;
    let mut versions = [0i32; KEYS];
    for i in 0..OPS_PER_CLIENT {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        let key = rng.gen_range(0..KEYS);
        let value = (id * 1000 + i) as u32;
        let op = match rng.gen_range(0..10) {
            0..=1 => Op::Create(value),
            2..=5 => Op::Cas {
                value,
                // Mostly the version last seen, sometimes a stale one.
                version: versions[key] - i32::from(rng.gen_bool(0.2)),
            },
            _ => Op::Read,
        };
        let thread = (id, lost);
        history.lock().unwrap().invoke(key, thread, op.clone());
        match run(&client, key, &op).await {
            Some(ret) => {
                match ret {
                    Ret::Set(v) | Ret::Read(Some((_, v))) => versions[key] = v,
                    _ => {}
                }
                history.lock().unwrap().ret(key, thread, ret);
            }
            None => {
                // In flight forever; this client goes on as a new thread, on a new session.
                lost += 1;
                drop(client);
                client = connect(&hosts).await;
            }
        }
        sleep(Duration::from_millis(rng.gen_range(5..40))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_linearizable_across_members_under_faults() {
    if !is_coord() {
        return;
    }
    let run_test = async {
        let mut ensemble = Ensemble::start(3, 100, "").expect("ensemble starts");
        let setup = connect(&ensemble.connect_string()).await;
        let open = zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
        setup.create("/lin", b"", &open).await.unwrap();
        drop(setup);
        let history = Arc::new(Mutex::new(History {
            keys: (0..KEYS)
                .map(|_| LinearizabilityTester::new(Znode::default()))
                .collect(),
            log: Vec::new(),
        }));
        let seed: u64 = std::env::var("COORD_LIN_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::thread_rng().gen());
        println!("linearizability seed {seed} (COORD_LIN_SEED={seed} replays the workload)");
        // Each client prefers its own member, and may fail over to the others.
        let addrs: Vec<String> = ensemble
            .nodes
            .iter()
            .map(|n| n.client_addr.to_string())
            .collect();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|id| {
                let mut hosts = addrs.clone();
                hosts.rotate_left(id);
                tokio::spawn(client_loop(
                    id,
                    hosts.join(","),
                    seed.wrapping_add(id as u64),
                    history.clone(),
                    stop.clone(),
                ))
            })
            .collect();

        // Faults while the clients run: the leader killed and back, a follower paused.
        sleep(Duration::from_millis(800)).await;
        let leader = ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
        ensemble.kill9(leader);
        sleep(Duration::from_millis(700)).await;
        ensemble.launch(leader).unwrap();
        let leader = ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
        let follower = (0..3).find(|i| *i != leader).unwrap();
        ensemble.pause(follower);
        sleep(Duration::from_millis(1500)).await;
        ensemble.resume(follower);
        sleep(Duration::from_millis(500)).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for client in clients {
            client.await.unwrap();
        }

        // Every member reads every key: an acknowledged write that was lost shows here.
        ensemble.wait_for_leader(Duration::from_secs(30)).unwrap();
        for (m, addr) in addrs.iter().enumerate() {
            let client = connect(addr).await;
            for key in 0..KEYS {
                let thread = (100 + m, 0);
                history.lock().unwrap().invoke(key, thread, Op::Read);
                let ret = run(&client, key, &Op::Read).await.expect("final read");
                history.lock().unwrap().ret(key, thread, ret);
            }
        }

        let history = history.lock().unwrap();
        for (key, tester) in history.keys.iter().enumerate() {
            if tester.serialized_history().is_none() {
                let log: Vec<&String> = history
                    .log
                    .iter()
                    .filter(|l| l.starts_with(&format!("k{key} ")))
                    .collect();
                panic!(
                    "key {key}: the history is not linearizable (seed {seed}):\n{}",
                    log.iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
        }
        let ops: usize = history.keys.iter().map(|t| t.len()).sum();
        let unknown = history.log.iter().filter(|l| l.contains("invoke")).count()
            - history.log.iter().filter(|l| l.contains("return")).count();
        println!("{ops} operations ({unknown} with unknown outcome) on {KEYS} keys, linearizable");
    };
    timeout(Duration::from_secs(120), run_test)
        .await
        .expect("test deadline");
}
