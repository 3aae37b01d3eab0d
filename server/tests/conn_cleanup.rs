//! A connection task that panics is cleaned up like one that ends: its watches go (and with
//! them the last handle on its outbox), its writer stops, its socket closes. The panic is
//! injected with a fail point (process-wide), so this test runs the server in-process, alone in
//! its test binary.

use std::time::Duration;

use bytes::BytesMut;
use coord::{Config, Flags, Server};
use coord_proto::{ConnectRequest, Record, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    assert!(len < 1 << 20, "frame length {len}");
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

async fn four_letter_word(addr: std::net::SocketAddr, word: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(word.as_bytes()).await.expect("send word");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read answer");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_connection_task_releases_its_socket_and_watches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::load(Flags {
        client_addr: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().to_path_buf()),
        four_letter_words: Some(vec!["*".into()]),
        ..Flags::default()
    })
    .expect("config");
    let server = Server::start(config).await.expect("server starts");
    let addr = server.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server.run(async {
        let _ = stop_rx.await;
    }));

    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut buf = BytesMut::new();
    let connect = ConnectRequest {
        timeout_ms: 10_000,
        ..ConnectRequest::default()
    };
    coord_proto::frame::write_frame(&mut buf, |b| connect.write(b));
    Request::GetData {
        path: "/zookeeper".into(),
        watch: true,
    }
    .write_frame(1, &mut buf);
    stream.write_all(&buf).await.expect("send");
    let connected = read_frame(&mut stream)
        .await
        .expect("read")
        .expect("connect response");
    assert!(connected.len() >= 28, "connect response");
    let reply = read_frame(&mut stream)
        .await
        .expect("read")
        .expect("getData reply");
    assert_eq!(&reply[..4], &1i32.to_be_bytes(), "xid of the getData reply");
    assert!(four_letter_word(addr, "wchs")
        .await
        .contains("Total watches:1"));

    // The next request this connection reads panics its task.
    fail::cfg("conn::handle_frame", "1*panic").expect("fail point");
    let mut ping = BytesMut::new();
    Request::Ping.write_frame(-2, &mut ping);
    stream.write_all(&ping).await.expect("send ping");
    let closed = timeout(Duration::from_secs(5), read_frame(&mut stream)).await;
    fail::remove("conn::handle_frame");
    assert!(
        matches!(closed, Ok(Ok(None))),
        "the socket of the panicked connection closes: {closed:?}"
    );
    let watches = four_letter_word(addr, "wchs").await;
    assert!(watches.contains("Total watches:0"), "{watches}");

    let _ = stop_tx.send(());
    served.await.expect("server stops");
}
