//! Behaviour of the tree and the write path together, checked against ZooKeeper 3.9's rules.

use bytes::Bytes;
use coord_engine::{Snapshot, StateMachine, Zxid};
use coord_proto::{perms, Acl, CreateMode, ErrorCode, Id, Stat};

use crate::*;

const T0: i64 = 1_700_000_000_000;

struct Harness {
    tree: Tree,
    prep: Prep,
    next: u64,
    now: i64,
}

fn open() -> Vec<Acl> {
    Acl::open_unsafe()
}

fn create(path: &str, data: &str, mode: CreateMode) -> Write {
    Write::Create {
        path: path.into(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        acl: open(),
        mode: mode.code(),
        ttl: None,
        container: false,
    }
}

fn persistent(path: &str) -> Write {
    create(path, "", CreateMode::Persistent)
}

const ANON: Caller<'static> = Caller::ANONYMOUS;

fn session(id: i64) -> Caller<'static> {
    Caller {
        session_id: id,
        ids: &[],
        is_super: false,
    }
}

impl Harness {
    fn new() -> Self {
        Harness {
            tree: Tree::new(),
            prep: Prep::new(),
            next: 0x1_0000_0000,
            now: T0,
        }
    }

    fn prepare(&mut self, caller: &Caller, w: &Write) -> Result<(Zxid, Txn), Rejection> {
        let zxid = Zxid::from_u64(self.next + 1);
        let txn = self.prep.prepare(&self.tree, caller, w, zxid, self.now)?;
        self.next += 1;
        Ok((zxid, txn))
    }

    fn commit(&mut self, zxid: Zxid, txn: &Txn) -> Applied {
        let applied = self.tree.apply(zxid, &txn.encode());
        self.prep.applied(zxid);
        applied
    }

    fn run(&mut self, caller: &Caller, w: &Write) -> Result<Applied, Rejection> {
        let (zxid, txn) = self.prepare(caller, w)?;
        Ok(self.commit(zxid, &txn))
    }

    fn ok(&mut self, caller: &Caller, w: &Write) -> Applied {
        let a = self.run(caller, w).expect("write rejected");
        assert!(a.result.is_ok(), "{w:?} -> {a:?}");
        a
    }

    fn reject(&mut self, caller: &Caller, w: &Write) -> ErrorCode {
        match self.run(caller, w) {
            Err(Rejection::Error(code)) => code,
            other => panic!("{w:?} should be rejected, got {other:?}"),
        }
    }

    fn stat(&self, path: &str) -> Stat {
        self.tree.stat(path).expect(path)
    }

    fn last(&self) -> i64 {
        self.next as i64
    }
}

#[test]
fn new_tree_has_zookeeper_system_nodes() {
    let t = Tree::new();
    assert_eq!(t.node_count(), 4);
    let (children, root) = t.get_children("/", &ANON).unwrap();
    assert_eq!(children, vec!["zookeeper"]);
    assert_eq!(
        root,
        Stat {
            num_children: 1,
            // ZooKeeper adds /zookeeper without a create, so clients see 0 * 2 - 1.
            cversion: -1,
            ..Stat::default()
        }
    );
    let (mut children, zk) = t.get_children("/zookeeper", &ANON).unwrap();
    children.sort();
    assert_eq!(children, vec!["config", "quota"]);
    assert_eq!(zk.num_children, 2);
    assert_eq!(zk.cversion, -2);
    let (acl, stat) = t.get_acl("/zookeeper/config", &ANON).unwrap();
    assert_eq!(acl, Acl::read_unsafe());
    assert_eq!(stat.aversion, -1);
    assert_eq!(t.get_acl("/zookeeper/quota", &ANON).unwrap().0, open());
    assert_eq!(t.get_all_children_number("/", &ANON).unwrap(), 3);
    assert_eq!(t.get_all_children_number("/zookeeper", &ANON).unwrap(), 2);
}

#[test]
fn create_sets_node_stat_and_bumps_parent() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/a"));
    let a0 = h.stat("/a");
    let applied = h.ok(&ANON, &create("/a/b", "hello", CreateMode::Persistent));
    let z = h.last();
    let TxnResult::Created { path, stat } = applied.result.unwrap() else {
        panic!("not a create");
    };
    assert_eq!(path, "/a/b");
    assert_eq!(
        stat,
        Stat {
            czxid: z,
            mzxid: z,
            pzxid: z,
            ctime: T0,
            mtime: T0,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: 0,
            data_length: 5,
            num_children: 0,
        }
    );
    assert_eq!(
        applied.events,
        vec![
            ChangeEvent::Created("/a/b".into()),
            ChangeEvent::ChildrenChanged("/a".into())
        ]
    );
    let a1 = h.stat("/a");
    assert_eq!(a1.cversion, a0.cversion + 1);
    assert_eq!(a1.pzxid, z);
    assert_eq!(a1.num_children, 1);
    assert_eq!(a1.mzxid, a0.mzxid, "a child create does not touch mzxid");
    assert_eq!(a1.version, a0.version);
    assert_eq!(h.stat("/").num_children, 2);
}

