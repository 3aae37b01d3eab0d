//! coord-client, the project's own Rust client, against a real server (coord, or ZooKeeper with
//! TARGET=zookeeper): the basic operations and the errors ZooKeeper gives them, connection
//! strings with several servers and a chroot, ephemerals that go with the session, and a
//! server that goes away.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coord_client::{
    Acl, AddWatchMode, Client, CreateMode, Error, ErrorCode, EventType, Op, OpResult, ReadOp,
    ReadResult, SessionState, WatcherType,
};
use coord_system_tests::{free_port, within_deadline, CoordServer, Target};

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_operations_and_their_errors() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let client = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        assert_ne!(client.session_id(), 0);
        let open = Acl::open_unsafe();
        let created = client
            .create("/basic", b"one", &open, CreateMode::Persistent)
            .await;
        assert_eq!(created.unwrap(), "/basic");
        assert_eq!(
            client
                .create("/basic", b"", &open, CreateMode::Persistent)
                .await,
            Err(Error::Server(ErrorCode::NodeExists))
        );
        let (data, stat) = client.get_data("/basic").await.unwrap();
        assert_eq!((data.as_slice(), stat.version), (&b"one"[..], 0));
        assert_eq!(
            client.set_data("/basic", b"two", 0).await.unwrap().version,
            1
        );
        assert_eq!(
            client.set_data("/basic", b"three", 0).await,
            Err(Error::Server(ErrorCode::BadVersion))
        );
        let seq = client
            .create("/basic/s-", b"", &open, CreateMode::PersistentSequential)
            .await
            .unwrap();
        assert_eq!(seq, "/basic/s-0000000000");
        assert_eq!(
            client.get_children("/basic").await.unwrap(),
            ["s-0000000000"]
        );
        assert!(client.exists("/basic").await.unwrap().is_some());
        assert_eq!(client.exists("/basic/none").await.unwrap(), None);
        assert_eq!(
            client.delete("/basic", -1).await,
            Err(Error::Server(ErrorCode::NotEmpty))
        );
        client.delete(&seq, -1).await.unwrap();
        client.delete("/basic", 1).await.unwrap();
        assert_eq!(
            client.get_data("/basic").await,
            Err(Error::Server(ErrorCode::NoNode))
        );
        client.close().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_skipped_and_a_chroot_is_applied() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let root = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        let open = Acl::open_unsafe();
        root.create("/app", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        // Nothing listens on the first address.
        let dead = format!("127.0.0.1:{}", free_port().unwrap());
        let hosts = format!("{dead},{}/app", server.connect_string());
        let app = Client::connect(&hosts, TIMEOUT).await.unwrap();
        assert_eq!(
            app.create("/x", b"in", &open, CreateMode::Persistent)
                .await
                .unwrap(),
            "/x"
        );
        assert_eq!(app.get_children("/").await.unwrap(), ["x"]);
        assert_eq!(root.get_data("/app/x").await.unwrap().0, b"in");
        assert!(matches!(
            Client::connect(&dead, TIMEOUT).await,
            Err(Error::Unreachable(_))
        ));
        assert!(matches!(
            Client::connect("127.0.0.1:2181/bad/", TIMEOUT).await,
            Err(Error::ConnectString(_))
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemerals_go_with_the_session_and_a_session_no_server_takes_back_is_lost() {
    within_deadline(async {
        let mut server = CoordServer::start().expect("server starts");
        let open = Acl::open_unsafe();
        let owner = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        owner
            .create("/e", b"", &open, CreateMode::Ephemeral)
            .await
            .unwrap();
        let short = Duration::from_millis(1500);
        let other = Client::connect(&server.connect_string(), short)
            .await
            .unwrap();
        assert!(other.exists("/e").await.unwrap().is_some());
        let clone = owner.clone();
        owner.close().await.unwrap();
        assert_eq!(clone.exists("/").await, Err(Error::Closed));
        assert_eq!(clone.state(), SessionState::Closed);
        assert_eq!(other.exists("/e").await.unwrap(), None);

        let mut events = other.session_events();
        let (_, _, pending_watch) = other.get_data_watch("/").await.unwrap();
        let stream = other
            .add_watch("/", AddWatchMode::PersistentRecursive)
            .await;
        let mut stream = stream.unwrap();
        server.kill9();
        // Requests wait for a server to take the session back; none does within the session
        // timeout, so the session is lost, and so is everything waiting on it. (One sent before
        // the client saw the connection end fails with ConnectionLoss: sent again, it waits.)
        let waiting = loop {
            match other.get_data("/").await {
                Err(Error::ConnectionLoss) => continue,
                other => break other.map(|_| ()),
            }
        };
        assert_eq!(waiting, Err(Error::SessionExpired));
        assert_eq!(events.next().await, Some(SessionState::Suspended));
        assert_eq!(events.next().await, Some(SessionState::Lost));
        assert_eq!(events.next().await, None);
        assert_eq!(other.state(), SessionState::Lost);
        assert_eq!(pending_watch.await, Err(Error::SessionExpired));
        assert_eq!(stream.next().await, Err(Error::SessionExpired));
        assert_eq!(other.exists("/").await, Err(Error::SessionExpired));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_fire_with_what_changed() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let open = Acl::open_unsafe();
        let writer = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        writer
            .create("/app", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        writer
            .create("/app/w", b"0", &open, CreateMode::Persistent)
            .await
            .unwrap();
        // The watcher's paths are under its chroot, events' paths too.
        let watcher = Client::connect(&format!("{}/app", server.connect_string()), TIMEOUT)
            .await
            .unwrap();
        let (data, _, data_changed) = watcher.get_data_watch("/w").await.unwrap();
        assert_eq!(data, b"0");
        let (none, created) = watcher.exists_watch("/w/c").await.unwrap();
        assert_eq!(none, None);
        let (children, children_changed) = watcher.get_children_watch("/w").await.unwrap();
        assert!(children.is_empty());

        writer.set_data("/app/w", b"1", -1).await.unwrap();
        let event = data_changed.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeDataChanged, "/w")
        );
        writer
            .create("/app/w/c", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        let event = created.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeCreated, "/w/c")
        );
        let event = children_changed.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeChildrenChanged, "/w")
        );

        // A watch dropped unfired is forgotten; the session goes on.
        let (_, _, dropped) = watcher.get_data_watch("/w").await.unwrap();
        drop(dropped);
        writer.set_data("/app/w", b"2", -1).await.unwrap();
        assert_eq!(watcher.get_data("/w").await.unwrap().0, b"2");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_acls_and_sync() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let open = Acl::open_unsafe();
        let client = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        client
            .create("/m", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        let done = client
            .multi(&[
                Op::Create {
                    path: "/m/a".into(),
                    data: b"a".to_vec(),
                    acl: open.clone(),
                    mode: CreateMode::Persistent,
                },
                Op::SetData {
                    path: "/m".into(),
                    data: b"m".to_vec(),
                    version: 0,
                },
                Op::Check {
                    path: "/m/a".into(),
                    version: 0,
                },
            ])
            .await
            .unwrap();
        assert_eq!(done.len(), 3);
        assert_eq!(
            done[0],
            OpResult::Create {
                path: "/m/a".into()
            }
        );
        assert!(matches!(done[1], OpResult::SetData { stat } if stat.version == 1));
        assert_eq!(done[2], OpResult::Check);
        // All or nothing: the second create fails, so the first does not happen either.
        let failed = client
            .multi(&[
                Op::Create {
                    path: "/m/b".into(),
                    data: vec![],
                    acl: open.clone(),
                    mode: CreateMode::Persistent,
                },
                Op::Create {
                    path: "/m/a".into(),
                    data: vec![],
                    acl: open.clone(),
                    mode: CreateMode::Persistent,
                },
            ])
            .await;
        assert_eq!(failed, Err(Error::Server(ErrorCode::NodeExists)));
        assert_eq!(client.exists("/m/b").await.unwrap(), None);

        let (acl, stat) = client.get_acl("/m/a").await.unwrap();
        assert_eq!((acl, stat.aversion), (open.clone(), 0));
        let read_only = Acl::read_unsafe();
        assert_eq!(
            client.set_acl("/m/a", &read_only, 5).await,
            Err(Error::Server(ErrorCode::BadVersion))
        );
        assert_eq!(
            client
                .set_acl("/m/a", &read_only, 0)
                .await
                .unwrap()
                .aversion,
            1
        );
        assert_eq!(client.get_acl("/m/a").await.unwrap().0, read_only);
        // Without ADMIN now, even the ACL cannot change back.
        assert_eq!(
            client.set_acl("/m/a", &open, 1).await,
            Err(Error::Server(ErrorCode::NoAuth))
        );
        assert_eq!(client.sync("/m").await.unwrap(), "/m");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_watches_are_streams_until_removed() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let open = Acl::open_unsafe();
        let writer = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        writer
            .create("/app", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        let watcher = Client::connect(&format!("{}/app", server.connect_string()), TIMEOUT)
            .await
            .unwrap();
        let mut tree = watcher
            .add_watch("/", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        let mut node = watcher
            .add_watch("/p", AddWatchMode::Persistent)
            .await
            .unwrap();
        writer
            .create("/app/p", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        writer
            .create("/app/p/q", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        writer.set_data("/app/p/q", b"1", -1).await.unwrap();
        writer.set_data("/app/p", b"1", -1).await.unwrap();
        let seen = |event: coord_client::WatchedEvent| (event.event_type, event.path);
        // The recursive watch sees every node below it, in order, and no child list changes.
        for expected in [
            (EventType::NodeCreated, "/p"),
            (EventType::NodeCreated, "/p/q"),
            (EventType::NodeDataChanged, "/p/q"),
            (EventType::NodeDataChanged, "/p"),
        ] {
            let event = seen(tree.next().await.unwrap());
            assert_eq!((event.0, event.1.as_str()), expected);
        }
        // The plain persistent watch sees its own node, its child list included, and stays.
        for expected in [
            (EventType::NodeCreated, "/p"),
            (EventType::NodeChildrenChanged, "/p"),
            (EventType::NodeDataChanged, "/p"),
        ] {
            let event = seen(node.next().await.unwrap());
            assert_eq!((event.0, event.1.as_str()), expected);
        }
        // ZooKeeper before 3.9 removes a persistent watch only with all the others (Any).
        let persistent = if server.target() == Target::ZooKeeper {
            WatcherType::Any
        } else {
            WatcherType::Persistent
        };
        watcher.remove_watches("/p", persistent).await.unwrap();
        let event = seen(node.next().await.unwrap());
        assert_eq!(
            (event.0, event.1.as_str()),
            (EventType::PersistentWatchRemoved, "/p")
        );
        assert_eq!(node.next().await, Err(Error::Server(ErrorCode::NoWatcher)));
        assert_eq!(
            watcher.remove_watches("/p", persistent).await,
            Err(Error::Server(ErrorCode::NoWatcher))
        );
        // A one-shot watch removed hears it.
        let (_, _, data) = watcher.get_data_watch("/p").await.unwrap();
        watcher
            .remove_watches("/p", WatcherType::Data)
            .await
            .unwrap();
        assert_eq!(data.await.unwrap().event_type, EventType::DataWatchRemoved);
        // The recursive watch saw nothing of that, and still sees deletions.
        writer.delete("/app/p/q", -1).await.unwrap();
        let event = seen(tree.next().await.unwrap());
        assert_eq!(
            (event.0, event.1.as_str()),
            (EventType::NodeDeleted, "/p/q")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_of_the_api() {
    within_deadline(async {
        let server = CoordServer::start().expect("server starts");
        let open = Acl::open_unsafe();
        let client = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        let (path, stat) = client
            .create2("/r", b"r", &open, CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!((path.as_str(), stat.data_length), ("/r", 1));
        let (path, stat) = client
            .create_ttl(
                "/r/t-",
                b"",
                &open,
                CreateMode::PersistentSequentialWithTtl,
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        assert_eq!((path.as_str(), stat.version), ("/r/t-0000000000", 0));
        assert_eq!(
            client
                .create_ttl(
                    "/r/x",
                    b"",
                    &open,
                    CreateMode::Persistent,
                    Duration::from_secs(1)
                )
                .await,
            Err(Error::Server(ErrorCode::BadArguments))
        );
        client
            .create("/r/e", b"", &open, CreateMode::Ephemeral)
            .await
            .unwrap();
        assert_eq!(client.get_ephemerals("/r").await.unwrap(), ["/r/e"]);
        assert_eq!(client.get_all_children_number("/r").await.unwrap(), 2);
        let (mut children, stat) = client.get_children2("/r").await.unwrap();
        children.sort();
        assert_eq!(
            (children, stat.num_children),
            (vec!["e".to_owned(), "t-0000000000".to_owned()], 2)
        );

        let reads = client
            .multi_read(&[
                ReadOp::GetData { path: "/r".into() },
                ReadOp::GetChildren {
                    path: "/none".into(),
                },
                ReadOp::GetChildren {
                    path: "/r/e".into(),
                },
            ])
            .await
            .unwrap();
        assert!(matches!(&reads[0], Ok(ReadResult::Data { data, .. }) if data.as_ref() == b"r"));
        assert_eq!(reads[1], Err(Error::Server(ErrorCode::NoNode)));
        assert_eq!(
            reads[2],
            Ok(ReadResult::Children {
                children: Vec::new()
            })
        );

        // Digest credentials: the node is the creator's alone.
        client.add_auth("digest", b"alice:secret").await.unwrap();
        let ids = client.who_am_i().await.unwrap();
        assert!(ids
            .iter()
            .any(|info| info.auth_scheme == "digest" && info.user == "alice"));
        client
            .create("/r/mine", b"m", &Acl::creator_all(), CreateMode::Persistent)
            .await
            .unwrap();
        assert_eq!(client.get_data("/r/mine").await.unwrap().0, b"m");
        let stranger = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            stranger.get_data("/r/mine").await,
            Err(Error::Server(ErrorCode::NoAuth))
        );
        assert_eq!(
            stranger.add_auth("no-such-scheme", b"x").await,
            Err(Error::Server(ErrorCode::AuthFailed))
        );
    })
    .await;
}
