//! QEMU's user-space network backends as a smoltcp device (std shell, no root, no TAP).
//!
//! - `-netdev stream` (and the older `-netdev socket,connect=...`): one byte stream, each
//!   Ethernet frame sent as a 4-byte big-endian length (not counting itself) and the frame. No
//!   FCS, no padding, no virtio header. smolhttpd **listens** on a unix socket path or a TCP
//!   address and QEMU connects as the client (`server=off`), so the server is started first, stays
//!   up across guest runs, and takes the next QEMU when one goes away. One peer at a time: a second
//!   QEMU waits in the listen backlog until the first disconnects.
//! - `-netdev dgram` (and `-netdev socket,udp=...`): one frame per datagram, over UDP on loopback
//!   or unix datagram sockets. smolhttpd binds LOCAL and sends to REMOTE, where QEMU binds.
//!
//! Everything is non-blocking. The loop sleeps with `smoltcp::phy::wait` on the fd given by the
//! device's [`Waiter`]: the listener until a peer connects, then the stream (or the datagram
//! socket). Frames split over reads are reassembled; several frames in one read are returned one
//! by one (the waiter then says "do not sleep"). A write that the socket takes only in part is
//! finished from a bounded buffer before anything else; when that buffer is full, frames are
//! dropped like on a busy wire and TCP retransmits.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

/// The largest frame length accepted in a stream's length prefix: QEMU's own `NET_BUFSIZE`
/// (4096 + 65536). A larger length means the stream is not QEMU's framing (or is out of step);
/// the peer is disconnected, since there is no way to find the next frame.
pub const MAX_WIRE_FRAME: usize = 4096 + 65536;

/// Output that the socket has not taken yet, at most; beyond it frames are dropped.
const PENDING_MAX: usize = 256 * 1024;

/// Reads (or datagrams) tried per `receive` call before giving the loop back.
const READS_PER_RECEIVE: usize = 8;

/// How long the loop may sleep while output is pending (the loop only waits for input).
const FLUSH_RETRY: Duration = Duration::from_millis(1);

// ------------------------------------------------------------------ addresses

/// A socket address on the command line: a unix socket path, or an IP address and port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Unix(PathBuf),
    Inet(SocketAddr),
}

impl FromStr for SockAddr {
    type Err = String;

    /// `IP:PORT` (`[::1]:PORT` for IPv6; `localhost:PORT` is 127.0.0.1) is TCP/UDP; anything
    /// else is a unix socket path. A path containing `:` needs a `/` (`./a:b`).
    fn from_str(s: &str) -> Result<SockAddr, String> {
        if s.is_empty() {
            return Err("empty address".into());
        }
        if s.contains('/') {
            return Ok(SockAddr::Unix(PathBuf::from(s)));
        }
        let s2 = match s.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => s.to_string(),
        };
        match s2.parse::<SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("'{s}': port 0 cannot be given to QEMU")),
            Ok(a) => Ok(SockAddr::Inet(a)),
            Err(_) if s.contains(':') => Err(format!(
                "'{s}' is neither IP:PORT (like 127.0.0.1:5555) nor a unix socket path \
                 (a path with ':' needs a '/', like ./{s})"
            )),
            Err(_) => Ok(SockAddr::Unix(PathBuf::from(s))),
        }
    }
}

impl fmt::Display for SockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SockAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            SockAddr::Inet(a) => write!(f, "{a}"),
        }
    }
}

/// `LOCAL,REMOTE` for `--qemu-dgram`: both unix paths or both IP:PORT of one family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DgramAddrs {
    pub local: SockAddr,
    pub remote: SockAddr,
}

impl FromStr for DgramAddrs {
    type Err = String;

    fn from_str(s: &str) -> Result<DgramAddrs, String> {
        let (l, r) = s.split_once(',').ok_or_else(|| {
            "expected LOCAL,REMOTE, like 127.0.0.1:5556,127.0.0.1:5555".to_string()
        })?;
        let (local, remote) = (l.trim().parse::<SockAddr>()?, r.trim().parse::<SockAddr>()?);
        match (&local, &remote) {
            (SockAddr::Unix(_), SockAddr::Unix(_)) => {}
            (SockAddr::Inet(a), SockAddr::Inet(b)) if a.is_ipv4() == b.is_ipv4() => {}
            _ => return Err("LOCAL and REMOTE must both be unix paths or both IP:PORT".into()),
        }
        if local == remote {
            return Err("LOCAL and REMOTE must differ".into());
        }
        Ok(DgramAddrs { local, remote })
    }
}

// ------------------------------------------------------------------ framing

/// Errors in a stream's framing.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameError {
    /// A length prefix over [`MAX_WIRE_FRAME`].
    Oversize(usize),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Oversize(n) => write!(
                f,
                "a frame length of {n} bytes (the most is {MAX_WIRE_FRAME}): \
                 is this QEMU's stream framing?"
            ),
        }
    }
}

