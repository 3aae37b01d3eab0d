//! coord-client's recipes against a real server (coord, an ensemble, or ZooKeeper): each with
//! several clients contending, as its users would run it.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coord_client::recipes::{
    Barrier, Counter, DoubleBarrier, Election, Lock, Queue, RwLock, Semaphore,
};
use coord_client::{Client, SessionState};
use coord_system_tests::{four_letter_word, within_deadline, CoordServer, ServerConfig};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn clients(server: &CoordServer, n: usize) -> Vec<Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        clients.push(
            Client::connect(&server.connect_string(), TIMEOUT)
                .await
                .unwrap(),
        );
    }
    clients
}

/// Waits until `n` contenders are in `lock`'s line.
async fn line_of(lock: &Lock, n: usize) {
    while lock.contenders().await.unwrap().len() < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_held_alone_by_each_waiter_in_the_order_they_came() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let clients = clients(&server, 5).await;
        let watcher = Lock::new(&clients[0], "/locks/a");
        let holding = Arc::new(AtomicUsize::new(0));
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = Lock::new(&clients[0], "/locks/a").acquire().await.unwrap();
        let mut tasks = Vec::new();
        for (i, client) in clients.iter().enumerate().skip(1) {
            let lock = Lock::new(client, "/locks/a").with_data(format!("{i}").as_bytes());
            let (holding, order) = (holding.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let guard = lock.acquire().await.unwrap();
                assert_eq!(
                    holding.fetch_add(1, Ordering::SeqCst),
                    0,
                    "held by two at once"
                );
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(20)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                guard.release().await.unwrap();
            }));
            // The next one joins the line only once this one is in it.
            line_of(&watcher, i + 1).await;
        }
        // No herd: each of the four waiters watches one node, the one just ahead of it.
        let mut watches = String::new();
        for _ in 0..200 {
            watches = four_letter_word(server.addr(), "wchs").unwrap();
            if watches.contains("Total watches:4") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            watches.contains("4 connections watching 4 paths")
                && watches.contains("Total watches:4"),
            "{watches}"
        );
        let contenders = watcher.contenders().await.unwrap();
        assert_eq!(
            contenders[1..],
            [b"1", b"2", b"3", b"4"].map(|d| d.to_vec())
        );
        // Taken: nobody else gets it without waiting, and a waiter that gives up leaves.
        let other = Lock::new(&clients[1], "/locks/a");
        assert!(other.try_acquire().await.unwrap().is_none());
        let timed_out = other.acquire_timeout(Duration::from_millis(100)).await;
        assert!(timed_out.unwrap().is_none());
        assert_eq!(watcher.contenders().await.unwrap().len(), 5);
        // A waiter dropped while waiting leaves the line too.
        let dropped = tokio::time::timeout(Duration::from_millis(50), other.acquire()).await;
        assert!(dropped.is_err());
        for _ in 0..200 {
            if watcher.contenders().await.unwrap().len() == 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(watcher.contenders().await.unwrap().len(), 5);

        first.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [1, 2, 3, 4]);
        assert!(watcher.contenders().await.unwrap().is_empty());
        // Free again: had at once.
        let again = watcher.try_acquire().await.unwrap();
        assert!(again.is_some());
        // A lock's node is ephemeral: it goes with its holder's session.
        let holder = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        drop(again);
        let held = Lock::new(&holder, "/locks/a").acquire().await.unwrap();
        let path = held.path().to_owned();
        std::mem::forget(held);
        holder.close().await.unwrap();
        assert_eq!(clients[0].exists(&path).await.unwrap(), None);
        assert!(watcher.try_acquire().await.unwrap().is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_share_a_rwlock_and_a_writer_waits_its_turn() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let c = clients(&server, 3).await;
        let r1 = RwLock::new(&c[0], "/rw").read().await.unwrap();
        let r2 = RwLock::new(&c[1], "/rw").read().await.unwrap();
        let short = Duration::from_millis(100);
        // A writer waits for both readers.
        assert!(RwLock::new(&c[2], "/rw")
            .write_timeout(short)
            .await
            .unwrap()
            .is_none());
        let writer_lock = RwLock::new(&c[2], "/rw");
        let writer = tokio::spawn(async move { writer_lock.write().await.unwrap() });
        while c[0].get_children("/rw").await.unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A reader who comes after the writer waits for it.
        assert!(RwLock::new(&c[0], "/rw")
            .read_timeout(short)
            .await
            .unwrap()
            .is_none());
        r1.release().await.unwrap();
        r2.release().await.unwrap();
        let w = writer.await.unwrap();
        assert!(RwLock::new(&c[0], "/rw")
            .read_timeout(short)
            .await
            .unwrap()
            .is_none());
        w.release().await.unwrap();
        assert!(RwLock::new(&c[0], "/rw")
            .read_timeout(short)
            .await
            .unwrap()
            .is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_lets_in_as_many_as_it_has_leases() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let c = clients(&server, 3).await;
        let a = Semaphore::new(&c[0], "/sem", 2).acquire().await.unwrap();
        let _b = Semaphore::new(&c[1], "/sem", 2).acquire().await.unwrap();
        let third = Semaphore::new(&c[2], "/sem", 2);
        assert!(third
            .acquire_timeout(Duration::from_millis(100))
            .await
            .unwrap()
            .is_none());
        let waiting = tokio::spawn(async move { third.acquire().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        a.release().await.unwrap();
        let lease = waiting.await.unwrap();
        assert!(lease.path().starts_with("/sem/"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_election_has_one_leader_who_hears_when_leadership_is_lost() {
    within_deadline(async {
        // A tick of 500 ms lets a session last 10 s, through a server restart.
        let config = ServerConfig {
            tick_ms: 500,
            ..ServerConfig::default()
        };
        let mut server = CoordServer::start_with(config).expect("server starts");
        let c = clients(&server, 3).await;
        let first = Election::new(&c[0], "/election", b"first");
        let mut leading = first.campaign().await.unwrap();
        assert_eq!(first.leader().await.unwrap().unwrap(), b"first");
        let second = Election::new(&c[1], "/election", b"second");
        let next = tokio::spawn(async move { second.campaign().await.unwrap() });
        while first.contenders().await.unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!next.is_finished());
        // Someone deletes the leader's node: the leader hears it has lost, the next one leads.
        c[2].delete(leading.path(), -1).await.unwrap();
        leading.lost().await;
        let mut second_leading = next.await.unwrap();
        assert_eq!(first.leader().await.unwrap().unwrap(), b"second");
        leading.resign().await.unwrap();

        // A leader whose connection breaks must stop leading at once.
        let lost = tokio::spawn(async move {
            second_leading.lost().await;
            second_leading
        });
        server.restart_on_same_port().expect("server restarts");
        let second_leading = lost.await.unwrap();
        // The session itself survived: it may campaign again once connected.
        let mut events = c[1].session_events();
        while c[1].state() != SessionState::Connected {
            events.next().await;
        }
        second_leading.resign().await.unwrap();
        assert_eq!(first.contenders().await.unwrap().len(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barriers_hold_back_until_lowered_or_full() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let c = clients(&server, 3).await;
        let barrier = Barrier::new(&c[0], "/b/gate");
        barrier.raise().await.unwrap();
        let waiter = Barrier::new(&c[1], "/b/gate");
        let waiting = tokio::spawn(async move { waiter.wait().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        barrier.remove().await.unwrap();
        waiting.await.unwrap();

        let entered = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for (i, client) in c.iter().enumerate() {
            let double = DoubleBarrier::new(client, "/b/double", 3, &format!("member-{i}"));
            let inside = entered.clone();
            tasks.push(tokio::spawn(async move {
                let entered = inside;
                double.enter().await.unwrap();
                // Nobody gets in before all three are.
                entered.fetch_add(1, Ordering::SeqCst);
                double.leave().await.unwrap();
                // Nobody gets out before all three entered.
                assert_eq!(entered.load(Ordering::SeqCst), 3);
            }));
            tokio::time::sleep(Duration::from_millis(30)).await;
            if i < 2 {
                assert_eq!(entered.load(Ordering::SeqCst), 0);
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert!(c[0].get_children("/b/double").await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_counts_every_add_and_a_queue_gives_each_item_once() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let c = clients(&server, 4).await;
        let mut tasks = Vec::new();
        for client in &c {
            let counter = Counter::new(client, "/counters/hits");
            tasks.push(tokio::spawn(async move {
                for _ in 0..25 {
                    counter.add(1).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let counter = Counter::new(&c[0], "/counters/hits");
        assert_eq!(counter.get().await.unwrap(), 100);
        assert_eq!(counter.add(-30).await.unwrap(), 70);
        // Decimal text, as kazoo reads it.
        assert_eq!(c[1].get_data("/counters/hits").await.unwrap().0, b"70");
        assert_eq!(
            Counter::new(&c[0], "/counters/none").get().await.unwrap(),
            0
        );

        let queue = Queue::new(&c[0], "/queue");
        assert_eq!(queue.try_take().await.unwrap(), None);
        for i in 0..20 {
            queue.put(format!("{i:02}").as_bytes()).await.unwrap();
        }
        assert_eq!(queue.len().await.unwrap(), 20);
        assert_eq!(queue.take().await.unwrap(), b"00");
        let taken = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for client in &c {
            let queue = Queue::new(client, "/queue");
            let taken = taken.clone();
            tasks.push(tokio::spawn(async move {
                while let Some(item) = queue.try_take().await.unwrap() {
                    taken.lock().unwrap().push(item);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let mut taken = taken.lock().unwrap().clone();
        taken.sort();
        let expected: Vec<Vec<u8>> = (1..20).map(|i| format!("{i:02}").into_bytes()).collect();
        assert_eq!(taken, expected, "every item once");
        // take() waits for an item.
        let waiting_queue = Queue::new(&c[1], "/queue");
        let waiting = tokio::spawn(async move { waiting_queue.take().await.unwrap() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        queue.put(b"late").await.unwrap();
        assert_eq!(waiting.await.unwrap(), b"late");
    })
    .await;
}

/// A relay between a client and `server` that, once armed, forwards the next request that
/// creates a protected node and then cuts the connection before its reply gets through.
async fn reply_cutting_relay(server: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // 1: cut the next protected create; 0: pass everything.
    let armed = Arc::new(AtomicUsize::new(0));
    let trigger = armed.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                continue;
            };
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = upstream.into_split();
            let cut = Arc::new(AtomicUsize::new(0));
            let (armed, cut_up) = (trigger.clone(), cut.clone());
            let up = tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = client_rx.read(&mut buf).await {
                    if n == 0 || server_tx.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                    let protected = buf[..n].windows(3).any(|w| w == b"_c_");
                    if protected && armed.swap(0, Ordering::SeqCst) == 1 {
                        cut_up.store(1, Ordering::SeqCst);
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = server_rx.read(&mut buf).await {
                    if n == 0 || cut.load(Ordering::SeqCst) == 1 {
                        break;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                up.abort();
            });
        }
    });
    (addr.to_string(), armed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_create_reply_was_lost_finds_its_node_instead_of_making_a_twin() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let (relay, armed) = reply_cutting_relay(server.addr()).await;
        let client = Client::connect(&relay, TIMEOUT).await.unwrap();
        let observer = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        let held = Lock::new(&observer, "/cut").acquire().await.unwrap();
        let mut events = client.session_events();
        armed.store(1, Ordering::SeqCst);
        let lock = Lock::new(&client, "/cut");
        let waiting = tokio::spawn(async move { lock.acquire().await.unwrap() });
        assert_eq!(events.next().await, Some(SessionState::Suspended));
        assert_eq!(events.next().await, Some(SessionState::Connected));
        while observer.get_children("/cut").await.unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        // One node for the waiter: the one whose reply was lost.
        assert_eq!(observer.get_children("/cut").await.unwrap().len(), 2);
        held.release().await.unwrap();
        let guard = waiting.await.unwrap();
        assert_eq!(observer.get_children("/cut").await.unwrap().len(), 1);
        guard.release().await.unwrap();
        assert!(observer.get_children("/cut").await.unwrap().is_empty());
    })
    .await;
}

/// A relay to `server` that can go dark: `dark` set, the connections it carries stop
/// forwarding and new ones are dropped at once, as if the server were unreachable.
async fn dimmable_relay(server: std::net::SocketAddr) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dark = Arc::new(AtomicUsize::new(0));
    let switch = dark.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            if switch.load(Ordering::SeqCst) == 1 {
                continue;
            }
            let Ok(upstream) = tokio::net::TcpStream::connect(server).await else {
                continue;
            };
            let (mut client_rx, mut client_tx) = client.into_split();
            let (mut server_rx, mut server_tx) = upstream.into_split();
            let (up, down) = (switch.clone(), switch.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = client_rx.read(&mut buf).await {
                    if n == 0 || up.load(Ordering::SeqCst) == 1 {
                        break;
                    }
                    if server_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = server_rx.read(&mut buf).await {
                    if n == 0 || down.load(Ordering::SeqCst) == 1 {
                        break;
                    }
                    if client_tx.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr.to_string(), dark)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_wait_given_up_while_suspended_leaves_no_node_behind() {
    within_deadline(async {
        // A tick of 500 ms lets the session outlive the dark spell below.
        let config = ServerConfig {
            tick_ms: 500,
            ..ServerConfig::default()
        };
        let server = CoordServer::start_with(config).expect("server starts");
        let (relay, dark) = dimmable_relay(server.addr()).await;
        let client = Client::connect(&relay, Duration::from_secs(3))
            .await
            .unwrap();
        let observer = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        let held = Lock::new(&observer, "/abandoned").acquire().await.unwrap();
        let mut events = client.session_events();
        dark.store(1, Ordering::SeqCst);
        assert_eq!(events.next().await, Some(SessionState::Suspended));
        // Suspended: the create waits in the session's queue, and the wait is given up first.
        let lock = Lock::new(&client, "/abandoned");
        let gave_up = lock.acquire_timeout(Duration::from_millis(100)).await;
        assert!(matches!(gave_up, Ok(None) | Err(_)));
        dark.store(0, Ordering::SeqCst);
        assert_eq!(events.next().await, Some(SessionState::Connected));
        // The create went out after the reconnect; its node must not stay in line.
        let mut left = Vec::new();
        for _ in 0..300 {
            left = observer.get_children("/abandoned").await.unwrap();
            if left.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        left = observer.get_children("/abandoned").await.unwrap_or(left);
        assert_eq!(left.len(), 1, "{left:?}");
        held.release().await.unwrap();
        assert!(Lock::new(&client, "/abandoned")
            .try_acquire()
            .await
            .unwrap()
            .is_some());
    })
    .await;
}