#[test]
fn delete_updates_parent_pzxid_and_client_cversion() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/a"));
    h.ok(&ANON, &persistent("/a/b"));
    let before = h.stat("/a");
    let applied = h.ok(
        &ANON,
        &Write::Delete {
            path: "/a/b".into(),
            version: -1,
        },
    );
    assert_eq!(applied.result, Ok(TxnResult::Deleted));
    assert_eq!(
        applied.events,
        vec![
            ChangeEvent::Deleted("/a/b".into()),
            ChangeEvent::ChildrenChanged("/a".into())
        ]
    );
    let after = h.stat("/a");
    // Clients see a delete as a change of the children (DataNode.copyStat).
    assert_eq!(after.cversion, before.cversion + 1);
    assert_eq!(after.pzxid, h.last());
    assert_eq!(after.num_children, 0);
    assert!(h.tree.stat("/a/b").is_none());
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Delete {
                path: "/a/b".into(),
                version: -1
            }
        ),
        ErrorCode::NoNode
    );
}

#[test]
fn set_data_and_set_acl_stat_transitions() {
    let mut h = Harness::new();
    h.ok(&ANON, &create("/n", "x", CreateMode::Persistent));
    let c = h.stat("/n");
    h.now += 5;
    let applied = h.ok(
        &ANON,
        &Write::SetData {
            path: "/n".into(),
            data: Bytes::from_static(b"four"),
            version: 0,
        },
    );
    let TxnResult::SetData(s) = applied.result.unwrap() else {
        panic!()
    };
    assert_eq!(s.version, 1);
    assert_eq!(s.mzxid, h.last());
    assert_eq!(s.mtime, T0 + 5);
    assert_eq!(s.ctime, T0);
    assert_eq!(s.czxid, c.czxid);
    assert_eq!(s.data_length, 4);
    assert_eq!(s.pzxid, c.pzxid);
    assert_eq!(applied.events, vec![ChangeEvent::DataChanged("/n".into())]);
    assert_eq!(h.tree.get_data("/n", &ANON).unwrap().0, &b"four"[..]);
    let stale = Write::SetData {
        path: "/n".into(),
        data: Bytes::new(),
        version: 0,
    };
    assert_eq!(h.reject(&ANON, &stale), ErrorCode::BadVersion);

    let applied = h.ok(
        &ANON,
        &Write::SetAcl {
            path: "/n".into(),
            acl: Acl::read_unsafe(),
            version: 0,
        },
    );
    let TxnResult::SetAcl(s) = applied.result.unwrap() else {
        panic!()
    };
    assert_eq!(s.aversion, 1);
    assert_eq!(s.version, 1);
    assert_eq!(s.mzxid, h.stat("/n").mzxid);
    assert!(applied.events.is_empty());
    assert_eq!(h.tree.get_acl("/n", &ANON).unwrap().0, Acl::read_unsafe());
    let stale = Write::SetAcl {
        path: "/n".into(),
        acl: open(),
        version: 0,
    };
    // The new ACL no longer grants ADMIN, which is checked before the version.
    assert_eq!(h.reject(&ANON, &stale), ErrorCode::NoAuth);
    let sup = Caller {
        is_super: true,
        ..ANON
    };
    assert_eq!(h.reject(&sup, &stale), ErrorCode::BadVersion);
}

#[test]
fn sequential_names_follow_parent_cversion_including_deletes() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/q"));
    let name = |a: Applied| match a.result {
        Ok(TxnResult::Created { path, .. }) => path,
        other => panic!("{other:?}"),
    };
    let seq = |p: &str| create(p, "", CreateMode::PersistentSequential);
    assert_eq!(name(h.ok(&ANON, &seq("/q/n-"))), "/q/n-0000000000");
    assert_eq!(name(h.ok(&ANON, &seq("/q/n-"))), "/q/n-0000000001");
    h.ok(
        &ANON,
        &Write::Delete {
            path: "/q/n-0000000000".into(),
            version: -1,
        },
    );
    // Deletes leave cversion alone, so the counter does not go back.
    assert_eq!(name(h.ok(&ANON, &seq("/q/n-"))), "/q/n-0000000002");
    h.ok(&ANON, &persistent("/q/plain"));
    assert_eq!(name(h.ok(&ANON, &seq("/q/"))), "/q/0000000004");
    // Two in flight at once get consecutive numbers.
    let (z1, t1) = h.prepare(&ANON, &seq("/q/x")).unwrap();
    let (z2, t2) = h.prepare(&ANON, &seq("/q/x")).unwrap();
    assert_eq!(name(h.commit(z1, &t1)), "/q/x0000000005");
    assert_eq!(name(h.commit(z2, &t2)), "/q/x0000000006");
    // Seven creates, one delete: clients see 7 * 2 - 6 children.
    assert_eq!(h.stat("/q").cversion, 8);
}

