//! QEMU's user-space network backends as smoltcp devices (std shell, no root, no TAP).
//!
//! - [`StreamDevice`]: `-netdev stream` (and the older `-netdev socket,connect=...`), one byte
//!   stream, each Ethernet frame a 4-byte big-endian length (not counting itself) and the frame;
//!   no FCS, no padding, no virtio header. smolhttpd **listens** on a unix socket path or a TCP
//!   address and QEMU connects (`server=off`), so the server stays up across guest runs and takes
//!   the next QEMU when one goes away; one peer at a time (the next waits in the backlog). A
//!   write the socket takes only in part is finished from a bounded buffer before anything else,
//!   so frames stay whole; when that buffer is full, frames are dropped like on a busy wire.
//! - [`DgramDevice`]: `-netdev dgram` (and `-netdev socket,udp=...`), one frame per datagram
//!   over UDP or unix datagram sockets. smolhttpd binds LOCAL and sends to REMOTE, where QEMU
//!   binds. A datagram the socket cannot take now is dropped, not queued: a lossy wire.
//!
//! Everything is non-blocking; the loop sleeps with `smoltcp::phy::wait` on the device's fd
//! (for a stream, [`Waiter::fd`]: the listener, then the peer). TCP retransmits what is lost.

use std::cell::Cell;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::ops::Range;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::{AsRawFd, RawFd};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

use crate::{DgramAddrs, SockAddr};

/// The largest frame length accepted in a stream's length prefix: QEMU's own `NET_BUFSIZE`
/// (4096 + 65536). A larger length means the stream is not QEMU's framing (or is out of step);
/// the peer is disconnected, since there is no way to find the next frame.
pub const MAX_WIRE_FRAME: usize = 4096 + 65536;

/// Stream output the socket has not taken yet, at most; beyond it frames are dropped.
const PENDING_MAX: usize = 256 * 1024;

/// Reads (or datagrams) tried per `receive` call before giving the loop back.
const READS_PER_RECEIVE: usize = 8;

/// How long the loop may sleep while stream output is pending (it only waits for input).
const FLUSH_RETRY: Duration = Duration::from_millis(1);

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

// ------------------------------------------------------------------ sockets

/// A connected stream of either family.
trait Conn: Read + Write + AsRawFd {}
impl Conn for UnixStream {}
impl Conn for TcpStream {}

/// Takes the next waiting peer (non-blocking) with a name for the log.
type Accept = Box<dyn Fn() -> io::Result<(Box<dyn Conn>, String)>>;

/// A socket file this process bound: removed when dropped.
struct Bound(Option<PathBuf>);

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Makes way for a unix socket at `path`: a socket file nobody serves (left by a crash) is
/// removed; a live one or any other file is an error.
fn claim_unix_path(path: &Path, datagram: bool) -> Result<Bound, String> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
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
            .map_err(|e| format!("cannot remove the stale socket {}: {e}", path.display()))?;
    }
    Ok(Bound(Some(path.to_path_buf())))
}

/// One Ethernet frame as the device's caller sees it.
fn caps(max_frame: usize) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ethernet;
    caps.max_transmission_unit = max_frame;
    caps
}

// ------------------------------------------------------------------ stream

#[derive(Clone, Copy, Debug, Default)]
struct WaitState {
    fd: RawFd,
    /// Whole frames already read, or a peer to drop: do not sleep.
    now: bool,
    /// Output the socket has not taken yet: sleep briefly, then try again.
    tx_pending: bool,
}

