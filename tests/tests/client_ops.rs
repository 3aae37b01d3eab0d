//! Every client operation through the third-party `zookeeper-client` crate, asserting exact
//! ZooKeeper results (these pass against Apache ZooKeeper 3.8 with `TARGET=zookeeper`).

use std::time::Duration;

use base64::Engine as _;
use coord_system_tests::raw::{self, err, op, Jute, RawConn, Read};
use coord_system_tests::{connect_client, within_deadline, CoordServer, Target};
use sha1::{Digest, Sha1};
use tokio::time::{sleep, timeout, Instant};
use zookeeper_client as zk;

const OPEN: zk::CreateOptions<'static> =
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all());
const EPHEMERAL: zk::CreateOptions<'static> =
    zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all());
const EVENT_WAIT: Duration = Duration::from_secs(10);

async fn start() -> (CoordServer, zk::Client) {
    let server = CoordServer::start().expect("server starts");
    let client = connect_client(&server, Duration::from_secs(10))
        .await
        .expect("client connects");
    (server, client)
}

async fn client_for(server: &CoordServer) -> zk::Client {
    connect_client(server, Duration::from_secs(10))
        .await
        .expect("client connects")
}

/// `digest` scheme id: `user:base64(sha1("user:password"))`.
fn digest_id(user: &str, password: &str) -> String {
    let hash = Sha1::digest(format!("{user}:{password}").as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

async fn event(watcher: zk::OneshotWatcher) -> zk::WatchedEvent {
    timeout(EVENT_WAIT, watcher.changed())
        .await
        .expect("watch event arrives")
}

async fn next_event(watcher: &mut zk::PersistentWatcher) -> zk::WatchedEvent {
    timeout(EVENT_WAIT, watcher.changed())
        .await
        .expect("persistent watch event arrives")
}

/// Polls until `path` is gone (the reaper removed it) or the deadline passes.
async fn wait_gone(client: &zk::Client, path: &str, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if client.check_stat(path).await.expect("exists").is_none() {
            return true;
        }
        sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_persistent_sets_exact_stat_on_node_and_parent() {
    within_deadline(async move {
        let (_server, client) = start().await;
        let (created, seq) = client.create("/p", b"hello", &OPEN).await.expect("create");
        assert_eq!(seq.into_i64(), -1, "non-sequential create has no sequence");
        assert_eq!(created.version, 0);
        assert_eq!(created.cversion, 0);
        assert_eq!(created.aversion, 0);
        assert_eq!(created.ephemeral_owner, 0);
        assert_eq!(created.data_length, 5);
        assert_eq!(created.num_children, 0);
        assert_eq!(created.czxid, created.mzxid);
        assert_eq!(
            created.pzxid, created.czxid,
            "a new node's pzxid is its czxid"
        );
        assert_eq!(created.ctime, created.mtime);
        assert!(created.czxid > 0);

        let (data, stat) = client.get_data("/p").await.expect("get_data");
        assert_eq!(data, b"hello");
        assert_eq!(stat, created, "create2's stat equals the stored stat");

        let (child, _) = client
            .create("/p/c", b"", &OPEN)
            .await
            .expect("create child");
        assert_eq!(child.data_length, 0);
        assert!(child.czxid > created.czxid);
        let parent = client
            .check_stat("/p")
            .await
            .expect("exists")
            .expect("parent");
        assert_eq!(parent.num_children, 1);
        assert_eq!(parent.cversion, 1);
        assert_eq!(
            parent.pzxid, child.czxid,
            "parent pzxid is the child's create zxid"
        );
        assert_eq!(
            parent.version, 0,
            "a child create does not change the data version"
        );
        assert_eq!(parent.mzxid, created.mzxid);

        client.delete("/p/c", None).await.expect("delete child");
        let parent2 = client
            .check_stat("/p")
            .await
            .expect("exists")
            .expect("parent");
        assert_eq!(parent2.num_children, 0);
        assert_eq!(parent2.cversion, 2, "a child delete bumps cversion");
        assert!(parent2.pzxid > child.czxid, "a child delete moves pzxid");

        assert_eq!(
            client.create("/p", b"", &OPEN).await.unwrap_err(),
            zk::Error::NodeExists
        );
        assert_eq!(
            client.create("/missing/c", b"", &OPEN).await.unwrap_err(),
            zk::Error::NoNode
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ephemeral_nodes_belong_to_the_session_and_take_no_children() {
    within_deadline(async move {
        let (server, client) = start().await;
        let (stat, _) = client.create("/e", b"x", &EPHEMERAL).await.expect("create");
        assert_eq!(stat.ephemeral_owner, client.session_id().0);
        assert_eq!(
            client.create("/e/child", b"", &OPEN).await.unwrap_err(),
            zk::Error::NoChildrenForEphemerals
        );

        client
            .create("/eph-dir", b"", &OPEN)
            .await
            .expect("create dir");
        client
            .create("/eph-dir/a", b"", &EPHEMERAL)
            .await
            .expect("create a");
        let mut ephemerals = client.list_ephemerals("/").await.expect("getEphemerals");
        ephemerals.sort();
        assert_eq!(ephemerals, vec!["/e".to_string(), "/eph-dir/a".to_string()]);
        assert_eq!(
            client
                .list_ephemerals("/eph-dir")
                .await
                .expect("getEphemerals"),
            vec!["/eph-dir/a".to_string()]
        );

        // Another session sees them, and sees them go when the owner closes its session.
        let observer = client_for(&server).await;
        let (stat, watcher) = observer.check_and_watch_stat("/e").await.expect("exists");
        assert_eq!(stat.expect("exists").ephemeral_owner, client.session_id().0);
        assert!(observer
            .list_ephemerals("/")
            .await
            .expect("getEphemerals")
            .is_empty());
        drop(client);
        let deleted = event(watcher).await;
        assert_eq!(deleted.event_type, zk::EventType::NodeDeleted);
        assert_eq!(deleted.path, "/e");
        assert_eq!(observer.check_stat("/e").await.expect("exists"), None);
        assert_eq!(
            observer.check_stat("/eph-dir/a").await.expect("exists"),
            None
        );
        let (_, dir) = observer.get_children("/eph-dir").await.expect("children");
        assert_eq!(dir.num_children, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_names_use_ten_digits_from_parent_cversion() {
    within_deadline(async move {
        let (_server, client) = start().await;
        let seq_open = zk::CreateMode::PersistentSequential.with_acls(zk::Acls::anyone_all());
        let seq_ephemeral = zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all());
        client.create("/s", b"", &OPEN).await.expect("create");
        let (_, first) = client.create("/s/n-", b"", &seq_open).await.expect("seq");
        assert_eq!(first.to_string(), "0000000000");
        let (_, second) = client
            .create("/s/n-", b"", &seq_ephemeral)
            .await
            .expect("seq");
        assert_eq!(second.into_i64(), 1);
        client.create("/s/plain", b"", &OPEN).await.expect("plain");
        // cversion is now 3 (three creates): a plain child advances the counter too.
        let (_, third) = client.create("/s/n-", b"", &seq_open).await.expect("seq");
        assert_eq!(third.into_i64(), 3);
        // A bare parent path as prefix: the name is only the digits.
        let (_, fourth) = client.create("/s/", b"", &seq_open).await.expect("seq");
        assert_eq!(fourth.into_i64(), 4);

        let mut children = client.list_children("/s").await.expect("children");
        children.sort();
        assert_eq!(
            children,
            vec![
                "0000000004".to_string(),
                "n-0000000000".to_string(),
                "n-0000000001".to_string(),
                "n-0000000003".to_string(),
                "plain".to_string(),
            ]
        );
        let (_, stat) = client.get_data("/s/n-0000000001").await.expect("get");
        assert_eq!(stat.ephemeral_owner, client.session_id().0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_reaped_after_their_last_child_goes() {
    within_deadline(async move {
        let (_server, client) = start().await;
        let container = zk::CreateMode::Container.with_acls(zk::Acls::anyone_all());
        let (stat, _) = client
            .create("/used", b"", &container)
            .await
            .expect("create");
        // A container's internal ephemeralOwner marker is not shown to clients.
        assert_eq!(stat.ephemeral_owner, 0);
        assert_eq!(client.get_data("/used").await.expect("get").1, stat);
        client
            .create("/never-used", b"", &container)
            .await
            .expect("create");
        client.create("/used/c", b"", &OPEN).await.expect("child");
        client.delete("/used/c", None).await.expect("delete child");
        assert!(
            wait_gone(&client, "/used", Duration::from_secs(10)).await,
            "an emptied container is removed by the reaper"
        );
        // The reaper has run at least once: a container that never had a child stays.
        sleep(Duration::from_millis(500)).await;
        let stat = client.check_stat("/never-used").await.expect("exists");
        assert!(stat.is_some(), "a never-used container is kept");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_nodes_expire_and_untouched_ones_without_ttl_stay() {
    within_deadline(async move {
        let (_server, client) = start().await;
        let ttl = zk::CreateMode::Persistent
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_millis(300));
        let (created, _) = client.create("/ttl", b"t", &ttl).await.expect("create ttl");
        let (_, stored) = client.get_data("/ttl").await.expect("get");
        // ZooKeeper stores the ttl in ephemeralOwner internally but shows clients 0.
        assert_eq!(created.ephemeral_owner, 0);
        assert_eq!(stored, created);
        let seq_ttl = zk::CreateMode::PersistentSequential
            .with_acls(zk::Acls::anyone_all())
            .with_ttl(Duration::from_millis(300));
        client.create("/ttl-dir", b"", &OPEN).await.expect("dir");
        let (_, seq) = client
            .create("/ttl-dir/s-", b"", &seq_ttl)
            .await
            .expect("sequential ttl");
        assert_eq!(seq.into_i64(), 0);
        client.create("/plain", b"", &OPEN).await.expect("plain");
        assert!(
            wait_gone(&client, "/ttl", Duration::from_secs(10)).await,
            "an expired TTL node is removed"
        );
        assert!(
            wait_gone(&client, "/ttl-dir/s-0000000000", Duration::from_secs(10)).await,
            "an expired sequential TTL node is removed"
        );
        assert!(client.check_stat("/plain").await.expect("exists").is_some());
        assert!(client
            .check_stat("/ttl-dir")
            .await
            .expect("exists")
            .is_some());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_and_set_data_honour_versions() {
    within_deadline(async move {
        let (_server, client) = start().await;
        client.create("/v", b"0", &OPEN).await.expect("create");
        let s1 = client.set_data("/v", b"1", Some(0)).await.expect("set v0");
        assert_eq!(s1.version, 1);
        assert_eq!(s1.data_length, 1);
        assert!(s1.mzxid > s1.czxid);
        assert!(s1.mtime >= s1.ctime);
        assert_eq!(
            client.set_data("/v", b"x", Some(0)).await.unwrap_err(),
            zk::Error::BadVersion
        );
        let s2 = client.set_data("/v", b"22", None).await.expect("set any");
        assert_eq!(s2.version, 2);
        assert_eq!(s2.data_length, 2);
        assert_eq!(client.get_data("/v").await.expect("get").0, b"22");
        assert_eq!(
            client.set_data("/nope", b"", None).await.unwrap_err(),
            zk::Error::NoNode
        );

        client.create("/v/c", b"", &OPEN).await.expect("child");
        assert_eq!(
            client.delete("/v", None).await.unwrap_err(),
            zk::Error::NotEmpty
        );
        client.delete("/v/c", Some(0)).await.expect("delete child");
        assert_eq!(
            client.delete("/v", Some(1)).await.unwrap_err(),
            zk::Error::BadVersion
        );
        client.delete("/v", Some(2)).await.expect("delete v2");
        assert_eq!(
            client.delete("/v", None).await.unwrap_err(),
            zk::Error::NoNode
        );
        assert_eq!(client.check_stat("/v").await.expect("exists"), None);
        assert_eq!(client.get_data("/v").await.unwrap_err(), zk::Error::NoNode);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_versions_digest_auth_and_whoami() {
    within_deadline(async move {
        let (server, alice) = start().await;
        alice
            .auth("digest", b"alice:secret")
            .await
            .expect("digest auth");
        let mut users = alice.list_auth_users().await.expect("whoami");
        users.sort_by(|a, b| a.scheme().cmp(b.scheme()));
        let users: Vec<(String, String)> = users
            .iter()
            .map(|u| (u.scheme().to_string(), u.user().to_string()))
            .collect();
        assert_eq!(
            users,
            vec![
                ("digest".to_string(), "alice".to_string()),
                ("ip".to_string(), "127.0.0.1".to_string()),
            ]
        );

        // creator_all (auth scheme) becomes the creator's digest id.
        let creator = zk::CreateMode::Persistent.with_acls(zk::Acls::creator_all());
        alice
            .create("/secure", b"s", &creator)
            .await
            .expect("create");
        let (acl, stat) = alice.get_acl("/secure").await.expect("get_acl");
        let alice_id = digest_id("alice", "secret");
        assert_eq!(
            acl,
            vec![zk::Acl::new(
                zk::Permission::ALL,
                zk::AuthId::new("digest", &alice_id)
            )]
        );
        assert_eq!(stat.aversion, 0);

        let bob = client_for(&server).await;
        let anon: Vec<(String, String)> = bob
            .list_auth_users()
            .await
            .expect("whoami")
            .iter()
            .map(|u| (u.scheme().to_string(), u.user().to_string()))
            .collect();
        assert_eq!(anon, vec![("ip".to_string(), "127.0.0.1".to_string())]);
        assert_eq!(
            bob.get_data("/secure").await.unwrap_err(),
            zk::Error::NoAuth
        );
        assert_eq!(
            bob.set_data("/secure", b"x", None).await.unwrap_err(),
            zk::Error::NoAuth
        );
        assert_eq!(
            bob.create("/secure/c", b"", &OPEN).await.unwrap_err(),
            zk::Error::NoAuth
        );
        // ZooKeeper 3.9 checks READ on exists of an existing node (FinalRequestProcessor);
        // the 3.8 reference checked nothing. getACL needs READ or ADMIN in both.
        if server.target() != Target::ZooKeeper {
            assert_eq!(
                bob.check_stat("/secure").await.unwrap_err(),
                zk::Error::NoAuth
            );
        } else {
            assert!(bob.check_stat("/secure").await.expect("exists").is_some());
        }
        assert_eq!(bob.get_acl("/secure").await.unwrap_err(), zk::Error::NoAuth);
        // Without an authenticated identity, the auth scheme is an invalid ACL.
        assert_eq!(
            bob.create("/bob", b"", &creator).await.unwrap_err(),
            zk::Error::InvalidAcl
        );
        assert_eq!(alice.get_data("/secure").await.expect("get").0, b"s");

        // setACL checks aversion and bumps it.
        let read_only = [zk::Acl::new(zk::Permission::READ, zk::AuthId::anyone())];
        assert_eq!(
            alice
                .set_acl("/secure", &read_only, Some(3))
                .await
                .unwrap_err(),
            zk::Error::BadVersion
        );
        let stat = alice
            .set_acl("/secure", &read_only, Some(0))
            .await
            .expect("set_acl");
        assert_eq!(stat.aversion, 1);
        assert_eq!(stat.version, 0, "setACL does not touch the data version");
        assert_eq!(bob.get_data("/secure").await.expect("get").0, b"s");
        assert_eq!(
            bob.set_data("/secure", b"x", None).await.unwrap_err(),
            zk::Error::NoAuth
        );
        let (acl, stat) = bob.get_acl("/secure").await.expect("get_acl");
        assert_eq!(acl, read_only.to_vec());
        assert_eq!(stat.aversion, 1);
        // Only ADMIN may change an ACL.
        assert_eq!(
            bob.set_acl("/secure", &read_only, None).await.unwrap_err(),
            zk::Error::NoAuth
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_counts_sync_and_exists() {
    within_deadline(async move {
        let (_server, client) = start().await;
        assert_eq!(client.check_stat("/t").await.expect("exists"), None);
        client.create("/t", b"", &OPEN).await.expect("t");
        for path in ["/t/a", "/t/b", "/t/a/x", "/t/a/y", "/t/a/y/z"] {
            client.create(path, b"", &OPEN).await.expect("create");
        }
        let mut children = client.list_children("/t").await.expect("children");
        children.sort();
        assert_eq!(children, vec!["a".to_string(), "b".to_string()]);
        let (mut children, stat) = client.get_children("/t/a").await.expect("children2");
        children.sort();
        assert_eq!(children, vec!["x".to_string(), "y".to_string()]);
        assert_eq!(stat.num_children, 2);
        assert_eq!(stat.cversion, 2);
        assert_eq!(
            client.count_descendants_number("/t").await.expect("count"),
            5
        );
        assert_eq!(
            client
                .count_descendants_number("/t/a/y/z")
                .await
                .expect("count"),
            0
        );
        assert_eq!(
            client.count_descendants_number("/none").await.unwrap_err(),
            zk::Error::NoNode
        );
        assert_eq!(
            client.list_children("/none").await.unwrap_err(),
            zk::Error::NoNode
        );
        client.sync("/t").await.expect("sync");
        let stat = client.check_stat("/t/b").await.expect("exists").expect("b");
        assert_eq!(stat.num_children, 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_is_atomic_and_multi_read_reports_per_op_errors() {
    within_deadline(async move {
        let (_server, client) = start().await;
        client.create("/m", b"m", &OPEN).await.expect("create");

        // A failing check rolls back the create before it.
        let mut writer = client.new_multi_writer();
        writer.add_create("/m/a", b"a", &OPEN).expect("op");
        writer.add_check_version("/m", 7).expect("op");
        writer.add_set_data("/m", b"never", None).expect("op");
        let failure = writer.commit().await.unwrap_err();
        assert_eq!(
            failure,
            zk::MultiWriteError::OperationFailed {
                index: 1,
                source: zk::Error::BadVersion
            }
        );
        assert_eq!(client.check_stat("/m/a").await.expect("exists"), None);
        let (data, stat) = client.get_data("/m").await.expect("get");
        assert_eq!(data, b"m");
        assert_eq!(stat.version, 0);
        assert_eq!(stat.cversion, 0, "a rolled-back create leaves no trace");

        // All succeed together.
        let mut writer = client.new_multi_writer();
        writer.add_check_version("/m", 0).expect("op");
        writer.add_create("/m/a", b"a", &OPEN).expect("op");
        writer.add_set_data("/m", b"m2", Some(0)).expect("op");
        writer.add_create("/m/b", b"b", &OPEN).expect("op");
        writer.add_delete("/m/b", Some(0)).expect("op");
        let results = writer.commit().await.expect("multi");
        assert_eq!(results.len(), 5);
        assert_eq!(results[0], zk::MultiWriteResult::Check);
        let zk::MultiWriteResult::Create { path, stat: a_stat } = &results[1] else {
            panic!("expected create result, got {:?}", results[1]);
        };
        assert_eq!(path, "/m/a");
        let zk::MultiWriteResult::SetData { stat: m_stat } = &results[2] else {
            panic!("expected set_data result, got {:?}", results[2]);
        };
        assert_eq!(m_stat.version, 1);
        assert_eq!(results[4], zk::MultiWriteResult::Delete);
        // Every op of one multi shares one zxid.
        assert_eq!(
            m_stat.mzxid,
            client.get_data("/m/a").await.expect("get").1.czxid
        );
        if !a_stat.is_invalid() {
            assert_eq!(a_stat.czxid, m_stat.mzxid);
        }
        assert_eq!(client.check_stat("/m/b").await.expect("exists"), None);

        // Check writer: a check on the path first, then writes.
        let mut check = client
            .new_check_writer("/m", Some(1))
            .expect("check writer");
        check.add_set_data("/m/a", b"a2", Some(0)).expect("op");
        check.commit().await.expect("check multi");
        let mut check = client
            .new_check_writer("/m", Some(0))
            .expect("check writer");
        check.add_set_data("/m/a", b"a3", None).expect("op");
        assert!(
            check.commit().await.is_err(),
            "a stale check fails the multi"
        );
        assert_eq!(client.get_data("/m/a").await.expect("get").0, b"a2");

        // Multi read: each op answers on its own, an error does not fail the others.
        let mut reader = client.new_multi_reader();
        reader.add_get_data("/m/a").expect("op");
        reader.add_get_children("/m").expect("op");
        reader.add_get_data("/m/none").expect("op");
        let mut results = reader.commit().await.expect("multi read");
        assert_eq!(results.len(), 3);
        match results.remove(0) {
            zk::MultiReadResult::Data { data, stat } => {
                assert_eq!(data, b"a2");
                assert_eq!(stat.version, 1);
            }
            other => panic!("expected data, got {other:?}"),
        }
        match results.remove(0) {
            zk::MultiReadResult::Children { children } => assert_eq!(children, vec!["a"]),
            other => panic!("expected children, got {other:?}"),
        }
        match results.remove(0) {
            zk::MultiReadResult::Error { err } => assert_eq!(err, zk::Error::NoNode),
            other => panic!("expected NoNode, got {other:?}"),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_watches_fire_once_per_registration() {
    within_deadline(async move {
        let (server, client) = start().await;
        let writer = client_for(&server).await;

        // exists watch on a missing node fires NodeCreated.
        let (stat, created) = client.check_and_watch_stat("/w").await.expect("exists");
        assert_eq!(stat, None);
        writer.create("/w", b"0", &OPEN).await.expect("create");
        let e = event(created).await;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (zk::EventType::NodeCreated, "/w")
        );

        // data watch fires NodeDataChanged, once.
        let (_, _, changed) = client.get_and_watch_data("/w").await.expect("get");
        writer.set_data("/w", b"1", None).await.expect("set");
        let e = event(changed).await;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (zk::EventType::NodeDataChanged, "/w")
        );

        // child watch fires NodeChildrenChanged on the parent path.
        let (_, _, children) = client.get_and_watch_children("/w").await.expect("children");
        writer
            .create("/w/c", b"", &OPEN)
            .await
            .expect("create child");
        let e = event(children).await;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/w")
        );

        // A child's data change does not fire the parent's data watch; its deletion fires NodeDeleted.
        let (_, _, data_watch) = client.get_and_watch_data("/w/c").await.expect("get");
        let (_, child_watch) = client
            .list_and_watch_children("/w")
            .await
            .expect("children");
        writer.delete("/w/c", None).await.expect("delete");
        let e = event(data_watch).await;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (zk::EventType::NodeDeleted, "/w/c")
        );
        let e = event(child_watch).await;
        assert_eq!(
            (e.event_type, e.path.as_str()),
            (zk::EventType::NodeChildrenChanged, "/w")
        );

        // A watch is one-shot: after it fired, a second change reaches only a new registration.
        let (_, _, watch) = client.get_and_watch_data("/w").await.expect("get");
        writer.set_data("/w", b"2", None).await.expect("set");
        let e = event(watch).await;
        assert_eq!(e.event_type, zk::EventType::NodeDataChanged);
        writer.set_data("/w", b"3", None).await.expect("set");
        let (_, _, watch) = client.get_and_watch_data("/w").await.expect("get");
        writer.delete("/w", None).await.expect("delete");
        let e = event(watch).await;
        assert_eq!(
            e.event_type,
            zk::EventType::NodeDeleted,
            "not a stale data event"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_and_recursive_watches_keep_firing() {
    within_deadline(async move {
        let (server, client) = start().await;
        let writer = client_for(&server).await;

        let mut persistent = client
            .watch("/pw", zk::AddWatchMode::Persistent)
            .await
            .expect("addWatch");
        writer.create("/pw", b"", &OPEN).await.expect("create");
        writer.set_data("/pw", b"1", None).await.expect("set");
        writer.set_data("/pw", b"2", None).await.expect("set");
        writer.create("/pw/c", b"", &OPEN).await.expect("child");
        writer
            .set_data("/pw/c", b"x", None)
            .await
            .expect("child set");
        writer.delete("/pw/c", None).await.expect("child delete");
        writer.delete("/pw", None).await.expect("delete");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let e = next_event(&mut persistent).await;
            seen.push((e.event_type, e.path));
        }
        use zk::EventType::*;
        assert_eq!(
            seen,
            vec![
                (NodeCreated, "/pw".to_string()),
                (NodeDataChanged, "/pw".to_string()),
                (NodeDataChanged, "/pw".to_string()),
                (NodeChildrenChanged, "/pw".to_string()),
                (NodeChildrenChanged, "/pw".to_string()),
                (NodeDeleted, "/pw".to_string()),
            ]
        );

        let mut recursive = client
            .watch("/pr", zk::AddWatchMode::PersistentRecursive)
            .await
            .expect("addWatch recursive");
        writer.create("/pr", b"", &OPEN).await.expect("create");
        writer.create("/pr/a", b"", &OPEN).await.expect("create");
        writer.create("/pr/a/b", b"", &OPEN).await.expect("create");
        writer.set_data("/pr/a/b", b"x", None).await.expect("set");
        writer.delete("/pr/a/b", None).await.expect("delete");
        writer
            .create("/other", b"", &OPEN)
            .await
            .expect("unrelated");
        writer.set_data("/pr", b"last", None).await.expect("set");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let e = next_event(&mut recursive).await;
            seen.push((e.event_type, e.path));
        }
        assert_eq!(
            seen,
            vec![
                (NodeCreated, "/pr".to_string()),
                (NodeCreated, "/pr/a".to_string()),
                (NodeCreated, "/pr/a/b".to_string()),
                (NodeDataChanged, "/pr/a/b".to_string()),
                (NodeDeleted, "/pr/a/b".to_string()),
                (NodeDataChanged, "/pr".to_string()),
            ],
            "recursive watches report no child events and nothing outside the subtree"
        );
    })
    .await;
}

/// removeWatches over the raw protocol: a removed watch never fires; removing a watch that does
/// not exist answers NoWatcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_watches_do_not_fire() {
    within_deadline(async move {
        const NO_WATCHER: i32 = -121;
        const REMOVE_WATCHES: i32 = 18;
        const WATCHER_TYPE_DATA: i32 = 2;
        const WATCHER_TYPE_ANY: i32 = 3;
        let (server, client) = start().await;
        client.create("/rw", b"", &OPEN).await.expect("create");
        let (mut conn, _) = RawConn::connect_session(server.addr())
            .await
            .expect("raw session");

        let reply = conn
            .call(1, op::GET_DATA, &raw::path_watch_body("/rw", true))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        let remove = Jute::new()
            .string("/rw")
            .i32(WATCHER_TYPE_DATA)
            .into_bytes();
        let reply = conn
            .call(2, REMOVE_WATCHES, &remove)
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        // The reply is empty; ZooKeeper's own client synthesizes the DataWatchRemoved event locally,
        // so nothing more arrives on the wire.
        client.set_data("/rw", b"x", None).await.expect("set");
        // Read until the ping answer: no notification may come before or with it.
        conn.send_frame(&raw::request(raw::xid::PING, op::PING, &[]))
            .await
            .expect("ping");
        loop {
            match conn.read(Duration::from_secs(5)).await.expect("io") {
                Read::Frame(payload) => {
                    let reply = raw::Reply::decode(&payload).expect("reply");
                    assert_ne!(reply.xid, raw::xid::NOTIFICATION, "a removed watch fired");
                    if reply.xid == raw::xid::PING {
                        break;
                    }
                }
                other => panic!("expected a ping reply, got {other:?}"),
            }
        }
        let reply = conn
            .call(
                3,
                REMOVE_WATCHES,
                &Jute::new().string("/rw").i32(WATCHER_TYPE_ANY).into_bytes(),
            )
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, NO_WATCHER);

        // Through the crate: dropping a watcher removes it; the session stays healthy.
        let (_, _, watcher) = client.get_and_watch_data("/rw").await.expect("get");
        drop(watcher);
        client.set_data("/rw", b"y", None).await.expect("set");
        assert_eq!(client.get_data("/rw").await.expect("get").0, b"y");
    })
    .await;
}

/// The auth reply carries the request's xid (ZooKeeper echoes it; the Java client happens to
/// use -4, the `zookeeper-client` crate a regular xid), and a bad digest answers AuthFailed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_reply_echoes_the_request_xid() {
    within_deadline(async move {
        let server = CoordServer::start().expect("server starts");
        for xid in [raw::xid::AUTH, 7] {
            let (mut conn, _) = RawConn::connect_session(server.addr())
                .await
                .expect("raw session");
            let body = Jute::new()
                .i32(0)
                .string("digest")
                .buffer(b"alice:secret")
                .into_bytes();
            let reply = conn
                .call(xid, op::AUTH, &body)
                .await
                .expect("io")
                .expect("auth reply");
            assert_eq!(reply.xid, xid, "auth reply xid");
            assert_eq!(reply.err, err::OK);
            let reply = conn
                .call(xid + 1, op::WHO_AM_I, &[])
                .await
                .expect("io")
                .expect("whoami reply");
            assert_eq!(reply.xid, xid + 1);
            assert_eq!(reply.err, err::OK);
        }
    })
    .await;
}