/// Reassembles length-prefixed frames from the bytes of a stream, read in any pieces.
///
/// `space()` gives room to read into, `filled(n)` records what was read, `next_frame()` takes
/// the next whole frame out. A frame's range stays valid until the next `space()` or `clear()`.
pub struct Reassembler {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max: usize,
}

impl Reassembler {
    /// A reassembler for frames of up to `max` bytes.
    pub fn new(max: usize) -> Reassembler {
        Reassembler {
            // Room for two whole frames, so a compaction moves less than one.
            buf: vec![0; 2 * (max + 4)].into_boxed_slice(),
            start: 0,
            end: 0,
            max,
        }
    }

    /// Free room at the end of the buffer to read into (never less than one whole frame).
    pub fn space(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.buf.len() - self.end < self.max + 4 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Records that `n` bytes were read into [`Reassembler::space`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// The length prefix at the start of the buffered bytes, if all four bytes are there.
    fn head(&self) -> Option<usize> {
        let b = self.buf.get(self.start..self.start + 4)?;
        (self.end - self.start >= 4).then(|| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// Takes out the next whole frame (empty frames are skipped); None if it is not all there.
    pub fn next_frame(&mut self) -> Result<Option<Range<usize>>, FrameError> {
        loop {
            let Some(len) = self.head() else {
                return Ok(None);
            };
            if len > self.max {
                return Err(FrameError::Oversize(len));
            }
            if self.end - self.start < 4 + len {
                return Ok(None);
            }
            let frame = self.start + 4..self.start + 4 + len;
            self.start = frame.end;
            if len > 0 {
                return Ok(Some(frame));
            }
        }
    }

    /// True when [`Reassembler::next_frame`] has something to say without another read: a
    /// whole frame, or a length that is an error.
    pub fn has_frame(&self) -> bool {
        self.head()
            .is_some_and(|len| len > self.max || len == 0 || self.end - self.start >= 4 + len)
    }

    /// The bytes of a frame returned by [`Reassembler::next_frame`].
    pub fn frame(&self, r: Range<usize>) -> &[u8] {
        &self.buf[r]
    }

    /// Forgets everything buffered (a new peer starts a new stream).
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }
}

// ------------------------------------------------------------------ waiting

#[derive(Clone, Copy, Debug, Default)]
struct WaitState {
    fd: RawFd,
    /// Whole frames already read: do not sleep.
    rx_ready: bool,
    /// A write error to handle, or a peer to drop: do not sleep.
    urgent: bool,
    /// Output the socket has not taken yet: sleep briefly, then try again.
    tx_pending: bool,
}

/// What the main loop sleeps on for a [`QemuDevice`]: the fd (which changes when a peer
/// connects or goes away) and how long at most. Stays valid when the device is wrapped
/// (pcap, fault injection).
#[derive(Clone)]
pub struct Waiter(Rc<Cell<WaitState>>);

impl Waiter {
    /// The fd to wait on for input.
    pub fn fd(&self) -> RawFd {
        self.0.get().fd
    }

    /// The longest sleep the device allows now (None: until input or the server's deadline).
    pub fn limit(&self) -> Option<Duration> {
        let w = self.0.get();
        if w.rx_ready || w.urgent {
            Some(Duration::ZERO)
        } else if w.tx_pending {
            Some(FLUSH_RETRY)
        } else {
            None
        }
    }

    fn update(&self, f: impl FnOnce(&mut WaitState)) {
        let mut w = self.0.get();
        f(&mut w);
        self.0.set(w);
    }
}

// ------------------------------------------------------------------ sockets

enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

enum DgramSock {
    /// Connected to the remote: the kernel filters other senders and reports refusals.
    Udp(UdpSocket),
    /// Bound to the local path (removed on drop); sends to the remote path.
    Unix(UnixDatagram, PathBuf, PathBuf),
}

impl Listener {
    fn fd(&self) -> RawFd {
        match self {
            Listener::Unix(l, _) => l.as_raw_fd(),
            Listener::Tcp(l) => l.as_raw_fd(),
        }
    }

    /// A waiting peer, non-blocking, with a name for the log.
    fn accept(&self) -> io::Result<(Stream, String)> {
        match self {
            Listener::Unix(l, path) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(true)?;
                Ok((Stream::Unix(s), format!("unix:{}", path.display())))
            }
            Listener::Tcp(l) => {
                let (s, from) = l.accept()?;
                s.set_nonblocking(true)?;
                // One write per frame: never hold a frame back waiting for the next.
                s.set_nodelay(true)?;
                Ok((Stream::Tcp(s), format!("{from}")))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Stream {
    fn fd(&self) -> RawFd {
        match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        }
    }
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
}

impl DgramSock {
    fn fd(&self) -> RawFd {
        match self {
            DgramSock::Udp(s) => s.as_raw_fd(),
            DgramSock::Unix(s, _, _) => s.as_raw_fd(),
        }
    }

    /// One datagram from the remote; `Ok(None)` for one from someone else.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self {
            DgramSock::Udp(s) => s.recv(buf).map(Some),
            DgramSock::Unix(s, _, remote) => {
                let (n, from) = s.recv_from(buf)?;
                Ok((from.as_pathname() == Some(remote.as_path())).then_some(n))
            }
        }
    }

    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DgramSock::Udp(s) => s.send(buf),
            DgramSock::Unix(s, _, remote) => s.send_to(buf, remote),
        }
    }
}

impl Drop for DgramSock {
    fn drop(&mut self) {
        if let DgramSock::Unix(_, local, _) = self {
            let _ = std::fs::remove_file(local);
        }
    }
}

/// Makes way for a unix socket at `path`: a socket file nobody serves (left by a crash) is
/// removed; a live one or any other file is an error.
fn claim_unix_path(path: &Path, datagram: bool) -> Result<(), String> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(format!(
            "{} exists and is not a socket; choose another path",
            path.display()
        ));
    }
    let alive = if datagram {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok()
    } else {
        UnixStream::connect(path).is_ok()
    };
    if alive {
        return Err(format!(
            "{} is in use by another program (is smolhttpd already running?)",
            path.display()
        ));
    }
    std::fs::remove_file(path)
        .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))
}