#[test]
fn pending_changes_are_seen_before_apply() {
    let mut h = Harness::new();
    // Two creates of one path prepared before either is applied.
    let (z1, t1) = h.prepare(&ANON, &persistent("/dup")).unwrap();
    assert_eq!(
        h.prepare(&ANON, &persistent("/dup")).unwrap_err(),
        Rejection::Error(ErrorCode::NodeExists)
    );
    // Parent and child in flight together.
    let (z2, t2) = h.prepare(&ANON, &persistent("/p")).unwrap();
    let (z3, t3) = h.prepare(&ANON, &persistent("/p/c")).unwrap();
    // Deleting the in-flight parent is NotEmpty.
    assert_eq!(
        h.prepare(
            &ANON,
            &Write::Delete {
                path: "/p".into(),
                version: -1
            }
        )
        .unwrap_err(),
        Rejection::Error(ErrorCode::NotEmpty)
    );
    for (z, t) in [(z1, t1), (z2, t2), (z3, t3)] {
        assert!(h.commit(z, &t).result.is_ok());
    }
    assert_eq!(h.prep.pending_len(), 0);
    assert_eq!(h.stat("/p").num_children, 1);

    // Delete then re-create, both in flight; the re-create is seen as new.
    let (z4, t4) = h
        .prepare(
            &ANON,
            &Write::Delete {
                path: "/p/c".into(),
                version: -1,
            },
        )
        .unwrap();
    assert_eq!(
        h.prepare(
            &ANON,
            &Write::SetData {
                path: "/p/c".into(),
                data: Bytes::new(),
                version: -1
            }
        )
        .unwrap_err(),
        Rejection::Error(ErrorCode::NoNode)
    );
    let (z5, t5) = h
        .prepare(&ANON, &create("/p/c", "again", CreateMode::Persistent))
        .unwrap();
    // A setData in flight sees version 0 of the re-created node.
    let (z6, t6) = h
        .prepare(
            &ANON,
            &Write::SetData {
                path: "/p/c".into(),
                data: Bytes::from_static(b"v1"),
                version: 0,
            },
        )
        .unwrap();
    assert_eq!(h.commit(z4, &t4).result, Ok(TxnResult::Deleted));
    assert!(h.commit(z5, &t5).result.is_ok());
    assert!(h.commit(z6, &t6).result.is_ok());
    let s = h.stat("/p/c");
    assert_eq!(s.version, 1);
    assert_eq!(s.czxid, z5.as_i64());
    assert_eq!(h.prep.pending_len(), 0);
}

