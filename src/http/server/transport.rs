//! What a connection's bytes travel over: the TCP socket itself, or a TLS session on it.
//!
//! Both read and write like a non-blocking socket, so the reader, the parser and the
//! response writer know nothing of TLS. rustls is sans-I/O: the TLS side moves records
//! between the socket and the session as the reactor or a worker reads and writes, so a
//! handshake advances only as its bytes arrive and never blocks a thread.
//!
//! Memory: an idle HTTPS connection holds only its session (keys and state, about 4 KiB).
//! rustls' buffered `ServerConnection` keeps a 4 KiB input buffer per connection for its
//! whole life; its unbuffered API leaves the buffers to us, so records are read, decrypted
//! and encrypted in one work buffer per thread, and a connection keeps bytes of its own
//! only while a record is half-received or the socket will not take more output. The
//! session itself is made when the client's first bytes arrive, so a client that connects
//! and sends nothing costs no more than a plain one.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Bytes read off the socket at a time: a whole record of the largest size TLS allows
/// (16 KiB of payload, its header and the most a cipher adds).
const READ_CHUNK: usize = 16 * 1024 + 2048 + 5;

/// Plaintext encrypted per write: four full records. Output is bounded by it, since a
/// write waits until the records made before have been taken by the socket.
const WRITE_CHUNK: usize = 64 * 1024;

/// Most that encryption adds to a record: the header, TLS 1.2's explicit nonce, the tag,
/// TLS 1.3's content type, with room to spare.
const RECORD_OVERHEAD: usize = 64;

thread_local! {
    /// Records being read and decrypted, on whichever thread drives the connection.
    static INPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Records being made before they go to the socket.
    static OUTPUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

pub(crate) enum Transport {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

pub(crate) struct Tls {
    stream: TcpStream,
    /// The configuration in force when the connection was accepted: the session is made
    /// from it once the client's first byte opens a handshake.
    config: Arc<rustls::ServerConfig>,
    /// Boxed, so a connection that has sent nothing yet does not pay for its size.
    session: Option<Box<UnbufferedServerConnection>>,
    /// Records received but not yet whole (a partial record, or a handshake message
    /// spread over several). Unallocated between records.
    incoming: Vec<u8>,
    /// Records made that the socket has not taken yet. Unallocated when none.
    pending: Vec<u8>,
    /// Decrypted bytes the reader had no room for. Unallocated when none.
    plain: Vec<u8>,
    /// The client's close_notify came: nothing more will be read.
    closed: bool,
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
                config: Arc::clone(config),
                session: None,
                incoming: Vec::new(),
                pending: Vec::new(),
                plain: Vec::new(),
                closed: false,
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
        matches!(self, Transport::Tls(t) if !t.pending.is_empty())
    }

    /// Writes TLS records still pending. `Ok(true)` when none is left; plain sockets
    /// hold nothing back.
    pub(crate) fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Transport::Plain(_) => Ok(true),
            Transport::Tls(t) => t.write_pending(),
        }
    }

    /// Sends TLS's close_notify if any, then the FIN.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                if !t.misdirected {
                    // Best effort: the peer may be gone, or its buffer full.
                    let _ = t.close_notify();
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

/// What reading records came to.
enum Progress {
    /// Every whole record was processed; more bytes are needed.
    NeedMore,
    /// The client's close_notify: the end of the stream.
    Closed,
}

impl Tls {
    /// Writes pending records until they are all out or the socket is full.
    fn write_pending(&mut self) -> io::Result<bool> {
        let n = write_some(&mut self.stream, &self.pending)?;
        if n == self.pending.len() {
            self.pending = Vec::new();
            Ok(true)
        } else {
            self.pending.drain(..n);
            Ok(false)
        }
    }

