//! A TCP connection with or without TLS over it, one type for the protocols ferry speaks
//! itself (Redis, and the PostgreSQL replication link's first bytes).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A connection to a server: plain, or TLS over TCP.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// The negotiated protocol and cipher suite (`TLSv1_3 TLS13_AES_256_GCM_SHA384`), `None`
    /// for a plain connection.
    pub fn negotiated(&self) -> Option<String> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => {
                let (_, session) = tls.get_ref();
                Some(format!(
                    "{} {}",
                    match session.protocol_version() {
                        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
                        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
                        other => format!("{other:?}"),
                    },
                    session
                        .negotiated_cipher_suite()
                        .map(|s| format!("{:?}", s.suite()))
                        .unwrap_or_default()
                ))
            }
        }
    }
}

/// The name a certificate is checked against for `host` (a DNS name, or an IP address in a
/// certificate's IP SANs; `[::1]` without its brackets).
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{host}' is neither a host name nor an IP address a certificate can name"),
        )
    })
}

/// How long a server has to answer the TLS handshake: a port that does not speak TLS may
/// read the ClientHello as a partial command and wait for the rest forever (Redis does).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A handshake the server did not answer within [`HANDSHAKE_TIMEOUT`].
#[derive(Debug)]
pub(crate) struct NoTlsAnswer;

impl std::fmt::Display for NoTlsAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no TLS answer within {} s", HANDSHAKE_TIMEOUT.as_secs())
    }
}

impl std::error::Error for NoTlsAnswer {}

/// TLS over `tcp`, the certificate checked for `host` as `config` says.
pub async fn handshake(
    tcp: TcpStream,
    host: &str,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let handshake = TlsConnector::from(config).connect(server_name(host)?, tcp);
    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, NoTlsAnswer)))
}

/// Connects to `address` (`host:port`), with TLS from the first byte when `config` is given.
pub async fn connect(address: &str, config: Option<Arc<ClientConfig>>) -> io::Result<Stream> {
    let tcp = TcpStream::connect(address).await?;
    let _ = tcp.set_nodelay(true);
    match config {
        None => Ok(Stream::Plain(tcp)),
        Some(config) => {
            let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
            Ok(Stream::Tls(Box::new(handshake(tcp, host, config).await?)))
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