#[test]
fn multi_is_all_or_nothing_with_zookeeper_results() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/m"));
    let ops = vec![
        persistent("/m/a"),
        Write::SetData {
            path: "/m".into(),
            data: Bytes::from_static(b"x"),
            version: 0,
        },
        Write::Check {
            path: "/m".into(),
            version: 7,
        },
        persistent("/m/b"),
    ];
    let rejected = h.run(&ANON, &Write::Multi(ops)).unwrap_err();
    assert_eq!(
        rejected,
        Rejection::Multi(vec![
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::BadVersion),
            OpResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    // Nothing of it remains, pending or committed.
    assert_eq!(h.prep.pending_len(), 0);
    assert!(h.tree.stat("/m/a").is_none());
    assert_eq!(h.stat("/m").version, 0);
    h.ok(&ANON, &persistent("/m/a"));

    // A pending change from before the multi survives the multi's rollback.
    let (z, t) = h
        .prepare(
            &ANON,
            &Write::SetData {
                path: "/m".into(),
                data: Bytes::new(),
                version: 0,
            },
        )
        .unwrap();
    let bad = Write::Multi(vec![
        Write::SetData {
            path: "/m".into(),
            data: Bytes::new(),
            version: 1,
        },
        persistent("/m/a"),
    ]);
    assert_eq!(
        h.prep
            .prepare(&h.tree, &ANON, &bad, Zxid::from_u64(h.next + 1), h.now)
            .unwrap_err(),
        Rejection::Multi(vec![
            OpResult::Error(ErrorCode::Ok),
            OpResult::Error(ErrorCode::NodeExists),
        ])
    );
    let check = Write::Check {
        path: "/m".into(),
        version: 1,
    };
    // The earlier setData (version 0 -> 1) is still pending: a check of version 1 passes.
    let (z2, t2) = h.prepare(&ANON, &check).unwrap();
    h.commit(z, &t);
    assert_eq!(h.commit(z2, &t2).result, Ok(TxnResult::Checked));

    // A successful multi: ops see each other; results per op; events in order.
    let good = Write::Multi(vec![
        create("/m/c", "", CreateMode::PersistentSequential),
        create("/m/c", "", CreateMode::PersistentSequential),
        Write::Delete {
            path: "/m/a".into(),
            version: 0,
        },
        Write::Check {
            path: "/m/c0000000001".into(),
            version: 0,
        },
        Write::SetData {
            path: "/m/c0000000001".into(),
            data: Bytes::from_static(b"d"),
            version: 0,
        },
    ]);
    let applied = h.ok(&ANON, &good);
    let Ok(TxnResult::Multi(results)) = applied.result else {
        panic!("{applied:?}")
    };
    let z = h.last();
    assert!(
        matches!(&results[0], OpResult::Created { path, stat } if path == "/m/c0000000001" && stat.czxid == z)
    );
    assert!(matches!(&results[1], OpResult::Created { path, .. } if path == "/m/c0000000002"));
    assert_eq!(results[2], OpResult::Deleted);
    assert_eq!(results[3], OpResult::Checked);
    assert!(matches!(&results[4], OpResult::SetData(s) if s.version == 1));
    assert_eq!(applied.events.len(), 7);
    assert_eq!(
        applied.events[0],
        ChangeEvent::Created("/m/c0000000001".into())
    );
    assert_eq!(
        applied.events[6],
        ChangeEvent::DataChanged("/m/c0000000001".into())
    );
    assert_eq!(
        h.run(
            &ANON,
            &Write::Multi(vec![Write::CloseSession { session_id: 1 }])
        )
        .unwrap_err(),
        Rejection::Error(ErrorCode::MarshallingError)
    );
}

#[test]
fn close_session_removes_its_ephemerals_with_events() {
    let mut h = Harness::new();
    let s = session(0x55);
    h.ok(
        &ANON,
        &Write::CreateSession {
            session_id: 0x55,
            timeout_ms: 30_000,
            passwd: vec![7; 16],
        },
    );
    assert_eq!(
        h.tree.session(0x55),
        Some(SessionInfo {
            timeout_ms: 30_000,
            passwd: vec![7; 16]
        })
    );
    h.ok(&ANON, &persistent("/e"));
    h.ok(&s, &create("/e/b", "", CreateMode::Ephemeral));
    h.ok(&s, &create("/e/a", "", CreateMode::Ephemeral));
    h.ok(&s, &create("/x", "", CreateMode::EphemeralSequential));
    assert_eq!(h.stat("/e/a").ephemeral_owner, 0x55);
    assert_eq!(
        h.tree.get_ephemerals(0x55, "/e"),
        vec!["/e/a".to_string(), "/e/b".to_string()]
    );
    assert_eq!(h.tree.get_ephemerals(0x55, "/").len(), 3);
    assert_eq!(h.tree.ephemerals_by_session()[0].1.len(), 3);
    assert_eq!(h.tree.ephemeral_count(), 3);
    assert_eq!(
        h.reject(&s, &create("/e/a/c", "", CreateMode::Persistent)),
        ErrorCode::NoChildrenForEphemerals
    );
    // An ephemeral for an unknown session is refused.
    assert_eq!(
        h.reject(&session(0x66), &create("/z", "", CreateMode::Ephemeral)),
        ErrorCode::SessionExpired
    );

    let (zc, tc) = h
        .prepare(&ANON, &Write::CloseSession { session_id: 0x55 })
        .unwrap();
    // While the close is in flight the session can do nothing, and its nodes count as gone.
    assert_eq!(
        h.prepare(&s, &persistent("/late")).unwrap_err(),
        Rejection::Error(ErrorCode::SessionExpired)
    );
    let (zd, td) = h
        .prepare(
            &ANON,
            &Write::Delete {
                path: "/e".into(),
                version: -1,
            },
        )
        .unwrap();
    let applied = h.commit(zc, &tc);
    assert_eq!(
        applied.result,
        Ok(TxnResult::SessionClosed { session_id: 0x55 })
    );
    assert_eq!(
        applied.events,
        vec![
            ChangeEvent::Deleted("/e/a".into()),
            ChangeEvent::ChildrenChanged("/e".into()),
            ChangeEvent::Deleted("/e/b".into()),
            ChangeEvent::ChildrenChanged("/e".into()),
            ChangeEvent::Deleted("/x0000000001".into()),
            ChangeEvent::ChildrenChanged("/".into()),
        ]
    );
    assert_eq!(h.commit(zd, &td).result, Ok(TxnResult::Deleted));
    assert!(h.tree.session(0x55).is_none());
    assert!(h.tree.get_ephemerals(0x55, "").is_empty());
    assert!(h.tree.ephemerals_by_session().is_empty());
    assert_eq!(h.tree.ephemeral_count(), 0);
    assert_eq!(h.tree.node_count(), 4);
}

#[test]
fn containers_and_ttls_become_reap_candidates() {
    let mut h = Harness::new();
    let container = Write::Create {
        path: "/c".into(),
        data: Bytes::new(),
        acl: open(),
        mode: CreateMode::Container.code(),
        ttl: None,
        container: true,
    };
    h.ok(&ANON, &container);
    // Clients see no owner on a container (DataNode.getClientEphemeralOwner).
    assert_eq!(h.stat("/c").ephemeral_owner, 0);
    // Never had a child: kept.
    assert!(h.tree.reap_candidates(h.now + 1_000_000).is_empty());
    h.ok(&ANON, &persistent("/c/child"));
    assert!(h.tree.reap_candidates(h.now).is_empty());
    h.ok(
        &ANON,
        &Write::Delete {
            path: "/c/child".into(),
            version: -1,
        },
    );
    assert_eq!(h.tree.reap_candidates(h.now), vec!["/c".to_string()]);

    let ttl = |path: &str, mode: CreateMode, ttl: Option<i64>| Write::Create {
        path: path.into(),
        data: Bytes::new(),
        acl: open(),
        mode: mode.code(),
        ttl,
        container: false,
    };
    h.ok(&ANON, &ttl("/t", CreateMode::PersistentWithTtl, Some(1000)));
    // Clients see no owner on a TTL node; the TTL itself is kept (and reaped on, below).
    assert_eq!(h.stat("/t").ephemeral_owner, 0);
    assert_eq!(h.tree.reap_candidates(T0 + 1000), vec!["/c".to_string()]);
    assert_eq!(
        h.tree.reap_candidates(T0 + 1001),
        vec!["/c".to_string(), "/t".to_string()]
    );
    // TTL validation.
    for (mode, t) in [
        (CreateMode::PersistentWithTtl, None),
        (CreateMode::PersistentWithTtl, Some(0)),
        (CreateMode::PersistentSequentialWithTtl, Some(-5)),
        (CreateMode::PersistentWithTtl, Some(ephemeral::TTL_MAX + 1)),
        (CreateMode::Persistent, Some(10)),
    ] {
        assert_eq!(
            h.reject(&ANON, &ttl("/bad", mode, t)),
            ErrorCode::BadArguments
        );
    }
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Create {
                path: "/f".into(),
                data: Bytes::new(),
                acl: open(),
                mode: 99,
                ttl: None,
                container: false
            }
        ),
        ErrorCode::BadArguments
    );

    // Reap re-checks: a TTL node touched since is no longer due.
    h.now = T0 + 500;
    h.ok(
        &ANON,
        &Write::SetData {
            path: "/t".into(),
            data: Bytes::new(),
            version: -1,
        },
    );
    h.now = T0 + 1200;
    assert_eq!(
        h.reject(&ANON, &Write::Reap { path: "/t".into() }),
        ErrorCode::BadVersion
    );
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Reap {
                path: "/zookeeper".into()
            }
        ),
        ErrorCode::BadArguments
    );
    let applied = h.ok(&ANON, &Write::Reap { path: "/c".into() });
    assert_eq!(applied.events[0], ChangeEvent::Deleted("/c".into()));
    h.now = T0 + 1501;
    h.ok(&ANON, &Write::Reap { path: "/t".into() });
    assert!(h.tree.reap_candidates(h.now).is_empty());
    assert_eq!(h.tree.node_count(), 4);
}

