//! The secure client port: a connection's TLS handshake, then the client protocol of [`crate::conn`]
//! over it, authenticated with what its certificate proves.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::debug;

use crate::conn::{admit, serve_stream, HANDSHAKE_TIMEOUT};
use crate::shared::Shared;
use crate::tls::ClientTls;

/// Serves one client socket accepted on the secure client port: the TLS handshake (within
/// the handshake timeout of 10 s, holding one of the address's connection slots), then the same
/// protocol as [`crate::conn::serve`], the connection authenticated with the identities its client
/// certificate proves. A client that fails the handshake (a plaintext one, or one without a
/// valid certificate where one is needed) is closed and never reaches a session.
pub async fn serve(shared: Arc<Shared>, stream: TcpStream, peer: SocketAddr, tls: Arc<ClientTls>) {
    let _ = stream.set_nodelay(true);
    let Some(slot) = admit(&shared, peer) else {
        return;
    };
    let handshake = async {
        // The ClientHello first: only a client that sent one waits for a handshake permit, so
        // sockets that send nothing cannot hold them all.
        let start = tokio_rustls::LazyConfigAcceptor::new(
            tokio_rustls::rustls::server::Acceptor::default(),
            stream,
        )
        .await?;
        let _permit = tls
            .handshake_permit()
            .await
            .ok_or_else(|| std::io::Error::other("shutting down"))?;
        start.into_stream(tls.config()).await
    };
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tls.refused(peer.ip(), &e.to_string());
            return;
        }
        Err(_) => {
            tls.refused(peer.ip(), "no TLS handshake in time");
            return;
        }
    };
    let ids = match tls.identities(stream.get_ref().1.peer_certificates()) {
        Ok(ids) => ids,
        Err(why) => {
            tls.refused(peer.ip(), why);
            return;
        }
    };
    for id in &ids {
        debug!(%peer, scheme = %id.scheme, id = %id.id, "authenticated by certificate");
    }
    let (reader, writer) = tokio::io::split(stream);
    serve_stream(shared, slot, reader, writer, peer, ids).await;
}
