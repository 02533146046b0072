//! A blocking client stream, plaintext (`--insecure`) or TLS 1.3, for the
//! command-line tools and tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::identity::{Identity, IdentityError};

/// A connected stream to a node.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Connects to `addr`; with `tls`, completes a TLS handshake at once, so
    /// that a refused certificate or protocol fails here.
    pub fn connect(
        addr: SocketAddr,
        timeout: Duration,
        tls: Option<&Arc<ClientConfig>>,
    ) -> io::Result<Stream> {
        let tcp = TcpStream::connect_timeout(&addr, timeout)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(timeout))?;
        tcp.set_write_timeout(Some(timeout))?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some(config) => Stream::start_tls(tcp, config)?,
        };
        Ok(stream)
    }

    /// TLS over an already connected socket (after a plaintext preamble).
    pub fn start_tls(mut tcp: TcpStream, config: &Arc<ClientConfig>) -> io::Result<Stream> {
        let mut conn = ClientConnection::new(config.clone(), crate::tls::server_name())
            .map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, tcp))))
    }

    /// The socket underneath (timeouts, shutdown).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// The plaintext socket, if this is one (to start TLS on it).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self {
            Stream::Plain(tcp) => Some(tcp),
            Stream::Tls(_) => None,
        }
    }

    /// The server's identity, for a TLS stream.
    pub fn peer_identity(&self) -> Option<Result<Identity, IdentityError>> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(tls) => crate::tls::peer_identity(tls.conn.peer_certificates()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