#[test]
fn acl_checks_per_operation() {
    let mut h = Harness::new();
    let bob_ids = [
        Id::new("ip", "10.1.2.3"),
        Id::new("digest", digest_id("bob:secret")),
    ];
    let bob = Caller {
        session_id: 1,
        ids: &bob_ids,
        is_super: false,
    };
    let eve_ids = [
        Id::new("ip", "10.9.9.9"),
        Id::new("digest", digest_id("eve:guess")),
    ];
    let eve = Caller {
        session_id: 2,
        ids: &eve_ids,
        is_super: false,
    };
    let admin = Caller {
        session_id: 3,
        ids: &[],
        is_super: true,
    };
    for session_id in 1..=3 {
        h.ok(
            &ANON,
            &Write::CreateSession {
                session_id,
                timeout_ms: 30_000,
                passwd: vec![1; 16],
            },
        );
    }
    let auth_all = vec![Acl {
        perms: perms::ALL,
        id: Id::new("auth", ""),
    }];
    h.ok(
        &bob,
        &Write::Create {
            path: "/b".into(),
            data: Bytes::from_static(b"s"),
            acl: auth_all.clone(),
            mode: 0,
            ttl: None,
            container: false,
        },
    );
    let (acl, _) = h.tree.get_acl("/b", &bob).unwrap();
    assert_eq!(
        acl,
        vec![Acl {
            perms: perms::ALL,
            id: Id::new("digest", digest_id("bob:secret"))
        }]
    );
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Create {
                path: "/anon".into(),
                data: Bytes::new(),
                acl: auth_all,
                mode: 0,
                ttl: None,
                container: false
            }
        ),
        ErrorCode::InvalidAcl
    );

    let no_auth = |e: Error| assert_eq!(e.code(), ErrorCode::NoAuth);
    no_auth(h.tree.get_data("/b", &eve).unwrap_err());
    no_auth(h.tree.exists("/b", &eve).unwrap_err());
    no_auth(h.tree.get_children("/b", &eve).unwrap_err());
    no_auth(h.tree.get_acl("/b", &eve).unwrap_err());
    no_auth(h.tree.get_all_children_number("/b", &eve).unwrap_err());
    assert!(h.tree.get_data("/b", &bob).is_ok());
    assert!(h.tree.get_data("/b", &admin).is_ok());
    assert_eq!(
        h.tree.get_data("/missing", &eve).unwrap_err().code(),
        ErrorCode::NoNode
    );
    assert_eq!(
        h.tree.exists("/a\0", &eve).unwrap_err().code(),
        ErrorCode::BadArguments
    );

    let set = |v| Write::SetData {
        path: "/b".into(),
        data: Bytes::new(),
        version: v,
    };
    assert_eq!(h.reject(&eve, &set(-1)), ErrorCode::NoAuth);
    assert_eq!(h.reject(&eve, &persistent("/b/kid")), ErrorCode::NoAuth);
    assert_eq!(
        h.reject(
            &eve,
            &Write::Check {
                path: "/b".into(),
                version: -1
            }
        ),
        ErrorCode::NoAuth
    );
    assert_eq!(
        h.reject(
            &eve,
            &Write::SetAcl {
                path: "/b".into(),
                acl: open(),
                version: -1
            }
        ),
        ErrorCode::NoAuth
    );
    h.ok(&bob, &persistent("/b/kid"));
    assert_eq!(
        h.reject(
            &eve,
            &Write::Delete {
                path: "/b/kid".into(),
                version: -1
            }
        ),
        ErrorCode::NoAuth
    );
    h.ok(&admin, &set(-1));

    // ip ACL with a mask; READ-only grants exclude writes; getACL without ADMIN redacts digests.
    let mixed = vec![
        Acl {
            perms: perms::READ,
            id: Id::new("ip", "10.9.0.0/16"),
        },
        Acl {
            perms: perms::ALL,
            id: Id::new("digest", digest_id("bob:secret")),
        },
    ];
    h.ok(
        &bob,
        &Write::SetAcl {
            path: "/b".into(),
            acl: mixed,
            version: 0,
        },
    );
    assert!(h.tree.get_data("/b", &eve).is_ok());
    assert_eq!(h.reject(&eve, &set(-1)), ErrorCode::NoAuth);
    let (seen, _) = h.tree.get_acl("/b", &eve).unwrap();
    assert_eq!(seen[1].id, Id::new("digest", "bob:x"));
    let (full, _) = h.tree.get_acl("/b", &bob).unwrap();
    assert_eq!(full[1].id.id, digest_id("bob:secret"));
    // Delete needs DELETE on the parent, not on the node.
    h.ok(
        &bob,
        &Write::Delete {
            path: "/b/kid".into(),
            version: -1,
        },
    );
    // The system config node is read-only for everyone but the super user.
    assert_eq!(
        h.reject(
            &eve,
            &Write::SetData {
                path: "/zookeeper/config".into(),
                data: Bytes::new(),
                version: -1
            }
        ),
        ErrorCode::NoAuth
    );
}