fn is_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound | io::ErrorKind::ConnectionReset
    )
}

// ------------------------------------------------------------------ the device

enum Kind {
    Stream {
        listener: Listener,
        peer: Option<Stream>,
        /// The peer's name while one is connected, for the log.
        peer_name: String,
    },
    Dgram {
        sock: DgramSock,
        remote: SockAddr,
        /// None: not heard from yet; Some(false): refused our last frame.
        up: Option<bool>,
    },
}

/// The sending half and the connection state; `QemuTx` borrows it.
struct Link {
    kind: Kind,
    /// Where frames are built: 4 bytes of length prefix, then the frame.
    frame: Vec<u8>,
    /// Stream output the socket has not taken yet (`pending[sent..]`), always whole frames
    /// after the first partial one.
    pending: Vec<u8>,
    sent: usize,
    /// A write error seen while sending; the peer is dropped at the next `receive`.
    broken: Option<io::Error>,
    dropped: u64,
    wait: Waiter,
}

/// Receive buffers; `QemuRx` borrows them.
struct RxBufs {
    stream: Reassembler,
    dgram: Vec<u8>,
}

/// Where a received frame is.
enum Got {
    Stream(Range<usize>),
    Dgram(usize),
}

/// A QEMU guest's network as a smoltcp Ethernet device: see the module docs.
pub struct QemuDevice {
    rx: RxBufs,
    link: Link,
    /// Largest Ethernet frame: the IP MTU plus 14.
    max_frame: usize,
    what: String,
}

impl QemuDevice {
    /// Listens on `addr` for QEMU's `-netdev stream,server=off` (or `-netdev socket,connect=`).
    /// `mtu` is the IP MTU.
    pub fn listen_stream(addr: &SockAddr, mtu: usize) -> Result<QemuDevice, String> {
        let listener = match addr {
            SockAddr::Unix(path) => {
                claim_unix_path(path, false)?;
                let l = UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on unix socket {}: {e}", path.display()))?;
                Listener::Unix(l, path.clone())
            }
            SockAddr::Inet(a) => {
                let l = TcpListener::bind(a).map_err(|e| format!("cannot listen on {a}: {e}"))?;
                if !a.ip().is_loopback() {
                    log::warn!(
                        "listening on {a}, not a loopback address: whoever reaches it can put \
                         frames on the server's network"
                    );
                }
                Listener::Tcp(l)
            }
        };
        let nb = match &listener {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        };
        nb.map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;
        let fd = listener.fd();
        let what = format!("qemu stream {addr}");
        Ok(QemuDevice::new(
            Kind::Stream {
                listener,
                peer: None,
                peer_name: String::new(),
            },
            fd,
            mtu,
            what,
            MAX_WIRE_FRAME,
        ))
    }

    /// Binds `addrs.local` for QEMU's `-netdev dgram` bound at `addrs.remote`.
    pub fn dgram(addrs: &DgramAddrs, mtu: usize) -> Result<QemuDevice, String> {
        let sock = match (&addrs.local, &addrs.remote) {
            (SockAddr::Inet(l), SockAddr::Inet(r)) => {
                let s = UdpSocket::bind(l).map_err(|e| format!("cannot bind UDP {l}: {e}"))?;
                s.connect(r)
                    .map_err(|e| format!("cannot set the UDP peer {r}: {e}"))?;
                s.set_nonblocking(true)
                    .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
                if !l.ip().is_loopback() {
                    log::warn!("bound to {l}, not a loopback address");
                }
                DgramSock::Udp(s)
            }
            (SockAddr::Unix(l), SockAddr::Unix(r)) => {
                claim_unix_path(l, true)?;
                let s = UnixDatagram::bind(l).map_err(|e| {
                    format!("cannot bind unix datagram socket {}: {e}", l.display())
                })?;
                s.set_nonblocking(true)
                    .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
                DgramSock::Unix(s, l.clone(), r.clone())
            }
            _ => return Err("LOCAL and REMOTE must both be unix paths or both IP:PORT".into()),
        };
        let fd = sock.fd();
        let what = format!("qemu dgram {} <-> {}", addrs.local, addrs.remote);
        Ok(QemuDevice::new(
            Kind::Dgram {
                sock,
                remote: addrs.remote.clone(),
                up: None,
            },
            fd,
            mtu,
            what,
            0,
        ))
    }

