//! HTTPS for the console without a proxy: an axum listener that hands
//! out TLS streams, on the same rustls set-up as the SMTP side (TLS 1.2+,
//! the certificate re-read when its files change). A handshake that fails
//! or stalls costs only its own connection: it is logged and the accept
//! loop goes on.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::net::tls::ReloadingCert;

/// A client gets this long for its TLS handshake, so a connection that
/// never speaks holds no slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor for `cert` and `key`; a file that cannot be read fails the
/// start, naming it.
pub fn acceptor(cert: &Path, key: &Path) -> std::io::Result<TlsAcceptor> {
    let reloading = ReloadingCert::new(cert, key).map_err(std::io::Error::other)?;
    crate::net::tls::acceptor(Arc::new(reloading)).map_err(std::io::Error::other)
}

/// A TCP listener whose connections are TLS.
pub struct TlsListener {
    /// The bound socket.
    pub listener: TcpListener,
    /// The console's TLS set-up.
    pub acceptor: TlsAcceptor,
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = match self.listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: wait a moment, as axum's own does.
                    tracing::warn!("console: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, peer),
                Ok(Err(e)) => tracing::debug!(client = %peer, "console: TLS handshake failed: {e}"),
                Err(_) => tracing::debug!(client = %peer, "console: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// The client's address for the handlers (`ConnectInfo<ClientAddr>`), on
/// either listener: axum provides `SocketAddr` for its TCP listener only.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