#[test]
fn write_path_validation() {
    let mut h = Harness::new();
    // As PrepRequestProcessor: create and delete check only the '/' and NUL before looking up
    // the parent (NoNode wins over the rest of validation); setData validates the whole path.
    let (bad, no) = (ErrorCode::BadArguments, ErrorCode::NoNode);
    for (p, create_code, delete_code) in [
        ("", bad, bad),
        ("a", bad, bad),
        ("/a/", no, no),
        ("//a", bad, no),
        ("/a/./b", no, no),
        ("/a/../b", no, no),
        ("/a\0", bad, bad),
    ] {
        assert_eq!(h.reject(&ANON, &persistent(p)), create_code, "create {p:?}");
        let delete = Write::Delete {
            path: p.into(),
            version: -1,
        };
        assert_eq!(h.reject(&ANON, &delete), delete_code, "delete {p:?}");
        let set = Write::SetData {
            path: p.into(),
            data: Bytes::new(),
            version: -1,
        };
        assert_eq!(h.reject(&ANON, &set), bad, "setData {p:?}");
    }
    h.ok(&ANON, &create("/", "", CreateMode::PersistentSequential));
    assert_eq!(h.reject(&ANON, &persistent("/")), ErrorCode::NodeExists);
    assert_eq!(h.reject(&ANON, &persistent("/no/such")), ErrorCode::NoNode);
    for p in SYSTEM_PATHS {
        assert_eq!(
            h.reject(
                &ANON,
                &Write::Delete {
                    path: p.into(),
                    version: -1
                }
            ),
            ErrorCode::BadArguments
        );
    }
    h.ok(&ANON, &persistent("/v"));
    h.ok(&ANON, &persistent("/v/c"));
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Delete {
                path: "/v".into(),
                version: -1
            }
        ),
        ErrorCode::NotEmpty
    );
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Delete {
                path: "/v/c".into(),
                version: 3
            }
        ),
        ErrorCode::BadVersion
    );
    assert_eq!(
        h.reject(
            &ANON,
            &Write::Create {
                path: "/e".into(),
                data: Bytes::new(),
                acl: vec![],
                mode: 0,
                ttl: None,
                container: false
            }
        ),
        ErrorCode::InvalidAcl
    );
    assert_eq!(h.tree.get_all_children_number("/v", &ANON).unwrap(), 1);
}