    fn new(kind: Kind, fd: RawFd, mtu: usize, what: String, stream_max: usize) -> QemuDevice {
        let max_frame = mtu + 14;
        let dgram = if matches!(kind, Kind::Dgram { .. }) {
            vec![0; 65536]
        } else {
            Vec::new()
        };
        QemuDevice {
            rx: RxBufs {
                stream: Reassembler::new(stream_max),
                dgram,
            },
            link: Link {
                kind,
                frame: vec![0; 4 + max_frame],
                pending: Vec::new(),
                sent: 0,
                broken: None,
                dropped: 0,
                wait: Waiter(Rc::new(Cell::new(WaitState {
                    fd,
                    ..WaitState::default()
                }))),
            },
            max_frame,
            what,
        }
    }

    /// What the main loop waits on; clone it before wrapping the device.
    pub fn waiter(&self) -> Waiter {
        self.link.wait.clone()
    }

    /// How to start QEMU against this device, for the log.
    pub fn qemu_hint(&self) -> String {
        match &self.link.kind {
            Kind::Stream { listener, .. } => match listener {
                Listener::Unix(_, p) => format!(
                    "-netdev stream,id=n0,server=off,addr.type=unix,addr.path={} -device virtio-net-pci,netdev=n0",
                    p.display()
                ),
                Listener::Tcp(l) => {
                    let a = l.local_addr().map_or_else(|_| "?".into(), |a| a.to_string());
                    let (host, port) = a.rsplit_once(':').unwrap_or((&a, "?"));
                    format!(
                        "-netdev stream,id=n0,server=off,addr.type=inet,addr.host={},addr.port={port} -device virtio-net-pci,netdev=n0",
                        host.trim_matches(['[', ']'])
                    )
                }
            },
            Kind::Dgram { sock, remote, .. } => match (sock, remote) {
                (DgramSock::Unix(_, l, r), _) => format!(
                    "-netdev dgram,id=n0,local.type=unix,local.path={},remote.type=unix,remote.path={} -device virtio-net-pci,netdev=n0",
                    r.display(),
                    l.display()
                ),
                (DgramSock::Udp(s), SockAddr::Inet(r)) => {
                    let l = s.local_addr().map_or_else(|_| "?".into(), |a| a.ip().to_string());
                    let lp = s.local_addr().map_or(0, |a| a.port());
                    format!(
                        "-netdev dgram,id=n0,local.type=inet,local.host={},local.port={},remote.type=inet,remote.host={l},remote.port={lp} -device virtio-net-pci,netdev=n0",
                        r.ip(),
                        r.port()
                    )
                }
                _ => String::new(),
            },
        }
    }
}

impl fmt::Display for QemuDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Link {
    /// Next frame from the peer, doing the connection's housekeeping on the way.
    fn poll_rx(&mut self, rx: &mut RxBufs, max_frame: usize) -> Option<Got> {
        let got = match self.kind {
            Kind::Stream { .. } => self.stream_rx(&mut rx.stream, max_frame).map(Got::Stream),
            Kind::Dgram { .. } => self.dgram_rx(&mut rx.dgram, max_frame).map(Got::Dgram),
        };
        let ready = rx.stream.has_frame();
        let urgent = self.broken.is_some();
        self.wait.update(|w| {
            w.rx_ready = ready;
            w.urgent = urgent;
        });
        got
    }