/// What the main loop sleeps on for a [`StreamDevice`]: the fd (the listener, or the peer once
/// one is connected) and how long at most. Stays valid when the device is wrapped (pcap, fault
/// injection).
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
        if w.now {
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

/// QEMU's `-netdev stream` peer as a smoltcp Ethernet device: see the module docs.
pub struct StreamDevice {
    rx: Reassembler,
    out: StreamOut,
    addr: SockAddr,
}

/// The listener, the peer and the sending half; [`QemuTx`] borrows it.
pub struct StreamOut {
    listener: Accept,
    listen_fd: RawFd,
    _socket_file: Bound,
    peer: Option<(Box<dyn Conn>, String)>,
    /// Where frames are built: 4 bytes of length prefix, then the frame.
    frame: Vec<u8>,
    /// Output the socket has not taken yet (`pending[sent..]`): whole frames after the first.
    pending: Vec<u8>,
    sent: usize,
    /// A write error seen while sending; the peer is dropped at the next `receive`.
    broken: Option<io::Error>,
    dropped: u64,
    max_frame: usize,
    wait: Waiter,
}

impl StreamDevice {
    /// Listens on `addr` for QEMU's `-netdev stream,server=off` (or `-netdev socket,connect=`).
    /// `mtu` is the IP MTU.
    pub fn listen(addr: &SockAddr, mtu: usize) -> Result<StreamDevice, String> {
        let nonblocking = |r: io::Result<()>| {
            r.map_err(|e| format!("cannot make the listener non-blocking: {e}"))
        };
        let (accept, fd, file): (Accept, RawFd, Bound) = match addr {
            SockAddr::Unix(path) => {
                let file = claim_unix_path(path, false)?;
                let l = UnixListener::bind(path)
                    .map_err(|e| format!("cannot listen on unix socket {}: {e}", path.display()))?;
                nonblocking(l.set_nonblocking(true))?;
                let (fd, name) = (l.as_raw_fd(), format!("unix:{}", path.display()));
                let accept = move || {
                    let (s, _) = l.accept()?;
                    s.set_nonblocking(true)?;
                    Ok((Box::new(s) as Box<dyn Conn>, name.clone()))
                };
                (Box::new(accept), fd, file)
            }
            SockAddr::Inet(a) => {
                let l = TcpListener::bind(a).map_err(|e| format!("cannot listen on {a}: {e}"))?;
                nonblocking(l.set_nonblocking(true))?;
                if !a.ip().is_loopback() {
                    log::warn!(
                        "listening on {a}, not a loopback address: whoever reaches it can put \
                         frames on the server's network"
                    );
                }
                let fd = l.as_raw_fd();
                let accept = move || {
                    let (s, from) = l.accept()?;
                    s.set_nonblocking(true)?;
                    // One write per frame: never hold a frame back waiting for the next.
                    s.set_nodelay(true)?;
                    Ok((Box::new(s) as Box<dyn Conn>, from.to_string()))
                };
                (Box::new(accept), fd, Bound(None))
            }
        };
        let max_frame = mtu + 14;
        Ok(StreamDevice {
            rx: Reassembler::new(MAX_WIRE_FRAME),
            out: StreamOut {
                listener: accept,
                listen_fd: fd,
                _socket_file: file,
                peer: None,
                frame: vec![0; 4 + max_frame],
                pending: Vec::new(),
                sent: 0,
                broken: None,
                dropped: 0,
                max_frame,
                wait: Waiter(Rc::new(Cell::new(WaitState {
                    fd,
                    ..WaitState::default()
                }))),
            },
            addr: addr.clone(),
        })
    }

    /// What the main loop waits on; clone it before wrapping the device.
    pub fn waiter(&self) -> Waiter {
        self.out.wait.clone()
    }
}

impl fmt::Display for StreamDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "qemu stream {}", self.addr)
    }
}

impl StreamOut {
    /// The next frame from the peer, taking a new peer or dropping a broken one on the way.
    fn poll_rx(&mut self, dec: &mut Reassembler) -> Option<Range<usize>> {
        let got = self.next_frame(dec);
        let now = dec.has_frame() || self.broken.is_some();
        self.wait.update(|w| w.now = now);
        got
    }

