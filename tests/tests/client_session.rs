//! coord-client's session across connections: a server restarted under it, and a member of an
//! ensemble that goes away. The session, its ephemerals, its watches and its credentials must
//! all come through, and the session's events must say what happened.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use coord_client::{Acl, AddWatchMode, Client, CreateMode, Error, EventType, SessionState};
use coord_system_tests::ensemble::Ensemble;
use coord_system_tests::{within_deadline, CoordServer, ServerConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_takes_the_session_back_with_its_watches_and_credentials() {
    within_deadline(async {
        // A tick of 500 ms lets a session last 10 s: longer than ZooKeeper takes to restart.
        let config = ServerConfig {
            tick_ms: 500,
            ..ServerConfig::default()
        };
        let mut server = CoordServer::start_with(config).expect("server starts");
        let open = Acl::open_unsafe();
        let a = Client::connect(&server.connect_string(), Duration::from_secs(10))
            .await
            .unwrap();
        a.add_auth("digest", b"alice:secret").await.unwrap();
        a.create("/secret", b"s", &Acl::creator_all(), CreateMode::Persistent)
            .await
            .unwrap();
        for path in ["/d", "/c", "/t", "/gone"] {
            a.create(path, b"", &open, CreateMode::Persistent)
                .await
                .unwrap();
        }
        a.create("/e", b"", &open, CreateMode::Ephemeral)
            .await
            .unwrap();
        let (_, _, data_changed) = a.get_data_watch("/d").await.unwrap();
        let (_, children_changed) = a.get_children_watch("/c").await.unwrap();
        let (_, created) = a.exists_watch("/new").await.unwrap();
        // On a node that exists, an exists watch waits for a change or the deletion: set again
        // after the reconnect, it must not fire at once as if the node had been created.
        let (found, deleted) = a.exists_watch("/gone").await.unwrap();
        assert!(found.is_some());
        // Not on /c: ZooKeeper before 3.9 keeps one watch mode per path (ZOOKEEPER-4466).
        let mut tree = a
            .add_watch("/t", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        let mut events = a.session_events();
        let session = a.session_id();

        server.restart_on_same_port().expect("server restarts");
        assert_eq!(events.next().await, Some(SessionState::Suspended));
        assert_eq!(events.next().await, Some(SessionState::Connected));
        assert_eq!(a.session_id(), session);
        assert_eq!(a.state(), SessionState::Connected);
        // The credentials were presented again.
        assert_eq!(a.get_data("/secret").await.unwrap().0, b"s");

        let b = Client::connect(&server.connect_string(), Duration::from_secs(10))
            .await
            .unwrap();
        assert!(
            b.exists("/e").await.unwrap().is_some(),
            "the ephemeral outlived the restart"
        );
        b.set_data("/d", b"1", -1).await.unwrap();
        b.create("/c/k", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        b.create("/t/k", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        b.create("/new", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        let event = data_changed.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeDataChanged, "/d")
        );
        let event = children_changed.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeChildrenChanged, "/c")
        );
        let event = created.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeCreated, "/new")
        );
        b.delete("/gone", -1).await.unwrap();
        let event = deleted.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeDeleted, "/gone")
        );
        // The persistent watch says first that changes may have gone unreported meanwhile.
        assert_eq!(tree.next().await, Err(Error::ConnectionLoss));
        let event = tree.next().await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeCreated, "/t/k")
        );
        a.close().await.unwrap();
        assert_eq!(b.exists("/e").await.unwrap(), None);
    })
    .await;
}

/// Retries a write a member's re-election cut short; a set_data to any version is idempotent.
async fn set_data_retrying(client: &Client, path: &str, data: &[u8]) {
    loop {
        match client.set_data(path, data, -1).await {
            Ok(_) => return,
            Err(Error::ConnectionLoss) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("set_data {path}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_moves_to_another_member_and_hears_what_it_missed() {
    if !coord_system_tests::is_coord() {
        return;
    }
    within_deadline(async {
        let mut ensemble =
            Ensemble::start(3, 100, "max_session_timeout_ms = 10000\n").expect("ensemble starts");
        let open = Acl::open_unsafe();
        let a = Client::connect(&ensemble.connect_string(), Duration::from_secs(6))
            .await
            .unwrap();
        let on = a.server().unwrap();
        let lost = ensemble
            .nodes
            .iter()
            .position(|node| node.client_addr.to_string() == on)
            .unwrap();
        let other = (lost + 1) % 3;
        let b = Client::connect(
            &ensemble.nodes[other].client_addr.to_string(),
            Duration::from_secs(6),
        )
        .await
        .unwrap();
        for path in ["/w", "/p"] {
            b.create(path, b"", &open, CreateMode::Persistent)
                .await
                .unwrap();
        }
        a.sync("/").await.unwrap();
        let (_, _, changed) = a.get_data_watch("/w").await.unwrap();
        let mut tree = a
            .add_watch("/p", AddWatchMode::PersistentRecursive)
            .await
            .unwrap();
        let mut events = a.session_events();
        let session = a.session_id();

        // a's member stops answering. The change below is committed by the other two while a
        // still waits on it, so a can only hear of it from the member it moves to.
        ensemble.pause(lost);
        set_data_retrying(&b, "/w", b"moved").await;
        let event = changed.await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeDataChanged, "/w")
        );
        assert_eq!(events.next().await, Some(SessionState::Suspended));
        assert_eq!(events.next().await, Some(SessionState::Connected));
        assert_eq!(a.session_id(), session);
        assert_ne!(a.server().unwrap(), on);
        assert_eq!(a.get_data("/w").await.unwrap().0, b"moved");
        // The persistent watch was set again on the new member, and says it moved.
        assert_eq!(tree.next().await, Err(Error::ConnectionLoss));
        b.create("/p/x", b"", &open, CreateMode::Persistent)
            .await
            .unwrap();
        let event = tree.next().await.unwrap();
        assert_eq!(
            (event.event_type, event.path.as_str()),
            (EventType::NodeCreated, "/p/x")
        );
        ensemble.resume(lost);
    })
    .await;
}