#[test]
fn snapshot_restores_an_identical_tree() {
    let mut h = Harness::new();
    h.ok(
        &ANON,
        &Write::CreateSession {
            session_id: 9,
            timeout_ms: 4000,
            passwd: vec![1, 2],
        },
    );
    h.ok(&ANON, &create("/a", "alpha", CreateMode::Persistent));
    h.ok(&session(9), &create("/a/e", "", CreateMode::Ephemeral));
    h.ok(
        &ANON,
        &Write::Create {
            path: "/c".into(),
            data: Bytes::new(),
            acl: Acl::read_unsafe(),
            mode: CreateMode::Container.code(),
            ttl: None,
            container: true,
        },
    );
    h.ok(
        &ANON,
        &Write::Create {
            path: "/t".into(),
            data: Bytes::from_static(b"ttl"),
            acl: open(),
            mode: CreateMode::PersistentWithTtl.code(),
            ttl: Some(60_000),
            container: false,
        },
    );
    let snap = h.tree.snapshot();
    let want = h.tree.dump();
    let digest = h.tree.digest();
    let data_size = h.tree.approximate_data_size();
    // The tree moves on while the snapshot is written (it shares the tree's nodes): the
    // snapshot is unaffected by creates, changes and deletes.
    h.ok(&ANON, &persistent("/after"));
    h.ok(
        &ANON,
        &Write::SetData {
            path: "/a".into(),
            data: Bytes::from_static(b"changed"),
            version: -1,
        },
    );
    h.ok(
        &ANON,
        &Write::Delete {
            path: "/t".into(),
            version: -1,
        },
    );
    assert_ne!(h.tree.digest(), digest);
    let mut bytes = Vec::new();
    snap.write_to(&mut bytes).unwrap();

    let mut restored = Tree::new();
    restored.restore(&mut &bytes[..]).unwrap();
    assert_eq!(restored.node_count(), h.tree.node_count());
    assert_eq!(restored.dump(), want);
    // The digest kept as nodes change equals the one computed from scratch.
    assert_eq!(restored.digest(), digest);
    assert_eq!(restored.sessions().count(), 1);
    assert_eq!(restored.get_ephemerals(9, ""), vec!["/a/e".to_string()]);
    assert_eq!(restored.approximate_data_size(), data_size);
    assert_eq!(restored.last_zxid(), snap.last_zxid());
    assert_eq!(
        restored.reap_candidates(T0 + 60_001),
        vec!["/t".to_string()]
    );
    // The restored tree keeps working: the ACL cache and sets were rebuilt.
    let mut r = Harness {
        tree: restored,
        prep: Prep::new(),
        next: h.next + 10,
        now: h.now,
    };
    r.ok(&ANON, &Write::CloseSession { session_id: 9 });
    assert!(r.tree.stat("/a/e").is_none());
    // After more changes (a delete, an ACL change), still equal to a fresh computation.
    r.ok(
        &ANON,
        &Write::SetAcl {
            path: "/a".into(),
            acl: Acl::read_unsafe(),
            version: -1,
        },
    );
    let mut bytes_after = Vec::new();
    r.tree.snapshot().write_to(&mut bytes_after).unwrap();
    let mut again = Tree::new();
    again.restore(&mut &bytes_after[..]).unwrap();
    assert_eq!(again.digest(), r.tree.digest());
    r.now = T0 + 60_001;
    let reaped = r.ok(&ANON, &Write::Reap { path: "/t".into() });
    assert_eq!(reaped.events[0], ChangeEvent::Deleted("/t".into()));

    // Every truncation of the snapshot is an error, never a panic.
    for cut in [0, 3, 4, 12, 20, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            Tree::new().restore(&mut &bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut corrupt = bytes.clone();
    corrupt[0] = b'X';
    assert!(Tree::new().restore(&mut &corrupt[..]).is_err());
}

#[test]
fn apply_reports_undecodable_txns() {
    let mut t = Tree::new();
    let a = t.apply(Zxid::from_u64(1), &[1, 2, 3]);
    assert_eq!(a.result, Err(ErrorCode::MarshallingError));
    assert!(a.events.is_empty());
}

#[test]
fn node_memory_estimate() {
    // A 13-byte name under "/bench" with 100 bytes of data: one allocation of header + path
    // + data. The BTreeSet adds one 16-byte pointer per node plus node slack (~8-16 bytes).
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/bench"));
    h.ok(
        &ANON,
        &create(
            "/bench/key0000000001",
            &"v".repeat(100),
            CreateMode::Persistent,
        ),
    );
    let e = h.tree.entry("/bench/key0000000001").unwrap();
    let heap = e.raw().len() + 16; // + Arc counts
    assert!(heap <= 220, "{heap} bytes");
}

#[test]
fn writes_from_an_unknown_session_are_refused_as_expired() {
    let mut h = Harness::new();
    let ghost = Caller {
        session_id: 0x77,
        ids: &[],
        is_super: false,
    };
    assert_eq!(
        h.reject(&ghost, &persistent("/ghost")),
        ErrorCode::SessionExpired
    );
}

#[test]
fn oversized_write_is_refused_before_anything_is_recorded() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/s"));
    let ids = [Id::new("digest", "u:0123456789012345678901234567")];
    let alice = Caller {
        session_id: 0,
        ids: &ids,
        is_super: false,
    };
    let seq = |i: usize| Write::Create {
        path: "/s/n-".into(),
        data: Bytes::from(vec![0u8; i % 3]),
        acl: vec![Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        }],
        mode: CreateMode::PersistentSequential.code(),
        ttl: None,
        container: false,
    };
    let multi = Write::Multi((0..100).map(seq).collect());
    let checked = Checked::new(multi.clone(), &alice, TXN_BYTES_MAX_DEFAULT).expect("fits");
    // The bound is an upper bound of the txn's real size.
    let zxid = Zxid::from_u64(h.next + 1);
    let txn = h
        .prep
        .prepare_checked(&h.tree, &alice, &checked, zxid, h.now)
        .expect("decided");
    let bound = checked_bound(&multi, &alice);
    assert!(
        txn.encoded_len() <= bound,
        "{} > {bound}",
        txn.encoded_len()
    );
    assert_eq!(txn.encoded_len(), txn.encode().len());
    assert!(bound - txn.encoded_len() <= 100 * 11, "the bound is tight");
    h.next += 1;
    h.commit(zxid, &txn);

    // Just under the txn the multi would make: refused on the op that crosses, nothing kept.
    let refused = Checked::new(multi, &alice, bound - 1).unwrap_err();
    let Rejection::Multi(results) = refused else {
        panic!("a multi is refused op by op: {refused:?}");
    };
    assert_eq!(results[99], OpResult::Error(ErrorCode::MarshallingError));
    assert!(results[..99]
        .iter()
        .all(|r| *r == OpResult::Error(ErrorCode::Ok)));
    assert_eq!(
        Checked::new(seq(0), &alice, 10).unwrap_err(),
        Rejection::Error(ErrorCode::MarshallingError)
    );
    let created = h.ok(
        &ANON,
        &create("/s/n-", "", CreateMode::PersistentSequential),
    );
    assert!(
        matches!(&created.result, Ok(TxnResult::Created { path, .. }) if path == "/s/n-0000000100")
    );
}

