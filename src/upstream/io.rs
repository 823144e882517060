//! The byte stream under one upstream connection: plain TCP or TLS over TCP.
//!
//! Owns [`Stream`], the enum the client reads and writes, and the idle-socket
//! probe the pool runs on checkout. It must not parse HTTP or decide whether
//! a connection may be reused: the client does that from the response head.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::pool::Permit;

/// One connection to an upstream, with its place under the origin's cap.
pub(crate) struct Stream {
    io: Io,
    /// Given back when the connection closes (`super::pool`); `None` for an
    /// uncapped origin.
    permit: Option<Permit>,
}

/// The bytes under a [`Stream`]. Both variants are `Unpin`, so the trait
/// impls below delegate with `Pin::new` and need no pin projection.
enum Io {
    Plain(TcpStream),
    /// Boxed: a rustls client session is a few KiB, a `TcpStream` a few words.
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// A plain TCP connection holding `permit` for its life.
    pub(crate) fn plain(tcp: TcpStream, permit: Option<Permit>) -> Stream {
        Stream {
            io: Io::Plain(tcp),
            permit,
        }
    }

    /// A TLS connection holding `permit` for its life.
    pub(crate) fn tls(tls: TlsStream<TcpStream>, permit: Option<Permit>) -> Stream {
        Stream {
            io: Io::Tls(Box::new(tls)),
            permit,
        }
    }

    /// Closes the connection and keeps its place under the cap, for a new
    /// connection to take.
    pub(crate) fn into_permit(self) -> Option<Permit> {
        self.permit
    }

    /// The TCP socket under the stream.
    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether an idle connection is still usable, as pingora decides it: an
    /// idle socket that has become readable is dead. Between two HTTP/1.1
    /// exchanges the server has nothing to say (RFC 9112 §9.3); readable
    /// means EOF (it closed, e.g. on its own keep-alive timeout), a reset,
    /// or stray bytes that would be mistaken for the next response. For TLS
    /// the raw socket is read: the bytes would be a close_notify alert or
    /// garbage, and either way the connection is unusable.
    ///
    /// `try_read` is non-blocking and only consults the readiness the tokio
    /// reactor has recorded, so a FIN that arrived an instant ago may still
    /// look healthy; the client's retry-once on a reused connection covers
    /// that race.
    pub(crate) fn is_idle_healthy(&self) -> bool {
        let mut probe = [0u8; 1];
        match self.tcp().try_read(&mut probe) {
            Err(e) => e.kind() == io::ErrorKind::WouldBlock,
            // Ok(0) is EOF, Ok(_) is unexpected data: both dead.
            Ok(_) => false,
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
