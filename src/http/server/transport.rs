//! What a connection's bytes travel over: the TCP socket itself, or a TLS session on it.
//!
//! Both read and write like a non-blocking socket, so the reader, the parser and the
//! response writer know nothing of TLS. rustls is sans-I/O: the TLS side moves records
//! between the socket and the session as the reactor or a worker reads and writes, so a
//! handshake advances only as its bytes arrive and never blocks a thread.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

pub(crate) struct Tls {
    stream: TcpStream,
    session: ServerConnection,
    /// The first byte has been seen to open a TLS handshake.
    sniffed: bool,
    /// The first byte was not a handshake: the client speaks plain HTTP to this port.
    misdirected: bool,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Plain(s) => f.debug_tuple("Plain").field(s).finish(),
            Transport::Tls(t) => f.debug_tuple("Tls").field(&t.stream).finish(),
        }
    }
}

impl Transport {
    /// A new connection: TLS when the listener serves `tls`, else plain.
    pub(crate) fn new(
        stream: TcpStream,
        tls: Option<&Arc<rustls::ServerConfig>>,
    ) -> io::Result<Transport> {
        Ok(match tls {
            None => Transport::Plain(stream),
            Some(config) => Transport::Tls(Box::new(Tls {
                stream,
                session: ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?,
                sniffed: false,
                misdirected: false,
            })),
        })
    }

    /// The client sent plain HTTP to the HTTPS port: from now on this connection is
    /// plain, so that it can be told so in words it reads, and then closed.
    pub(crate) fn is_misdirected(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.misdirected)
    }

    /// TLS records are waiting to be written.
    pub(crate) fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(t) if t.session.wants_write())
    }

    /// Writes TLS records the session still holds. `Ok(true)` when none is left; plain
    /// sockets hold nothing back.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.write_records(),
        }
    }

    /// Sends TLS's close_notify if any, then the FIN.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                if !t.misdirected {
                    t.session.send_close_notify();
                    // Best effort: the peer may be gone, or its buffer full.
                    let _ = t.write_records();
                }
                t.stream.shutdown(Shutdown::Write)
            }
        }
    }

    fn stream(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &mut t.stream,
        }
    }
}

impl Tls {
    /// Writes what the session has to send until it is all out or the socket is full.
    fn write_records(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Whether the client opened with a TLS handshake; `None` while nothing came yet.
    fn sniff(&mut self) -> io::Result<Option<bool>> {
        let mut first = [0u8; 1];
        loop {
            match self.stream.peek(&mut first) {
                Ok(0) => return Ok(Some(true)),
                Ok(_) => return Ok(Some(first[0] == TLS_HANDSHAKE)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    /// Plaintext into `buf`: what the session holds, then records read off the socket,
    /// until `buf` is full or the socket has nothing more. Reading the socket to its end
    /// matters with edge-triggered readiness: plaintext left in the session while the
    /// socket is empty would never be reported again.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        loop {
            match self.session.reader().read(&mut buf[filled..]) {
                Ok(0) => return Ok(filled), // close_notify: the end of the stream
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return if filled > 0 { Ok(filled) } else { Err(e) },
            }
            // The session has no plaintext left: read records.
            match self.session.read_tls(&mut self.stream) {
                Ok(0) => {
                    // The peer's FIN: what was decrypted is given out, then the end.
                    return Ok(filled);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 { Ok(filled) } else { Err(e) };
                }
                Err(e) => return Err(e),
            }
            if let Err(e) = self.session.process_new_packets() {
                // The alert that says why goes out before the connection is dropped.
                let _ = self.write_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            // Handshake messages (or alerts) to answer with.
            self.write_records()?;
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) if t.misdirected => t.stream.read(buf),
            Transport::Tls(t) => {
                if !t.sniffed {
                    match t.sniff()? {
                        None => return Err(io::ErrorKind::WouldBlock.into()),
                        Some(true) => t.sniffed = true,
                        Some(false) => {
                            t.misdirected = true;
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "plain HTTP on the HTTPS port",
                            ));
                        }
                    }
                }
                t.read_plain(buf)
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(t) if t.misdirected => t.stream.write(buf),
            Transport::Tls(t) => {
                // Records already made go first, so output stays bounded by what the
                // socket takes: a client that does not read cannot make us buffer more.
                if !t.write_records()? {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = t.session.writer().write(buf)?;
                if n == 0 && !buf.is_empty() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                t.write_records()?;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Transport {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream().register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.stream().reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.stream().deregister(registry)
    }
}
