//! coord-client, the project's own Rust client, against a real server (coord, or ZooKeeper with
//! TARGET=zookeeper): the basic operations and the errors ZooKeeper gives them, connection
//! strings with several servers and a chroot, ephemerals that go with the session, and a
//! server that goes away.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coord_client::{Acl, Client, CreateMode, Error, ErrorCode, EventType, Op, OpResult};
use coord_system_tests::{free_port, within_deadline, CoordServer};

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
async fn ephemerals_go_with_the_session_and_a_lost_server_is_connection_loss() {
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
        let other = Client::connect(&server.connect_string(), TIMEOUT)
            .await
            .unwrap();
        assert!(other.exists("/e").await.unwrap().is_some());
        owner.close().await.unwrap();
        assert_eq!(other.exists("/e").await.unwrap(), None);

        server.kill9();
        assert_eq!(
            other.get_data("/").await.map(|_| ()),
            Err(Error::ConnectionLoss)
        );
        assert_eq!(
            other.get_data("/").await.map(|_| ()),
            Err(Error::ConnectionLoss)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_fire_with_what_changed_and_end_with_the_connection() {
    within_deadline(async {
        let mut server = CoordServer::start().expect("server starts");
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

        // A watch still waiting when the server goes ends with the connection.
        let (_, _, never) = watcher.get_data_watch("/w").await.unwrap();
        server.kill9();
        assert_eq!(never.await, Err(Error::ConnectionLoss));
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