/// The smallest bound `Checked::new` lets `write` through with.
fn checked_bound(write: &Write, caller: &Caller) -> usize {
    let (mut lo, mut hi) = (0, TXN_BYTES_MAX_DEFAULT);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match Checked::new(write.clone(), caller, mid) {
            Ok(_) => hi = mid,
            Err(_) => lo = mid + 1,
        }
    }
    lo
}

#[test]
fn the_checked_bound_covers_every_kind_of_txn() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/a"));
    h.ok(&ANON, &persistent("/a/b"));
    let ids = [Id::new("digest", "u:hash")];
    let u = Caller {
        session_id: 0,
        ids: &ids,
        is_super: false,
    };
    let two = vec![
        Acl {
            perms: perms::ALL,
            id: Id::new("auth", ""),
        },
        Acl {
            perms: perms::READ,
            id: Id::new("world", "anyone"),
        },
    ];
    let writes = [
        create("/a/c", "data", CreateMode::Persistent),
        create("/a/s-", "data", CreateMode::PersistentSequential),
        Write::SetData {
            path: "/a/b".into(),
            data: Bytes::from_static(b"new data"),
            version: -1,
        },
        Write::SetAcl {
            path: "/a/b".into(),
            acl: two.clone(),
            version: -1,
        },
        Write::Check {
            path: "/a".into(),
            version: -1,
        },
        Write::Delete {
            path: "/a/b".into(),
            version: -1,
        },
    ];
    // setACL has no place in a multi.
    let multi = Write::Multi(
        writes
            .iter()
            .filter(|w| !matches!(w, Write::SetAcl { .. }))
            .cloned()
            .collect(),
    );
    for write in writes.iter().chain([&multi]) {
        let bound = checked_bound(write, &u);
        let checked = Checked::new(write.clone(), &u, bound).expect("within its bound");
        let zxid = Zxid::from_u64(h.next + 1);
        let txn = h
            .prep
            .prepare_checked(&h.tree, &u, &checked, zxid, h.now)
            .unwrap_or_else(|r| panic!("{write:?}: {r:?}"));
        assert_eq!(txn.encoded_len(), txn.encode().len());
        assert!(
            txn.encoded_len() <= bound,
            "{write:?}: {} > {bound}",
            txn.encoded_len()
        );
        // Each is decided against the same state: forget it again.
        h.prep = Prep::new();
    }
}

#[test]
fn reap_candidates_come_in_pages_that_cover_everything() {
    let mut h = Harness::new();
    for i in 0..7 {
        let path = format!("/c{i}");
        h.ok(&ANON, &create(&path, "", CreateMode::Container));
        h.ok(&ANON, &persistent(&format!("{path}/x")));
        h.ok(
            &ANON,
            &Write::Delete {
                path: format!("{path}/x"),
                version: -1,
            },
        );
        let ttl = Write::Create {
            path: format!("/t{i}"),
            data: Bytes::new(),
            acl: open(),
            mode: CreateMode::PersistentWithTtl.code(),
            ttl: Some(10),
            container: false,
        };
        h.ok(&ANON, &ttl);
    }
    let now = h.now + 1_000;
    let all = h.tree.reap_candidates(now);
    assert_eq!(all.len(), 14);
    for scan_max in [1, 2, 3, 7, 13] {
        let mut paged = Vec::new();
        let mut cursor = ReapCursor::default();
        loop {
            let (page, next) = h.tree.reap_candidates_page(now, &cursor, scan_max);
            assert!(page.len() <= scan_max);
            paged.extend(page);
            match next {
                Some(next) => cursor = next,
                None => break,
            }
        }
        assert_eq!(paged, all, "pages of {scan_max}");
    }
}

#[test]
fn a_txn_over_its_exact_bound_leaves_nothing_recorded() {
    let mut h = Harness::new();
    h.ok(&ANON, &persistent("/p"));
    let write = Write::Multi(vec![
        create("/p/a", "x", CreateMode::Persistent),
        create("/p/s-", "x", CreateMode::PersistentSequential),
    ]);
    let mut checked = Checked::new(write, &ANON, TXN_BYTES_MAX_DEFAULT).expect("fits");
    // As if the estimate had been wrong: the exact size is checked after the decision.
    checked.txn_bytes_max = 20;
    let zxid = Zxid::from_u64(h.next + 1);
    let rejection = h
        .prep
        .prepare_checked(&h.tree, &ANON, &checked, zxid, h.now)
        .unwrap_err();
    assert_eq!(
        rejection,
        Rejection::Multi(vec![
            OpResult::Error(ErrorCode::MarshallingError),
            OpResult::Error(ErrorCode::RuntimeInconsistency),
        ])
    );
    assert_eq!(h.prep.pending_len(), 0);
    // The same names are free, and the sequence starts where it did.
    let created = h.ok(
        &ANON,
        &create("/p/s-", "", CreateMode::PersistentSequential),
    );
    assert!(
        matches!(&created.result, Ok(TxnResult::Created { path, .. }) if path == "/p/s-0000000000")
    );
    h.ok(&ANON, &persistent("/p/a"));
}