    fn stream_rx(&mut self, dec: &mut Reassembler, max_frame: usize) -> Option<Range<usize>> {
        if let Some(e) = self.broken.take() {
            self.drop_peer(dec, &format!("qemu peer write failed ({e})"));
        }
        let Kind::Stream {
            listener,
            peer,
            peer_name,
        } = &mut self.kind
        else {
            return None;
        };
        if peer.is_none() {
            match listener.accept() {
                Ok((s, name)) => {
                    log::info!("qemu peer connected ({name})");
                    self.wait.update(|w| w.fd = s.fd());
                    *peer = Some(s);
                    *peer_name = name;
                    dec.clear();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) => {
                    log::warn!("qemu: accept: {e}");
                    return None;
                }
            }
        }
        self.flush();
        for _ in 0..READS_PER_RECEIVE {
            match dec.next_frame() {
                Ok(Some(r)) if r.len() > max_frame => {
                    log::debug!("qemu: dropped a {}-byte frame (over the MTU)", r.len());
                    continue;
                }
                Ok(Some(r)) => return Some(r),
                Ok(None) => {}
                Err(e) => {
                    self.drop_peer(dec, &format!("qemu peer sent {e}; disconnected it"));
                    return None;
                }
            }
            let Kind::Stream { peer: Some(s), .. } = &mut self.kind else {
                return None;
            };
            match s.read(dec.space()) {
                Ok(0) => {
                    self.drop_peer(dec, "qemu peer disconnected");
                    return None;
                }
                Ok(n) => dec.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.drop_peer(dec, &format!("qemu peer read failed ({e})"));
                    return None;
                }
            }
        }
        None
    }

    /// Forgets the stream peer and goes back to listening.
    fn drop_peer(&mut self, dec: &mut Reassembler, why: &str) {
        let Kind::Stream {
            listener,
            peer,
            peer_name,
        } = &mut self.kind
        else {
            return;
        };
        if peer.take().is_some() {
            log::warn!("{why}; waiting for it to reconnect ({peer_name})");
            if self.dropped > 0 {
                log::info!(
                    "qemu: {} frames were dropped as the peer was slow",
                    self.dropped
                );
                self.dropped = 0;
            }
        }
        dec.clear();
        self.pending.clear();
        self.sent = 0;
        self.broken = None;
        let fd = listener.fd();
        self.wait.update(|w| {
            w.fd = fd;
            w.tx_pending = false;
        });
    }

    fn dgram_rx(&mut self, buf: &mut [u8], max_frame: usize) -> Option<usize> {
        if self.sent < self.pending.len() {
            self.flush();
        }
        let Kind::Dgram { sock, remote, up } = &mut self.kind else {
            return None;
        };
        for _ in 0..READS_PER_RECEIVE {
            match sock.recv(buf) {
                Ok(Some(n)) if n == 0 || n > max_frame => {
                    log::debug!("qemu: dropped a {n}-byte datagram");
                }
                Ok(Some(n)) => {
                    match up {
                        None => log::info!("qemu peer {remote} is talking"),
                        Some(false) => log::info!("qemu peer {remote} is back"),
                        Some(true) => {}
                    }
                    *up = Some(true);
                    return Some(n);
                }
                Ok(None) => log::debug!("qemu: ignored a datagram from another sender"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_gone(&e) => mark_down(up, remote, &e),
                Err(e) => {
                    log::warn!("qemu: receive: {e}");
                    return None;
                }
            }
        }
        None
    }

    /// Sends `self.frame[..4 + len]`: the prefix and the frame on a stream, the frame alone as
    /// a datagram. After what is pending; kept when the socket is full; dropped when that
    /// buffer is full too, or when there is no peer (like an unplugged wire).
    fn send(&mut self, len: usize) {
        let bytes = 4 + len;
        self.frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        let open = match &self.kind {
            Kind::Stream { peer, .. } => peer.is_some() && self.broken.is_none(),
            Kind::Dgram { .. } => true,
        };
        if open {
            if self.sent < self.pending.len() {
                self.flush();
            }
            if self.sent == self.pending.len() {
                self.write_frame(bytes);
            } else if self.pending.len() - self.sent + bytes <= PENDING_MAX {
                self.pending.extend_from_slice(&self.frame[..bytes]);
            } else {
                self.dropped += 1;
                log::debug!("qemu: peer is slow, frame dropped");
            }
        }
        let pending = self.sent < self.pending.len();
        let urgent = self.broken.is_some();
        self.wait.update(|w| {
            w.tx_pending = pending;
            w.urgent |= urgent;
        });
    }

    /// Writes a whole frame (`self.frame[..bytes]`) with nothing pending before it; keeps what
    /// the socket does not take now.
    fn write_frame(&mut self, bytes: usize) {
        self.pending.clear();
        self.sent = 0;
        match &mut self.kind {
            Kind::Stream { peer: Some(s), .. } => loop {
                match s.write(&self.frame[..bytes]) {
                    Ok(n) => self.pending.extend_from_slice(&self.frame[n..bytes]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.pending.extend_from_slice(&self.frame[..bytes])
                    }
                    Err(e) => self.broken = Some(e),
                }
                break;
            },
            Kind::Stream { peer: None, .. } => {}
            Kind::Dgram { sock, remote, up } => match sock.send(&self.frame[4..bytes]) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pending.extend_from_slice(&self.frame[..bytes])
                }
                Err(e) if is_gone(&e) => mark_down(up, remote, &e),
                Err(e) => log::debug!("qemu: send: {e}"),
            },
        }
    }

    /// Writes what is pending, as much as the socket takes now.
    fn flush(&mut self) {
        match &mut self.kind {
            Kind::Stream { peer: Some(s), .. } => {
                while self.sent < self.pending.len() {
                    match s.write(&self.pending[self.sent..]) {
                        Ok(0) => break,
                        Ok(n) => self.sent += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            self.broken = Some(e);
                            break;
                        }
                    }
                }
            }
            Kind::Stream { peer: None, .. } => {}
            // Pending datagrams are kept with their length prefix; one send each.
            Kind::Dgram { sock, remote, up } => {
                while self.pending.len() - self.sent >= 4 {
                    let p = &self.pending[self.sent..];
                    let len = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize;
                    match sock.send(&p[4..4 + len]) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if is_gone(&e) => {
                            mark_down(up, remote, &e);
                            self.sent = self.pending.len();
                            break;
                        }
                        Err(e) => log::debug!("qemu: send: {e}"),
                    }
                    self.sent += 4 + len;
                }
            }
        }
        if self.sent == self.pending.len() {
            self.pending.clear();
            self.sent = 0;
        } else if self.sent > PENDING_MAX / 2 {
            self.pending.drain(..self.sent);
            self.sent = 0;
        }
        let pending = self.sent < self.pending.len();
        self.wait.update(|w| w.tx_pending = pending);
    }
}