    /// Sends `records` after those already pending; what the socket does not take waits.
    fn send(stream: &mut TcpStream, pending: &mut Vec<u8>, records: &[u8]) -> io::Result<()> {
        if pending.is_empty() {
            let n = write_some(stream, records)?;
            pending.extend_from_slice(&records[n..]);
        } else {
            pending.extend_from_slice(records);
            let n = write_some(stream, pending)?;
            pending.drain(..n);
        }
        if pending.is_empty() {
            *pending = Vec::new();
        }
        Ok(())
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

    /// Plaintext into `buf`: what was kept from before, then records read off the
    /// socket, until `buf` is full or the socket has nothing more. Reading the socket to
    /// its end matters with edge-triggered readiness: plaintext kept while the socket is
    /// empty would never be reported again.
    fn read_plain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = self.plain.len().min(buf.len());
        buf[..filled].copy_from_slice(&self.plain[..filled]);
        if filled == self.plain.len() {
            self.plain = Vec::new();
        } else {
            self.plain.drain(..filled);
            return Ok(filled);
        }
        loop {
            if self.closed || filled == buf.len() {
                return Ok(filled);
            }
            let got =
                INPUT.with(|input| self.read_records(&mut input.borrow_mut(), buf, &mut filled));
            match got {
                Ok(Some(Progress::NeedMore)) => {}
                Ok(Some(Progress::Closed)) => self.closed = true,
                // The peer's FIN: what was decrypted is given out, then the end.
                Ok(None) => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => {
                    return Ok(filled);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One read off the socket into `work` (after the bytes kept from before), and every
    /// record in it processed: handshake answers sent, plaintext into `buf` from `filled`
    /// on and the rest kept. `None` at the socket's end.
    fn read_records(
        &mut self,
        work: &mut Vec<u8>,
        buf: &mut [u8],
        filled: &mut usize,
    ) -> io::Result<Option<Progress>> {
        let kept = self.incoming.len();
        if work.len() < kept + READ_CHUNK {
            work.resize(kept + READ_CHUNK, 0);
        }
        work[..kept].copy_from_slice(&self.incoming);
        let n = loop {
            match self.stream.read(&mut work[kept..kept + READ_CHUNK]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let mut used = kept + n;
        let session = match &mut self.session {
            Some(s) => s,
            None => self.session.insert(Box::new(
                UnbufferedServerConnection::new(Arc::clone(&self.config))
                    .map_err(io::Error::other)?,
            )),
        };
        let result = OUTPUT.with(|out| {
            process(
                session,
                &mut self.stream,
                &mut self.pending,
                &mut out.borrow_mut(),
                &mut work[..],
                &mut used,
                |payload| {
                    let room = (buf.len() - *filled).min(payload.len());
                    buf[*filled..*filled + room].copy_from_slice(&payload[..room]);
                    *filled += room;
                    self.plain.extend_from_slice(&payload[room..]);
                },
            )
        });
        self.incoming.clear();
        self.incoming.extend_from_slice(&work[..used]);
        if used == 0 {
            self.incoming = Vec::new();
        }
        result.map(Some)
    }

    /// Encrypts up to [`WRITE_CHUNK`] bytes of `data` and sends them; how many were taken.
    fn write_plain(&mut self, data: &[u8]) -> io::Result<usize> {
        // Records already made go first, so output stays bounded by what the socket
        // takes: a client that does not read cannot make us buffer more.
        if !self.write_pending()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let data = &data[..data.len().min(WRITE_CHUNK)];
        self.with_traffic(|traffic, out| {
            let need = data.len() + (data.len() / (16 * 1024) + 1) * RECORD_OVERHEAD;
            if out.len() < need {
                out.resize(need, 0);
            }
            match traffic.encrypt(data, out) {
                Ok(n) => Ok(n),
                Err(EncryptError::InsufficientSize(e)) => {
                    out.resize(e.required_size, 0);
                    traffic.encrypt(data, out).map_err(io::Error::other)
                }
                Err(e) => Err(io::Error::other(e)),
            }
        })?;
        Ok(data.len())
    }

    /// Queues and sends the close_notify alert.
    fn close_notify(&mut self) -> io::Result<()> {
        if self.session.is_none() {
            return Ok(());
        }
        self.with_traffic(|traffic, out| {
            if out.len() < RECORD_OVERHEAD {
                out.resize(RECORD_OVERHEAD, 0);
            }
            traffic.queue_close_notify(out).map_err(io::Error::other)
        })
    }

    /// Runs `make` once the session may send application data, with the thread's output
    /// buffer; sends the records it made.
    fn with_traffic(
        &mut self,
        make: impl FnOnce(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> io::Result<usize>,
    ) -> io::Result<()> {
        let Some(session) = &mut self.session else {
            return Err(io::Error::other("TLS handshake not complete"));
        };
        OUTPUT.with(|out| {
            let out = &mut *out.borrow_mut();
            let mut make = Some(make);
            loop {
                // Only a partial record is ever kept, so nothing is consumed here; the
                // state tells whether anything must be sent before application data.
                let UnbufferedStatus { discard, state } =
                    session.process_tls_records(&mut self.incoming);
                let state = state.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let done = match state {
                    ConnectionState::WriteTraffic(mut traffic) => {
                        let Some(make) = make.take() else {
                            return Ok(());
                        };
                        let n = make(&mut traffic, out)?;
                        Tls::send(&mut self.stream, &mut self.pending, &out[..n])?;
                        true
                    }
                    ConnectionState::EncodeTlsData(mut encode) => {
                        let n = encode_into(&mut encode, out)?;
                        Tls::send(&mut self.stream, &mut self.pending, &out[..n])?;
                        false
                    }
                    ConnectionState::TransmitTlsData(transmit) => {
                        transmit.done();
                        false
                    }
                    _ => {
                        return Err(io::Error::other("TLS session cannot send application data"));
                    }
                };
                self.incoming.drain(..discard);
                if done {
                    return Ok(());
                }
            }
        })
    }
}

/// Processes the records in `work[..*used]` until more bytes are needed: handshake
/// messages answered (the answers sent or made pending), application data handed to
/// `plaintext`. On return `work[..*used]` holds what is not yet a whole record or message.
fn process(
    session: &mut UnbufferedServerConnection,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    out: &mut Vec<u8>,
    work: &mut [u8],
    used: &mut usize,
    mut plaintext: impl FnMut(&[u8]),
) -> io::Result<Progress> {
    // Handshake records made and not yet sent: a flight goes out in one write.
    let mut made = 0;
    loop {
        let UnbufferedStatus { mut discard, state } =
            session.process_tls_records(&mut work[..*used]);
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                // The alert that says why goes out before the connection is dropped.
                let _ = send_alert(session, stream, pending, out);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        let outcome = match state {
            ConnectionState::ReadTraffic(mut records) => {
                while let Some(record) = records.next_record() {
                    let record =
                        record.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    discard += record.discard;
                    plaintext(record.payload);
                }
                None
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                if out.len() < made + READ_CHUNK {
                    out.resize(made + READ_CHUNK, 0);
                }
                made += encode_into_at(&mut encode, out, made)?;
                None
            }
            ConnectionState::TransmitTlsData(transmit) => {
                Tls::send(stream, pending, &out[..made])?;
                made = 0;
                transmit.done();
                None
            }
            ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => {
                Some(Progress::NeedMore)
            }
            ConnectionState::PeerClosed | ConnectionState::Closed => Some(Progress::Closed),
            // Early data is not accepted (the configuration allows none).
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS state",
                ));
            }
        };
        work.copy_within(discard..*used, 0);
        *used -= discard;
        if let Some(outcome) = outcome {
            if made > 0 {
                Tls::send(stream, pending, &out[..made])?;
            }
            return Ok(outcome);
        }
    }
}

/// Sends the alert a failed session queued, if any.
fn send_alert(
    session: &mut UnbufferedServerConnection,
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let UnbufferedStatus { state, .. } = session.process_tls_records(&mut []);
    if let Ok(ConnectionState::EncodeTlsData(mut encode)) = state {
        let n = encode_into(&mut encode, out)?;
        Tls::send(stream, pending, &out[..n])?;
    }
    Ok(())
}

fn encode_into(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    encode_into_at(encode, out, 0)
}

/// Encodes a handshake record into `out` at `at`, growing it as needed; its length.
fn encode_into_at(
    encode: &mut rustls::unbuffered::EncodeTlsData<'_, rustls::server::ServerConnectionData>,
    out: &mut Vec<u8>,
    at: usize,
) -> io::Result<usize> {
    match encode.encode(&mut out[at..]) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(e)) => {
            out.resize(at + e.required_size, 0);
            encode.encode(&mut out[at..]).map_err(io::Error::other)
        }
        Err(e) => Err(io::Error::other(e)),
    }
}

/// Writes `bytes` until they are all out or the socket is full; how many went.
fn write_some(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < bytes.len() {
        match stream.write(&bytes[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(t) if t.misdirected => t.stream.read(buf),
            Transport::Tls(t) => {
                if t.session.is_none() {
                    match t.sniff()? {
                        None => return Err(io::ErrorKind::WouldBlock.into()),
                        Some(true) => {}
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
            Transport::Tls(t) => t.write_plain(buf),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Duration;

    use mio::{Events, Poll};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

    /// A server configuration with a fresh self-signed certificate for localhost, and a
    /// client configuration trusting it.
    fn configs() -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = CertificateDer::from(made.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![der.clone()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Reads from `transport` until `want` plaintext bytes came, waiting on readiness.
    fn read_exactly(transport: &mut Transport, poll: &mut Poll, want: usize) -> Vec<u8> {
        let mut got = Vec::new();
        let mut scratch = vec![0; 64 * 1024];
        let mut events = Events::with_capacity(4);
        while got.len() < want {
            match transport.read(&mut scratch) {
                Ok(0) => panic!("the client closed after {} bytes", got.len()),
                Ok(n) => got.extend_from_slice(&scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    transport.flush_pending().unwrap();
                    poll.poll(&mut events, Some(Duration::from_secs(10)))
                        .unwrap();
                    assert!(!events.is_empty(), "no readiness within 10 s");
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    fn held_bytes(transport: &Transport) -> (bool, usize) {
        let Transport::Tls(t) = transport else {
            panic!("not TLS")
        };
        let held = t.incoming.capacity() + t.pending.capacity() + t.plain.capacity();
        (t.session.is_some(), held)
    }

    #[test]
    fn an_idle_tls_connection_keeps_its_session_and_no_buffer() {
        let (server_config, client_config) = configs();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let client = std::thread::spawn(move || {
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            // Nothing is sent until the server has looked at the fresh connection.
            go_rx.recv().unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let conn = ClientConnection::new(client_config, name).unwrap();
            let mut tls = StreamOwned::new(conn, tcp);
            tls.write_all(b"ping").unwrap();
            let mut answer = [0u8; 4];
            tls.read_exact(&mut answer).unwrap();
            assert_eq!(&answer, b"pong");
            // Stays open, idle, until the server has looked again.
            go_rx.recv().unwrap();
        });
        let (accepted, _) = listener.accept().unwrap();
        accepted.set_nonblocking(true).unwrap();
        let mut transport =
            Transport::new(TcpStream::from_std(accepted), Some(&server_config)).unwrap();
        let mut poll = Poll::new().unwrap();
        poll.registry()
            .register(&mut transport, Token(0), Interest::READABLE)
            .unwrap();

        assert_eq!(
            held_bytes(&transport),
            (false, 0),
            "a client that has sent nothing has no session yet"
        );
        go_tx.send(()).unwrap();
        assert_eq!(read_exactly(&mut transport, &mut poll, 4), b"ping");
        assert_eq!(transport.write(b"pong").unwrap(), 4);
        assert!(transport.flush_pending().unwrap());

        assert_eq!(
            held_bytes(&transport),
            (true, 0),
            "between requests only the session is kept"
        );
        go_tx.send(()).unwrap();
        client.join().unwrap();
    }
}
