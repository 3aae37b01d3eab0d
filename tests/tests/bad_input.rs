//! Bad input over raw sockets. In every test a well-behaved `zookeeper-client` session keeps
//! creating and reading nodes; it must never see an error, and the server must keep serving.
//! Except where marked coord-specific, the assertions hold against Apache ZooKeeper 3.8 too.

use std::time::Duration;

use coord_system_tests::raw::{self, err, op, Jute, RawConn, Read, OPEN_ACL};
use coord_system_tests::{is_coord, within_deadline, Background, CoordServer, ServerConfig};
use tokio::time::{sleep, Instant};

const CLOSE_WAIT: Duration = Duration::from_secs(10);

struct Harness {
    server: CoordServer,
    background: Background,
}

impl Harness {
    async fn start(config: ServerConfig) -> Harness {
        let server = CoordServer::start_with(config).expect("server starts");
        let background = Background::start(&server, "/bg")
            .await
            .expect("background client starts");
        Harness { server, background }
    }

    async fn session(&self) -> RawConn {
        RawConn::connect_session(self.server.addr())
            .await
            .expect("raw session")
            .0
    }

    /// The server still serves: a fresh session pings and the background client never failed.
    async fn finish(mut self) {
        // Retry briefly: a test may just have closed connections the server has not reaped yet.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut conn = loop {
            match RawConn::connect_session(self.server.addr()).await {
                Ok((conn, _)) => break conn,
                Err(e) if Instant::now() >= deadline => {
                    panic!("no new session after the bad input: {e}")
                }
                Err(_) => sleep(Duration::from_millis(100)).await,
            }
        };
        assert!(conn.ping().await.expect("ping io"), "fresh session pings");
        // Let the background client run a little past the bad input.
        sleep(Duration::from_millis(200)).await;
        let rounds = self
            .background
            .finish()
            .await
            .expect("the well-behaved client never failed");
        assert!(rounds > 0, "the well-behaved client made progress");
        assert!(self.server.is_running(), "server process still running");
    }
}