fn mark_down(up: &mut Option<bool>, remote: &SockAddr, e: &io::Error) {
    if *up != Some(false) {
        log::warn!("qemu peer {remote} is not there ({e}); frames are dropped until it is");
    }
    *up = Some(false);
}

/// A frame received from QEMU.
pub struct QemuRx<'a>(&'a [u8]);

/// Room to send one frame to QEMU.
pub struct QemuTx<'a>(&'a mut Link);

impl phy::RxToken for QemuRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for QemuTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let link = self.0;
        if link.frame.len() < 4 + len {
            link.frame.resize(4 + len, 0);
        }
        let r = f(&mut link.frame[4..4 + len]);
        link.send(len);
        r
    }
}

impl Device for QemuDevice {
    type RxToken<'a> = QemuRx<'a>;
    type TxToken<'a> = QemuTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(QemuRx<'_>, QemuTx<'_>)> {
        let got = self.link.poll_rx(&mut self.rx, self.max_frame)?;
        let frame = match got {
            Got::Stream(r) => self.rx.stream.frame(r),
            Got::Dgram(n) => &self.rx.dgram[..n],
        };
        Some((QemuRx(frame), QemuTx(&mut self.link)))
    }

    fn transmit(&mut self, _: Instant) -> Option<QemuTx<'_>> {
        Some(QemuTx(&mut self.link))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame;
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{RxToken, TxToken};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `len` as a 4-byte prefix followed by `frame`.
    fn framed(frame: &[u8]) -> Vec<u8> {
        let mut v = (frame.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(frame);
        v
    }

    /// Feeds `bytes` to `r` in pieces of `piece` bytes and collects every frame.
    fn feed(r: &mut Reassembler, bytes: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            let space = r.space();
            space[..chunk.len()].copy_from_slice(chunk);
            r.filled(chunk.len());
            while let Some(f) = r.next_frame().unwrap() {
                out.push(r.frame(f).to_vec());
            }
            assert!(!r.has_frame());
        }
        out
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn frame_split_over_reads() {
        let frame = pattern(1514, 7);
        let bytes = framed(&frame);
        for piece in [1, 2, 3, 4, 5, 100, 1517] {
            let mut r = Reassembler::new(MAX_WIRE_FRAME);
            assert_eq!(
                feed(&mut r, &bytes, piece),
                vec![frame.clone()],
                "piece {piece}"
            );
        }
    }

    #[test]
    fn several_frames_in_one_read() {
        let frames: Vec<Vec<u8>> = (0..5).map(|i| pattern(42 + i * 300, i as u8)).collect();
        let bytes: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
        let mut r = Reassembler::new(MAX_WIRE_FRAME);
        let space = r.space();
        space[..bytes.len()].copy_from_slice(&bytes);
        r.filled(bytes.len());
        assert!(r.has_frame());
        let mut got = Vec::new();
        while let Some(f) = r.next_frame().unwrap() {
            got.push(r.frame(f).to_vec());
        }
        assert_eq!(got, frames);
        assert!(!r.has_frame());
    }

    #[test]
    fn oversize_length_rejected() {
        let mut r = Reassembler::new(2000);
        let bytes = 2001u32.to_be_bytes();
        r.space()[..4].copy_from_slice(&bytes);
        r.filled(3);
        assert_eq!(r.next_frame(), Ok(None));
        r.filled(1);
        assert!(
            r.has_frame(),
            "an error is something to report without reading"
        );
        assert_eq!(r.next_frame(), Err(FrameError::Oversize(2001)));
        // The largest allowed frame passes.
        let mut r = Reassembler::new(2000);
        let f = pattern(2000, 1);
        assert_eq!(feed(&mut r, &framed(&f), 700), vec![f]);
    }

    #[test]
    fn empty_frames_are_skipped() {
        let mut bytes = framed(&[]);
        bytes.extend(framed(&[1, 2, 3]));
        bytes.extend(framed(&[]));
        let mut r = Reassembler::new(100);
        assert_eq!(feed(&mut r, &bytes, bytes.len()), vec![vec![1, 2, 3]]);
    }

    #[test]
    fn long_streams_with_random_splits() {
        // Large frames in odd pieces exercise compaction at the end of the buffer.
        let mut x: u32 = 0x1234_5678;
        let mut rnd = move |n: u32| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % n) as usize
        };
        let max = 9014;
        let frames: Vec<Vec<u8>> = (0..400)
            .map(|i| pattern(1 + rnd(max as u32), i as u8))
            .collect();
        let bytes: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
        let mut r = Reassembler::new(max);
        let mut got = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let space = r.space();
            assert!(space.len() >= max + 4);
            let n = (1 + rnd(3 * max as u32))
                .min(space.len())
                .min(bytes.len() - at);
            space[..n].copy_from_slice(&bytes[at..at + n]);
            r.filled(n);
            at += n;
            while let Some(f) = r.next_frame().unwrap() {
                got.push(r.frame(f).to_vec());
            }
        }
        assert_eq!(got.len(), frames.len());
        assert!(got == frames);
    }

    #[test]
    fn addresses() {
        assert_eq!(
            "/tmp/q.sock".parse::<SockAddr>(),
            Ok(SockAddr::Unix("/tmp/q.sock".into()))
        );
        assert_eq!(
            "q.sock".parse::<SockAddr>(),
            Ok(SockAddr::Unix("q.sock".into()))
        );
        assert_eq!(
            "127.0.0.1:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("127.0.0.1:5555".parse().unwrap()))
        );
        assert_eq!(
            "localhost:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("127.0.0.1:5555".parse().unwrap()))
        );
        assert_eq!(
            "[::1]:5555".parse::<SockAddr>(),
            Ok(SockAddr::Inet("[::1]:5555".parse().unwrap()))
        );
        assert!("127.0.0.1:0".parse::<SockAddr>().is_err());
        assert!("host:5555".parse::<SockAddr>().is_err());
        assert!("".parse::<SockAddr>().is_err());
        let d: DgramAddrs = "127.0.0.1:5556,127.0.0.1:5555".parse().unwrap();
        assert_eq!(d.local, SockAddr::Inet("127.0.0.1:5556".parse().unwrap()));
        assert_eq!(d.remote, SockAddr::Inet("127.0.0.1:5555".parse().unwrap()));
        assert!("/tmp/a,/tmp/b".parse::<DgramAddrs>().is_ok());
        assert!("/tmp/a,127.0.0.1:5".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5,[::1]:6".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5,127.0.0.1:5".parse::<DgramAddrs>().is_err());
        assert!("127.0.0.1:5".parse::<DgramAddrs>().is_err());
    }

    // ---------------------------------------------------------- the device, on unix sockets

    /// A fresh directory for sockets, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "smolhttpd-qemu-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn now() -> Instant {
        Instant::from_millis(0)
    }

    /// Frames the device receives within a bounded number of polls.
    fn receive_frames(dev: &mut QemuDevice, want: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            if got.len() == want {
                break;
            }
            match dev.receive(now()) {
                Some((rx, _tx)) => got.push(rx.consume(|f| f.to_vec())),
                None => {
                    let _ = phy::wait(dev.waiter().fd(), Some(Duration::from_millis(10)));
                }
            }
        }
        got
    }

    fn send_frame(dev: &mut QemuDevice, frame: &[u8]) {
        let tx = dev.transmit(now()).unwrap();
        tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
    }

    /// Reads from a blocking client stream until `n` bytes came.
    fn read_n(s: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut v = vec![0; n];
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        s.read_exact(&mut v).unwrap();
        v
    }

    #[test]
    fn stream_device_reassembles_sends_and_takes_a_new_peer() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = QemuDevice::listen_stream(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let waiter = dev.waiter();
        let listen_fd = waiter.fd();
        assert!(dev.receive(now()).is_none(), "nobody connected yet");
        // Sending with no peer loses the frame quietly.
        send_frame(&mut dev, &[0xaa; 60]);

        for round in 0..2u8 {
            let mut client = UnixStream::connect(&path).unwrap();
            let frames: Vec<Vec<u8>> = (0..4).map(|i| pattern(60 + i * 400, round)).collect();
            let bytes: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
            // The first frame split over two writes, the rest in one write.
            client.write_all(&bytes[..30]).unwrap();
            assert!(dev.receive(now()).is_none(), "half a frame is no frame");
            assert_ne!(waiter.fd(), listen_fd, "now waiting on the peer");
            client.write_all(&bytes[30..]).unwrap();
            assert_eq!(receive_frames(&mut dev, 4), frames);

            // Device to peer: prefix plus frame.
            let out = pattern(1514, 9);
            send_frame(&mut dev, &out);
            assert_eq!(read_n(&mut client, 4 + 1514), framed(&out));

            drop(client);
            for _ in 0..10 {
                if dev.receive(now()).is_none() && waiter.fd() == listen_fd {
                    break;
                }
            }
            assert_eq!(
                waiter.fd(),
                listen_fd,
                "back to listening after the peer left"
            );
        }
        drop(dev);
        assert!(!path.exists(), "the socket file is removed");
    }

    #[test]
    fn stream_device_drops_a_peer_that_sends_garbage() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = QemuDevice::listen_stream(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let listen_fd = dev.waiter().fd();
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..100 {
            assert!(dev.receive(now()).is_none());
            if dev.waiter().fd() == listen_fd {
                break;
            }
            let _ = phy::wait(dev.waiter().fd(), Some(Duration::from_millis(10)));
        }
        assert_eq!(dev.waiter().fd(), listen_fd);
        let mut buf = [0u8; 16];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the device hung up");
    }

    #[test]
    fn stream_device_keeps_frames_whole_when_the_peer_is_slow() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = QemuDevice::listen_stream(&SockAddr::Unix(path.clone()), 9000).unwrap();
        let waiter = dev.waiter();
        let mut client = UnixStream::connect(&path).unwrap();
        assert!(dev.receive(now()).is_none());
        // Far more than the socket and the pending buffer hold, while the peer reads nothing.
        let total = 400u32;
        for i in 0..total {
            let mut f = pattern(9014, i as u8);
            f[..4].copy_from_slice(&i.to_be_bytes());
            send_frame(&mut dev, &f);
        }
        assert!(
            waiter.limit().is_some(),
            "output pending: sleep only briefly"
        );
        assert!(dev.link.dropped > 0, "a full socket drops frames");
        // Now read everything: whole frames, in order, some missing.
        client.set_nonblocking(true).unwrap();
        let mut r = Reassembler::new(MAX_WIRE_FRAME);
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let _ = dev.receive(now()); // flushes what is pending
            match client.read(r.space()) {
                Ok(0) => break,
                Ok(n) => r.filled(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if waiter.limit().is_none() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
            while let Some(f) = r.next_frame().unwrap() {
                let f = r.frame(f);
                assert_eq!(f.len(), 9014);
                let i = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                assert_eq!(&f[4..], &pattern(9014, i as u8)[4..]);
                seen.push(i);
            }
        }
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(seen.len() as u64 + dev.link.dropped, total as u64);
        assert!(waiter.limit().is_none(), "nothing pending at the end");
    }

    #[test]
    fn stale_socket_is_replaced_and_live_or_other_files_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a stale socket file
        assert!(path.exists());
        let dev = QemuDevice::listen_stream(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let err = QemuDevice::listen_stream(&SockAddr::Unix(path.clone()), 1500)
            .err()
            .unwrap();
        assert!(err.contains("in use"), "{err}");
        drop(dev);
        let file = dir.0.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = QemuDevice::listen_stream(&SockAddr::Unix(file.clone()), 1500)
            .err()
            .unwrap();
        assert!(err.contains("not a socket"), "{err}");
        assert!(file.exists());
    }

    #[test]
    fn dgram_device_over_unix_sockets() {
        let dir = TempDir::new();
        let (ours, theirs) = (dir.0.join("s.sock"), dir.0.join("q.sock"));
        let addrs = DgramAddrs {
            local: SockAddr::Unix(ours.clone()),
            remote: SockAddr::Unix(theirs.clone()),
        };
        let mut dev = QemuDevice::dgram(&addrs, 1500).unwrap();
        // QEMU is not there yet: frames are lost, nothing fails.
        send_frame(&mut dev, &[1; 60]);
        assert!(dev.receive(now()).is_none());
        let peer = UnixDatagram::bind(&theirs).unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let frames: Vec<Vec<u8>> = (0..3).map(|i| pattern(42 + i * 100, i as u8)).collect();
        for f in &frames {
            peer.send_to(f, &ours).unwrap();
        }
        // A stranger's datagram is ignored.
        let stranger = UnixDatagram::unbound().unwrap();
        stranger.send_to(&[9; 60], &ours).unwrap();
        assert_eq!(receive_frames(&mut dev, 3), frames);
        assert!(dev.receive(now()).is_none());
        let out = pattern(1514, 3);
        send_frame(&mut dev, &out);
        let mut buf = vec![0; 2000];
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &out[..], "one datagram, no prefix");
        // More than the peer's queue (net.unix.max_dgram_qlen, 10 by default): kept, not lost.
        for i in 0..50u8 {
            send_frame(&mut dev, &pattern(1000, i));
        }
        assert!(dev.waiter().limit().is_some(), "datagrams pending");
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        for _ in 0..1000 {
            let _ = dev.receive(now()); // flushes
            match peer.recv(&mut buf) {
                Ok(n) => got.push(buf[..n].to_vec()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if got.len() == 50 {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        let want: Vec<Vec<u8>> = (0..50u8).map(|i| pattern(1000, i)).collect();
        assert!(got == want, "all 50 datagrams, in order");
        assert!(dev.waiter().limit().is_none());
        drop(dev);
        assert!(!ours.exists());
    }
}