    fn next_frame(&mut self, dec: &mut Reassembler) -> Option<Range<usize>> {
        if let Some(e) = self.broken.take() {
            self.drop_peer(dec, &format!("qemu peer write failed ({e})"));
        }
        if self.peer.is_none() {
            match (self.listener)() {
                Ok((s, name)) => {
                    log::info!("qemu peer connected ({name})");
                    let fd = s.as_raw_fd();
                    self.wait.update(|w| w.fd = fd);
                    self.peer = Some((s, name));
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
                Ok(Some(r)) if r.len() > self.max_frame => {
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
            let (s, _) = self.peer.as_mut()?;
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

    /// Forgets the peer and goes back to listening.
    fn drop_peer(&mut self, dec: &mut Reassembler, why: &str) {
        if let Some((_, name)) = self.peer.take() {
            log::warn!("{why}; waiting for it to reconnect ({name})");
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
        let fd = self.listen_fd;
        self.wait.update(|w| {
            w.fd = fd;
            w.tx_pending = false;
        });
    }

    /// Sends the prefix and `self.frame[4..4 + len]` after what is pending; keeps what the
    /// socket does not take; drops the frame when the pending buffer is full, or when there is
    /// no peer (like an unplugged wire).
    fn send(&mut self, len: usize) {
        let bytes = 4 + len;
        self.frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        if self.peer.is_some() && self.broken.is_none() {
            self.flush();
            if self.sent == self.pending.len() {
                self.pending.clear();
                self.sent = 0;
                let (s, _) = self.peer.as_mut().expect("a peer");
                let taken = loop {
                    match s.write(&self.frame[..bytes]) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                        Err(e) => {
                            self.broken = Some(e);
                            break bytes;
                        }
                        Ok(n) => break n,
                    }
                };
                self.pending.extend_from_slice(&self.frame[taken..bytes]);
            } else if self.pending.len() - self.sent + bytes <= PENDING_MAX {
                self.pending.extend_from_slice(&self.frame[..bytes]);
            } else {
                self.dropped += 1;
                log::debug!("qemu: peer is slow, frame dropped");
            }
        }
        let (pending, now) = (self.sent < self.pending.len(), self.broken.is_some());
        self.wait.update(|w| {
            w.tx_pending = pending;
            w.now |= now;
        });
    }

    /// Writes what is pending, as much as the socket takes now.
    fn flush(&mut self) {
        if let Some((s, _)) = &mut self.peer {
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

impl Device for StreamDevice {
    type RxToken<'a> = QemuRx<'a>;
    type TxToken<'a> = QemuTx<'a, StreamOut>;

    fn receive(&mut self, _: Instant) -> Option<(QemuRx<'_>, QemuTx<'_, StreamOut>)> {
        let r = self.out.poll_rx(&mut self.rx)?;
        Some((QemuRx(self.rx.frame(r)), QemuTx(&mut self.out)))
    }

    fn transmit(&mut self, _: Instant) -> Option<QemuTx<'_, StreamOut>> {
        Some(QemuTx(&mut self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        caps(self.out.max_frame)
    }
}

// ------------------------------------------------------------------ datagram

/// QEMU's `-netdev dgram` peer as a smoltcp Ethernet device: see the module docs.
pub struct DgramDevice {
    rx: Vec<u8>,
    out: DgramOut,
    addrs: DgramAddrs,
}

/// The socket and the sending half; [`QemuTx`] borrows it.
pub struct DgramOut {
    sock: DgramSock,
    _socket_file: Bound,
    remote: SockAddr,
    /// None: not heard from yet; Some(false): refused our last frame.
    up: Option<bool>,
    frame: Vec<u8>,
    max_frame: usize,
}

enum DgramSock {
    /// Connected to the remote: the kernel filters other senders and reports refusals.
    Udp(UdpSocket),
    /// Bound to the local path; sends to the remote path.
    Unix(UnixDatagram, PathBuf),
}

impl DgramDevice {
    /// Binds `addrs.local` for QEMU's `-netdev dgram` bound at `addrs.remote`.
    pub fn bind(addrs: &DgramAddrs, mtu: usize) -> Result<DgramDevice, String> {
        let nonblocking =
            |r: io::Result<()>| r.map_err(|e| format!("cannot make the socket non-blocking: {e}"));
        let (sock, file) = match (&addrs.local, &addrs.remote) {
            (SockAddr::Inet(l), SockAddr::Inet(r)) => {
                let s = UdpSocket::bind(l).map_err(|e| format!("cannot bind UDP {l}: {e}"))?;
                s.connect(r)
                    .map_err(|e| format!("cannot set the UDP peer {r}: {e}"))?;
                nonblocking(s.set_nonblocking(true))?;
                if !l.ip().is_loopback() {
                    log::warn!("bound to {l}, not a loopback address");
                }
                (DgramSock::Udp(s), Bound(None))
            }
            (SockAddr::Unix(l), SockAddr::Unix(r)) => {
                let file = claim_unix_path(l, true)?;
                let s = UnixDatagram::bind(l).map_err(|e| {
                    format!("cannot bind unix datagram socket {}: {e}", l.display())
                })?;
                nonblocking(s.set_nonblocking(true))?;
                (DgramSock::Unix(s, r.clone()), file)
            }
            _ => return Err("LOCAL and REMOTE must both be unix paths or both IP:PORT".into()),
        };
        let max_frame = mtu + 14;
        Ok(DgramDevice {
            rx: vec![0; 65536],
            out: DgramOut {
                sock,
                _socket_file: file,
                remote: addrs.remote.clone(),
                up: None,
                frame: vec![0; 4 + max_frame],
                max_frame,
            },
            addrs: addrs.clone(),
        })
    }

    /// The fd to wait on for input.
    pub fn fd(&self) -> RawFd {
        match &self.out.sock {
            DgramSock::Udp(s) => s.as_raw_fd(),
            DgramSock::Unix(s, _) => s.as_raw_fd(),
        }
    }
}

impl fmt::Display for DgramDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "qemu dgram {} <-> {}",
            self.addrs.local, self.addrs.remote
        )
    }
}

impl DgramOut {
    /// One datagram from the remote: its length.
    fn poll_rx(&mut self, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..READS_PER_RECEIVE {
            let got = match &self.sock {
                DgramSock::Udp(s) => s.recv(buf).map(Some),
                DgramSock::Unix(s, remote) => s
                    .recv_from(buf)
                    .map(|(n, from)| (from.as_pathname() == Some(remote.as_path())).then_some(n)),
            };
            match got {
                Ok(Some(n)) if n == 0 || n > self.max_frame => {
                    log::debug!("qemu: dropped a {n}-byte datagram");
                }
                Ok(Some(n)) => {
                    match self.up {
                        None => log::info!("qemu peer {} is talking", self.remote),
                        Some(false) => log::info!("qemu peer {} is back", self.remote),
                        Some(true) => {}
                    }
                    self.up = Some(true);
                    return Some(n);
                }
                Ok(None) => log::debug!("qemu: ignored a datagram from another sender"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => self.failed(&e),
            }
        }
        None
    }

    /// Sends `self.frame[4..4 + len]` as one datagram, or drops it.
    fn send(&mut self, len: usize) {
        let frame = &self.frame[4..4 + len];
        let sent = match &self.sock {
            DgramSock::Udp(s) => s.send(frame),
            DgramSock::Unix(s, remote) => s.send_to(frame, remote),
        };
        match sent {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                log::debug!("qemu: the peer's queue is full, frame dropped");
            }
            Err(e) => self.failed(&e),
        }
    }

    /// A receive or send error: the peer is not there (refused, gone), or something else.
    fn failed(&mut self, e: &io::Error) {
        use io::ErrorKind::{ConnectionRefused, ConnectionReset, NotFound};
        if !matches!(e.kind(), ConnectionRefused | NotFound | ConnectionReset) {
            log::debug!("qemu: {e}");
        } else if self.up != Some(false) {
            log::warn!(
                "qemu peer {} is not there ({e}); frames are dropped until it is",
                self.remote
            );
            self.up = Some(false);
        }
    }
}

impl Device for DgramDevice {
    type RxToken<'a> = QemuRx<'a>;
    type TxToken<'a> = QemuTx<'a, DgramOut>;

    fn receive(&mut self, _: Instant) -> Option<(QemuRx<'_>, QemuTx<'_, DgramOut>)> {
        let n = self.out.poll_rx(&mut self.rx)?;
        Some((QemuRx(&self.rx[..n]), QemuTx(&mut self.out)))
    }

    fn transmit(&mut self, _: Instant) -> Option<QemuTx<'_, DgramOut>> {
        Some(QemuTx(&mut self.out))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        caps(self.out.max_frame)
    }
}

// ------------------------------------------------------------------ tokens

/// A frame received from QEMU.
pub struct QemuRx<'a>(&'a [u8]);

/// Room to send one frame to QEMU.
pub struct QemuTx<'a, O>(&'a mut O);

/// The sending half of a device: a frame buffer (4 bytes of room for a prefix, then the frame)
/// and a way out for `buffer[4..4 + len]`.
pub trait Out {
    fn buffer(&mut self) -> &mut Vec<u8>;
    fn send(&mut self, len: usize);
}

impl Out for StreamOut {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.frame
    }
    fn send(&mut self, len: usize) {
        StreamOut::send(self, len);
    }
}

impl Out for DgramOut {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.frame
    }
    fn send(&mut self, len: usize) {
        DgramOut::send(self, len);
    }
}

impl phy::RxToken for QemuRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<O: Out> phy::TxToken for QemuTx<'_, O> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let buf = self.0.buffer();
        if buf.len() < 4 + len {
            buf.resize(4 + len, 0);
        }
        let r = f(&mut buf[4..4 + len]);
        self.0.send(len);
        r
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