/// `create` request body with open ACL and the given flags.
fn create(path: &str, flags: i32) -> Vec<u8> {
    raw::create_body(path, b"d", OPEN_ACL, flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_longer_than_max_frame_bytes_closes_the_connection() {
    within_deadline(async move {
        let max = 64 * 1024;
        let h = Harness::start(ServerConfig {
            max_frame_bytes: Some(max),
            ..ServerConfig::default()
        })
        .await;
        // A request just under the limit is served.
        let mut conn = h.session().await;
        let data = vec![7u8; 60 * 1024];
        let body = raw::create_body("/big", &data, OPEN_ACL, 0);
        let reply = conn
            .call(1, op::CREATE, &body)
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);

        // A declared length over the limit: closed without the server reading the body.
        let mut conn = h.session().await;
        let len = i32::try_from(max + 1).expect("fits");
        conn.send_raw(&len.to_be_bytes())
            .await
            .expect("send length");
        conn.send_raw(&[0u8; 64]).await.expect("send some body");
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "oversized frame closes"
        );

        // A huge declared length before the handshake too.
        let mut conn = RawConn::connect(h.server.addr()).await.expect("connect");
        conn.send_raw(&i32::MAX.to_be_bytes())
            .await
            .expect("send length");
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "huge first frame closes"
        );
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_then_close_leaves_the_server_serving() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = h.session().await;
        let full = raw::request(9, op::CREATE, &create("/torn", 0));
        let len = i32::try_from(full.len()).expect("fits");
        conn.send_raw(&len.to_be_bytes()).await.expect("length");
        conn.send_raw(&full[..full.len() / 2])
            .await
            .expect("half a frame");
        conn.shutdown_write().await.expect("shutdown");
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "server closes a half-sent frame at EOF"
        );
        drop(conn);

        // A torn handshake, too.
        let mut conn = RawConn::connect(h.server.addr()).await.expect("connect");
        let hello = raw::connect_request(10_000, 0, &[0u8; 16]);
        let len = i32::try_from(hello.len()).expect("fits");
        conn.send_raw(&len.to_be_bytes()).await.expect("length");
        conn.send_raw(&hello[..7])
            .await
            .expect("part of the handshake");
        drop(conn);

        // The half-sent create never happened.
        let mut check = h.session().await;
        let reply = check
            .call(1, op::EXISTS, &raw::path_watch_body("/torn", false))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::NO_NODE);
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_get_the_connection_closed() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        // Before the handshake: an HTTP request reads as a ~1.2 GB frame length.
        let mut conn = RawConn::connect(h.server.addr()).await.expect("connect");
        conn.send_raw(b"GET / HTTP/1.1\r\nHost: coord\r\n\r\n")
            .await
            .expect("send");
        assert!(conn.closed_within(CLOSE_WAIT).await, "HTTP garbage closes");

        // After the handshake: a negative frame length.
        let mut conn = h.session().await;
        conn.send_raw(&[0xFF; 64]).await.expect("send");
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "negative length closes"
        );

        // After the handshake: a frame too short for a request header.
        let mut conn = h.session().await;
        conn.send_frame(&[1, 2, 3]).await.expect("send");
        assert!(
            conn.closed_within(CLOSE_WAIT).await,
            "short request header closes"
        );
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_before_the_handshake_is_refused() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = RawConn::connect(h.server.addr()).await.expect("connect");
        conn.send_frame(&raw::request(
            1,
            op::EXISTS,
            &raw::path_watch_body("/", false),
        ))
        .await
        .expect("send");
        // Whatever arrives, it is not a successful answer to the request; then the server closes.
        loop {
            match conn.read(CLOSE_WAIT).await.expect("io") {
                Read::Closed => break,
                Read::TimedOut => panic!("server neither answered nor closed"),
                Read::Frame(payload) => {
                    if let Ok(reply) = raw::Reply::decode(&payload) {
                        assert!(
                            !(reply.xid == 1 && reply.err == err::OK),
                            "a request without a session was served"
                        );
                    }
                }
            }
        }
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_opcode_answers_unimplemented_or_closes() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = h.session().await;
        match conn
            .call(5, 999, &raw::path_watch_body("/", false))
            .await
            .expect("io")
        {
            None => {}
            Some(reply) => {
                assert_eq!(reply.xid, 5);
                assert_eq!(reply.err, err::UNIMPLEMENTED);
            }
        }
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_paths_answer_bad_arguments() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = h.session().await;
        let reply = conn
            .call(100, op::CREATE, &create("/a", 0))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        // (path, whether its parent path is itself invalid). ZooKeeper looks the parent up before
        // it validates the whole path, so a create under an impossible parent may answer NoNode.
        // Paths without '/' or with NUL are rejected by every op.
        let bad = [
            ("", false),
            ("a", false),
            ("/a/", false),
            ("//a", false),
            ("/a//b", true),
            ("/a/./b", true),
            ("/a/../b", true),
            ("/.", false),
            ("/..", false),
            ("/a/.", false),
            ("/a\u{0}b", false),
            ("/a\u{1}b", false),
            ("/a\u{fff0}b", false),
        ];
        let mut xid = 0;
        for (path, parent_invalid) in bad {
            for (opcode, flags, body) in [
                (op::CREATE, 0, create(path, 0)),
                (op::CREATE2, 0, create(path, 0)),
                (op::CREATE, 2, create(path, 2)),
                (op::DELETE, 0, Jute::new().string(path).i32(-1).into_bytes()),
                (
                    op::SET_DATA,
                    0,
                    Jute::new().string(path).buffer(b"x").i32(-1).into_bytes(),
                ),
            ] {
                // A sequential create appends digits: "/a/" and "/." become legal names there.
                if flags == 2 && (path.ends_with('/') || path.ends_with('.')) {
                    continue;
                }
                xid += 1;
                let reply = conn
                    .call(xid, opcode, &body)
                    .await
                    .expect("io")
                    .unwrap_or_else(|| panic!("closed on op {opcode} path {path:?}"));
                assert_eq!(reply.xid, xid);
                let is_create = opcode == op::CREATE || opcode == op::CREATE2;
                // ZooKeeper's delete only rejects a path without '/' or with NUL before looking the
                // node up, so other malformed paths answer NoNode there (no such node can exist).
                let accepted: &[i32] = if (is_create && parent_invalid) || opcode == op::DELETE {
                    &[err::BAD_ARGUMENTS, err::NO_NODE]
                } else {
                    &[err::BAD_ARGUMENTS]
                };
                assert!(
                    accepted.contains(&reply.err),
                    "op {opcode} flags {flags} on invalid path {path:?}: err {}",
                    reply.err
                );
            }
        }
        assert!(
            conn.ping().await.expect("io"),
            "the session survives bad paths"
        );
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_lengths_are_refused_without_harm() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let lies: Vec<(&str, Vec<u8>)> = vec![
            (
                "acl count 1e9 with one acl",
                Jute::new()
                    .string("/lie1")
                    .buffer(b"d")
                    .i32(1_000_000_000)
                    .i32(31)
                    .string("world")
                    .string("anyone")
                    .i32(0)
                    .into_bytes(),
            ),
            (
                "path length 2e9",
                Jute::new().i32(2_000_000_000).raw(b"/lie2").into_bytes(),
            ),
            (
                "path length -7",
                Jute::new().i32(-7).raw(b"/lie3").into_bytes(),
            ),
            (
                "data length past the frame end",
                Jute::new()
                    .string("/lie4")
                    .i32(900_000)
                    .raw(b"short")
                    .into_bytes(),
            ),
            ("empty body", Vec::new()),
        ];
        for (i, (what, body)) in lies.into_iter().enumerate() {
            let mut conn = h.session().await;
            let xid = i32::try_from(i).expect("small") + 1;
            if let Some(reply) = conn.call(xid, op::CREATE, &body).await.expect("io") {
                assert_ne!(reply.err, err::OK, "{what}: served a lying request");
            }
        }
        // None of the lying creates happened.
        let mut conn = h.session().await;
        for path in ["/lie1", "/lie2", "/lie3", "/lie4"] {
            let reply = conn
                .call(1, op::EXISTS, &raw::path_watch_body(path, false))
                .await
                .expect("io")
                .expect("reply");
            assert_eq!(reply.err, err::NO_NODE, "{path}");
        }
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ttls_answer_bad_arguments() {
    within_deadline(async move {
        const PERSISTENT_WITH_TTL: i32 = 5;
        const PERSISTENT_SEQUENTIAL_WITH_TTL: i32 = 6;
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = h.session().await;
        let cases = [
            ("negative ttl", PERSISTENT_WITH_TTL, -5),
            ("zero ttl", PERSISTENT_WITH_TTL, 0),
            ("ttl over 2^40-1", PERSISTENT_WITH_TTL, 1 << 40),
            (
                "sequential negative ttl",
                PERSISTENT_SEQUENTIAL_WITH_TTL,
                -1,
            ),
            ("ttl on persistent", 0, 100),
            ("ttl on ephemeral", 1, 100),
            ("ttl on container", 4, 100),
        ];
        for (i, (what, flags, ttl)) in cases.into_iter().enumerate() {
            let xid = i32::try_from(i).expect("small") + 1;
            let body = raw::create_ttl_body("/ttl", b"", OPEN_ACL, flags, ttl);
            let reply = conn
                .call(xid, op::CREATE_TTL, &body)
                .await
                .expect("io")
                .unwrap_or_else(|| panic!("{what}: closed"));
            assert_eq!(reply.err, err::BAD_ARGUMENTS, "{what}");
        }
        // A TTL flag through plain create is not a TTL create either.
        let reply = conn
            .call(50, op::CREATE, &create("/ttl", PERSISTENT_WITH_TTL))
            .await
            .expect("io")
            .expect("reply");
        assert_ne!(reply.err, err::OK, "TTL flags through create");
        let reply = conn
            .call(51, op::EXISTS, &raw::path_watch_body("/ttl", false))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::NO_NODE);
        // A valid one works.
        let body = raw::create_ttl_body("/ttl", b"", OPEN_ACL, PERSISTENT_WITH_TTL, 60_000);
        let reply = conn
            .call(52, op::CREATE_TTL, &body)
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_acls_answer_invalid_acl() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut conn = h.session().await;
        let cases: [(&str, &[raw::AclEntry]); 5] = [
            ("unknown scheme", &[(31, "nosuchscheme", "x")]),
            ("empty list", &[]),
            ("auth without identity", &[(31, "auth", "")]),
            ("digest id without hash", &[(31, "digest", "alice")]),
            ("bad ip", &[(31, "ip", "not-an-ip")]),
        ];
        for (i, (what, acl)) in cases.into_iter().enumerate() {
            let xid = i32::try_from(i).expect("small") + 1;
            let body = raw::create_body("/acl", b"", acl, 0);
            let reply = conn
                .call(xid, op::CREATE, &body)
                .await
                .expect("io")
                .unwrap_or_else(|| panic!("{what}: closed"));
            assert_eq!(reply.err, err::INVALID_ACL, "create: {what}");
        }
        let reply = conn
            .call(20, op::CREATE, &create("/acl", 0))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        for (i, acl) in [&[(31, "nosuchscheme", "x")][..], &[]]
            .into_iter()
            .enumerate()
        {
            let xid = 30 + i32::try_from(i).expect("small");
            let body = Jute::new().string("/acl").acls(acl).i32(-1).into_bytes();
            let reply = conn
                .call(xid, op::SET_ACL, &body)
                .await
                .expect("io")
                .expect("reply");
            assert_eq!(reply.err, err::INVALID_ACL, "setACL {acl:?}");
        }
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_for_a_live_session_is_told_expired() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let (mut owner, session) = RawConn::connect_session(h.server.addr())
            .await
            .expect("session");
        assert_eq!(session.passwd.len(), 16, "ZooKeeper passwords are 16 bytes");

        let mut wrong = session.passwd.clone();
        wrong[0] ^= 0xFF;
        let mut thief = RawConn::connect(h.server.addr()).await.expect("connect");
        let answer = thief
            .handshake(10_000, session.session_id, &wrong)
            .await
            .expect("a ConnectResponse");
        assert_eq!(answer.timeout_ms, 0, "expired-session answer has timeout 0");
        assert_eq!(
            answer.session_id, 0,
            "expired-session answer has session id 0"
        );
        assert!(
            thief.closed_within(CLOSE_WAIT).await,
            "then the server closes"
        );

        // A session id that never existed gets the same answer.
        let mut stranger = RawConn::connect(h.server.addr()).await.expect("connect");
        let answer = stranger
            .handshake(10_000, 0x0123_4567_89ab_cdef, &[0u8; 16])
            .await
            .expect("a ConnectResponse");
        assert_eq!(answer.timeout_ms, 0);
        assert_eq!(answer.session_id, 0);

        // The right password resumes the session (the old socket is then closed by the server).
        let mut resumed = RawConn::connect(h.server.addr()).await.expect("connect");
        let answer = resumed
            .handshake(10_000, session.session_id, &session.passwd)
            .await
            .expect("a ConnectResponse");
        assert_eq!(answer.session_id, session.session_id);
        assert!(answer.timeout_ms > 0);
        assert!(resumed.ping().await.expect("io"), "resumed session pings");
        assert!(
            owner.closed_within(CLOSE_WAIT).await,
            "the superseded connection is closed"
        );
        h.finish().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_cannot_exhaust_memory() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig::default()).await;
        let mut setup = h.session().await;
        let big = vec![b'x'; 512 * 1024];
        let reply = setup
            .call(1, op::CREATE, &raw::create_body("/big", &big, OPEN_ACL, 0))
            .await
            .expect("io")
            .expect("reply");
        assert_eq!(reply.err, err::OK);
        let rss_before = h.server.rss_kib().expect("rss");

        // Pipeline getData of a 512 KiB node, never reading: 4000 requests ask for 2 GiB.
        let mut greedy = h.session().await;
        let mut batch = Vec::new();
        for i in 0..100 {
            batch.extend_from_slice(&framed(&raw::request(
                i + 10,
                op::GET_DATA,
                &raw::path_watch_body("/big", false),
            )));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent_batches = 0;
        let mut rss_max = rss_before;
        while Instant::now() < deadline && sent_batches < 40 {
            match greedy.try_send_raw(&batch, Duration::from_secs(2)).await {
                Ok(true) => sent_batches += 1,
                // Stalled (the server stopped reading) or refused (closed): both bound the input.
                Ok(false) | Err(_) => break,
            }
            rss_max = rss_max.max(h.server.rss_kib().unwrap_or(0));
        }
        for _ in 0..20 {
            sleep(Duration::from_millis(100)).await;
            rss_max = rss_max.max(h.server.rss_kib().unwrap_or(0));
        }
        let growth_mib = rss_max.saturating_sub(rss_before) / 1024;
        eprintln!(
            "never-reading client: sent {sent_batches} of 40 batches; RSS {} -> {} MiB",
            rss_before / 1024,
            rss_max / 1024
        );
        assert!(
            growth_mib < 200,
            "server RSS grew by {growth_mib} MiB for a client that never reads"
        );
        if is_coord() {
            // coord-specific: the server disconnects a client whose replies pile up.
            assert!(
                greedy.closed_by_peer_within(Duration::from_secs(30)).await,
                "coord disconnects a client that never reads"
            );
            assert!(
                rss_max / 1024 < 200,
                "coord RSS reached {} MiB",
                rss_max / 1024
            );
        }
        drop(greedy);
        h.finish().await;
    })
    .await;
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let len = i32::try_from(payload.len()).expect("fits");
    let mut frame = len.to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_limit_are_closed() {
    within_deadline(async move {
        let h = Harness::start(ServerConfig {
            max_connections_per_ip: Some(5),
            ..ServerConfig::default()
        })
        .await;
        // The background client holds one of the five.
        let mut conns = Vec::new();
        for _ in 0..4 {
            conns.push(h.session().await);
        }
        // The server may close the sixth at accept (connect or handshake then fails) or refuse it.
        let refused = match RawConn::connect(h.server.addr()).await {
            Err(_) => true,
            Ok(mut extra) => match extra.handshake(10_000, 0, &[0u8; 16]).await {
                Err(_) => true,
                Ok(answer) => answer.session_id == 0 && extra.closed_within(CLOSE_WAIT).await,
            },
        };
        assert!(refused, "the sixth connection from one IP is refused");
        for conn in &mut conns {
            assert!(
                conn.ping().await.expect("io"),
                "the first five keep working"
            );
        }
        // Closing one frees a slot.
        drop(conns.pop());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut conn) = RawConn::connect(h.server.addr()).await {
                if conn.handshake(10_000, 0, &[0u8; 16]).await.is_ok() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "a freed slot is usable again");
            sleep(Duration::from_millis(100)).await;
        }
        drop(conns);
        h.finish().await;
    })
    .await;
}