    /// Frames the device receives within a bounded number of polls; `fd` is what to wait on.
    fn receive_frames<D: Device>(
        dev: &mut D,
        fd: impl Fn(&D) -> RawFd,
        want: usize,
    ) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        for _ in 0..1000 {
            if got.len() == want {
                break;
            }
            match dev
                .receive(now())
                .map(|(rx, _tx)| rx.consume(|f| f.to_vec()))
            {
                Some(frame) => got.push(frame),
                None => {
                    let _ = phy::wait(fd(dev), Some(Duration::from_millis(10)));
                }
            }
        }
        got
    }

    fn send_frame<D: Device>(dev: &mut D, frame: &[u8]) {
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
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500).unwrap();
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
            assert_eq!(receive_frames(&mut dev, |d| d.waiter().fd(), 4), frames);

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
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500).unwrap();
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
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 9000).unwrap();
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
        assert!(dev.out.dropped > 0, "a full socket drops frames");
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
        assert_eq!(seen.len() as u64 + dev.out.dropped, total as u64);
        assert!(waiter.limit().is_none(), "nothing pending at the end");
    }

    #[test]
    fn stale_socket_is_replaced_and_live_or_other_files_refused() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves a stale socket file
        assert!(path.exists());
        let dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let err = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500)
            .err()
            .unwrap();
        assert!(err.contains("in use"), "{err}");
        drop(dev);
        let file = dir.0.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let err = StreamDevice::listen(&SockAddr::Unix(file.clone()), 1500)
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
        let mut dev = DgramDevice::bind(&addrs, 1500).unwrap();
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
        assert_eq!(receive_frames(&mut dev, DgramDevice::fd, 3), frames);
        assert!(dev.receive(now()).is_none());
        let out = pattern(1514, 3);
        send_frame(&mut dev, &out);
        let mut buf = vec![0; 2000];
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &out[..], "one datagram, no prefix");
        // More than the peer's queue (net.unix.max_dgram_qlen, 10 by default) while it reads
        // nothing: the rest are dropped, not queued, like on a wire; what arrives is whole.
        for i in 0..50u8 {
            send_frame(&mut dev, &pattern(1000, i));
        }
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        while let Ok(n) = peer.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert!(
            !got.is_empty() && got.len() < 50,
            "{} of 50 arrived",
            got.len()
        );
        let want: Vec<Vec<u8>> = (0..got.len() as u8).map(|i| pattern(1000, i)).collect();
        assert!(got == want, "the first ones, whole and in order");
        // Nothing was kept back: the next frame goes out at once.
        send_frame(&mut dev, &out);
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &out[..]);
        drop(dev);
        assert!(!ours.exists());
    }
}
