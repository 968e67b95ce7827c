//! QEMU's user-space network backends as smoltcp devices (std shell, no root, no TAP).
//!
//! - [`StreamDevice`]: `-netdev stream` (and the older `-netdev socket,connect=...`), one byte
//!   stream, each Ethernet frame a 4-byte big-endian length (not counting itself) and the frame;
//!   no FCS, no padding, no virtio header. smolhttpd **listens** on a unix socket path or a TCP
//!   address and QEMU connects (`server=off`), so the server stays up across guest runs and takes
//!   the next QEMU when one goes away; one peer at a time (the next waits in the backlog).
//! - [`DgramDevice`]: `-netdev dgram` (and `-netdev socket,udp=...`), one frame per datagram
//!   over UDP or unix datagram sockets. smolhttpd binds LOCAL and sends to REMOTE, where QEMU
//!   binds.
//!
//! **Frames are held back, never dropped.** A QEMU guest on a local socket is not a lossy wire:
//! the kernel says when the socket cannot take a frame now (`EAGAIN`, and `POLLOUT` when it can
//! again), so a frame the socket does not take waits in the device's [`Outbox`], in order, and
//! `Device::transmit` hands smoltcp no token until the outbox is empty: smoltcp keeps its data in
//! the socket buffers and sends it on a later poll, and the main loop sleeps on `POLLOUT`
//! ([`Waiter::interest`]). Throwing frames away instead costs seconds: smoltcp has no SACK and
//! doubles its retransmission timeout without a new sample, so a burst of drops stalls a
//! transfer. The token that comes with a received frame (an ACK, an ARP reply) follows the same
//! rule: its frame joins the outbox, and while the outbox holds more than [`HELD_MAX`] bytes the
//! device reads nothing more, so the outbox stays bounded and nothing is lost. A stream write
//! that takes part of a frame leaves the rest first in the outbox, so frames stay whole and are
//! written once.
//!
//! What is still lost, and counted ([`Counters`]): frames sent while no peer is there (a stream
//! with nobody connected, a datagram peer that is not bound: an unplugged wire), and frames a
//! socket error refused (`dropped`, which stays 0 in normal use). Over UDP the kernel drops a
//! datagram on the receiver's side when QEMU's receive buffer is full, without telling the
//! sender; unix datagram sockets tell (the receiver's queue is part of `POLLOUT`), which is why
//! the unix form is the one to use.
//!
//! Everything is non-blocking; the main loop sleeps with `poll(2)` on what [`Waiter::interest`]
//! names: the listener or the peer for input, the sending socket for output while frames wait.
//! TCP retransmits what is lost.

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
use smoltcp::time::Instant;

use crate::wait::Interest;
use crate::{DgramAddrs, SockAddr};

/// The largest frame length accepted in a stream's length prefix: QEMU's own `NET_BUFSIZE`
/// (4096 + 65536). A larger length means the stream is not QEMU's framing (or is out of step);
/// the peer is disconnected, since there is no way to find the next frame.
pub const MAX_WIRE_FRAME: usize = 4096 + 65536;

/// Held-back output, in bytes, beyond which the device reads nothing more until the peer takes
/// some (each received frame may add one reply frame to the outbox).
pub const HELD_MAX: usize = 64 * 1024;

/// Reads (or datagrams) tried per `receive` call before giving the loop back.
const READS_PER_RECEIVE: usize = 8;

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

// ------------------------------------------------------------------ the outbox

/// Frames the socket has not taken yet, in order, each as a 4-byte big-endian length and the
/// frame (the stream's own framing; a datagram device sends the frame without its prefix).
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    sent: usize,
}

/// What became of one datagram handed to the socket.
enum Sent {
    Taken,
    /// The socket cannot take it now: keep it and wait for `POLLOUT`.
    Full,
    /// Lost: the peer is not there (true), or another error (false).
    Lost(bool),
}

impl Outbox {
    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len() - self.sent
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `bytes` (whole records, or the rest of one a write took in part).
    fn push(&mut self, bytes: &[u8]) {
        if self.sent > 0 && self.sent == self.buf.len() {
            self.clear();
        }
        self.buf.extend_from_slice(bytes);
    }

    fn clear(&mut self) {
        self.buf.clear();
        self.sent = 0;
    }

    /// Moves what is left to the front once half of the buffer is written.
    fn taken(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.buf.len() {
            self.clear();
        } else if self.sent > self.buf.len() / 2 {
            self.buf.drain(..self.sent);
            self.sent = 0;
        }
    }

    /// A stream: writes as much as `write` takes, in any pieces; stops at `WouldBlock`.
    fn flush_bytes(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        while !self.is_empty() {
            match write(&self.buf[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.taken(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Datagrams: sends whole frames in order until the socket is full. Returns the frames
    /// lost: (peer absent, other errors).
    fn flush_frames(&mut self, mut send: impl FnMut(&[u8]) -> Sent) -> (u64, u64) {
        let mut lost = (0, 0);
        while self.len() >= 4 {
            let at = self.sent;
            let len = u32::from_be_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]) as usize;
            match send(&self.buf[at + 4..at + 4 + len]) {
                Sent::Full => break,
                Sent::Taken => {}
                Sent::Lost(true) => lost.0 += 1,
                Sent::Lost(false) => lost.1 += 1,
            }
            self.taken(4 + len);
        }
        lost
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

/// An error that means nobody is at the other end (yet, or any more).
fn absent(e: &io::Error) -> bool {
    use io::ErrorKind::{ConnectionRefused, ConnectionReset, NotConnected, NotFound};
    matches!(
        e.kind(),
        ConnectionRefused | NotFound | ConnectionReset | NotConnected
    )
}

// ------------------------------------------------------------------ what the loop sees

/// Frames a device did not deliver, and how many it held back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames that waited in the outbox because the socket could not take them at once.
    pub held: u64,
    /// Frames lost with a peer there (a socket error). Stays 0 in normal use.
    pub dropped: u64,
    /// Frames sent while no peer was there (an unplugged wire).
    pub unplugged: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Shared {
    interest: Interest,
    counters: Counters,
}

/// What the main loop sleeps on for a QEMU device (the fds change as peers come and go, and
/// with what is held back), and its [`Counters`]. Clone it before wrapping the device (pcap,
/// fault injection); it stays valid.
#[derive(Clone, Default)]
pub struct Waiter(Rc<Cell<Shared>>);

impl Waiter {
    /// What to wait for now.
    pub fn interest(&self) -> Interest {
        self.0.get().interest
    }

    /// Frames held back and lost so far.
    pub fn counters(&self) -> Counters {
        self.0.get().counters
    }

    fn set(&self, f: impl FnOnce(&mut Interest)) {
        let mut s = self.0.get();
        f(&mut s.interest);
        self.0.set(s);
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        let mut s = self.0.get();
        f(&mut s.counters);
        self.0.set(s);
    }
}

// ------------------------------------------------------------------ stream

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
    outbox: Outbox,
    /// A write error seen while sending; the peer is dropped at the next `receive`.
    broken: Option<io::Error>,
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
        let wait = Waiter::default();
        wait.set(|i| *i = Interest::read(fd));
        Ok(StreamDevice {
            rx: Reassembler::new(MAX_WIRE_FRAME),
            out: StreamOut {
                listener: accept,
                listen_fd: fd,
                _socket_file: file,
                peer: None,
                frame: vec![0; 4 + max_frame],
                outbox: Outbox::default(),
                broken: None,
                max_frame,
                wait,
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
        self.update(dec);
        got
    }

    /// Whether the device reads now: not while the outbox is over [`HELD_MAX`].
    fn reading(&self) -> bool {
        self.outbox.len() <= HELD_MAX
    }

    /// Says what the loop waits for: input from the listener or the peer (unless reading is
    /// paused), output while frames are held back, nothing while frames are already here.
    fn update(&self, dec: &Reassembler) {
        let reading = self.reading();
        let (fd, writing) = match &self.peer {
            Some((s, _)) => (s.as_raw_fd(), !self.outbox.is_empty()),
            None => (self.listen_fd, false),
        };
        let now = self.broken.is_some() || (reading && dec.has_frame());
        self.wait.set(|i| {
            *i = Interest {
                read: (reading || self.peer.is_none()).then_some(fd),
                write: writing.then_some(fd),
                now,
            }
        });
    }

    fn next_frame(&mut self, dec: &mut Reassembler) -> Option<Range<usize>> {
        if let Some(e) = self.broken.take() {
            self.drop_peer(dec, &format!("qemu peer write failed ({e})"));
        }
        if self.peer.is_none() {
            match (self.listener)() {
                Ok((s, name)) => {
                    log::info!("qemu peer connected ({name})");
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
        if !self.reading() {
            return None;
        }
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

    /// Forgets the peer (what it had not taken is lost with it) and goes back to listening.
    fn drop_peer(&mut self, dec: &mut Reassembler, why: &str) {
        if let Some((_, name)) = self.peer.take() {
            log::warn!("{why}; waiting for it to reconnect ({name})");
        }
        dec.clear();
        self.outbox.clear();
        self.broken = None;
    }

    /// Writes what is held back, as much as the socket takes now.
    fn flush(&mut self) {
        if let Some((s, _)) = &mut self.peer {
            if let Err(e) = self.outbox.flush_bytes(|b| s.write(b)) {
                self.broken.get_or_insert(e);
            }
        }
    }

    /// Whether smoltcp may have a token: nothing held back (or no peer: an unplugged wire
    /// takes every frame).
    fn can_send(&mut self) -> bool {
        self.flush();
        let free = self.peer.is_none() || self.broken.is_some() || self.outbox.is_empty();
        if !free {
            let fd = self.peer.as_ref().map(|(s, _)| s.as_raw_fd());
            self.wait.set(|i| i.write = fd);
        }
        free
    }

    /// Sends the prefix and `self.frame[4..4 + len]`: at once if nothing is held back and the
    /// socket takes it, else (what is left of) it waits in the outbox. With no peer the frame
    /// is lost, like on an unplugged wire.
    fn send(&mut self, len: usize) {
        let bytes = 4 + len;
        self.frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        if self.peer.is_none() || self.broken.is_some() {
            self.wait.count(|c| c.unplugged += 1);
            return;
        }
        self.flush();
        let mut taken = 0;
        if self.outbox.is_empty() {
            let (s, _) = self.peer.as_mut().expect("a peer");
            taken = loop {
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
        }
        if taken < bytes {
            self.outbox.push(&self.frame[taken..bytes]);
            self.wait.count(|c| c.held += 1);
        }
        let fd = self.peer.as_ref().map(|(s, _)| s.as_raw_fd());
        let (held, now) = (!self.outbox.is_empty(), self.broken.is_some());
        self.wait.set(|i| {
            if held {
                i.write = fd;
            }
            i.now |= now;
        });
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
        self.out.can_send().then_some(QemuTx(&mut self.out))
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

/// The sockets and the sending half; [`QemuTx`] borrows it.
pub struct DgramOut {
    sock: DgramSock,
    _socket_file: Bound,
    remote: SockAddr,
    /// None: not heard from yet; Some(false): refused our last frame.
    up: Option<bool>,
    /// Heard from at least once.
    heard: bool,
    frame: Vec<u8>,
    outbox: Outbox,
    max_frame: usize,
    wait: Waiter,
}

enum DgramSock {
    /// Connected to the remote: the kernel filters other senders and reports refusals.
    Udp(UdpSocket),
    /// Unix datagrams: received on a socket bound to LOCAL (from whoever sends), sent from a
    /// second socket connected to REMOTE, so `POLLOUT` tells when QEMU's queue has room.
    Unix(UnixDgram),
}

struct UnixDgram {
    rx: UnixDatagram,
    tx: UnixDatagram,
    /// `tx` is connected to the socket now at `remote` (QEMU binds it anew when it restarts).
    connected: bool,
    remote: PathBuf,
    /// The sender path last seen to be `remote` (a relative or other spelling of it).
    known: Option<PathBuf>,
    /// A sender that is not `remote` was reported (once).
    warned: bool,
}

impl UnixDgram {
    /// Whether a datagram from `from` (as the kernel reports the sender) comes from `remote`:
    /// the same text, or the same socket file by another spelling.
    fn is_remote(&mut self, from: Option<&Path>) -> bool {
        let Some(from) = from else {
            return false;
        };
        if from == self.remote || self.known.as_deref() == Some(from) {
            return true;
        }
        let same = match (from.canonicalize(), self.remote.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        if same {
            self.known = Some(from.to_path_buf());
        }
        same
    }

    /// Sends one frame to the socket at `remote`, (re)connecting to it as needed: a refusal
    /// means the socket we were connected to is gone (QEMU restarted): connect again, once.
    fn send(&mut self, frame: &[u8]) -> io::Result<usize> {
        for _ in 0..2 {
            if !self.connected {
                self.tx.connect(&self.remote)?;
                self.connected = true;
            }
            match self.tx.send(frame) {
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => self.connected = false,
                r => return r,
            }
        }
        Err(io::ErrorKind::ConnectionRefused.into())
    }
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
                let rx = UnixDatagram::bind(l).map_err(|e| {
                    format!("cannot bind unix datagram socket {}: {e}", l.display())
                })?;
                nonblocking(rx.set_nonblocking(true))?;
                let tx = UnixDatagram::unbound()
                    .map_err(|e| format!("cannot open a unix datagram socket: {e}"))?;
                nonblocking(tx.set_nonblocking(true))?;
                let sock = UnixDgram {
                    rx,
                    tx,
                    connected: false,
                    remote: r.clone(),
                    known: None,
                    warned: false,
                };
                (DgramSock::Unix(sock), file)
            }
            _ => return Err("LOCAL and REMOTE must both be unix paths or both IP:PORT".into()),
        };
        let max_frame = mtu + 14;
        let out = DgramOut {
            sock,
            _socket_file: file,
            remote: addrs.remote.clone(),
            up: None,
            heard: false,
            frame: vec![0; 4 + max_frame],
            outbox: Outbox::default(),
            max_frame,
            wait: Waiter::default(),
        };
        out.update();
        Ok(DgramDevice {
            rx: vec![0; 65536],
            out,
            addrs: addrs.clone(),
        })
    }

    /// What the main loop waits on; clone it before wrapping the device.
    pub fn waiter(&self) -> Waiter {
        self.out.wait.clone()
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
    /// The fds: (input, output).
    fn fds(&self) -> (RawFd, RawFd) {
        match &self.sock {
            DgramSock::Udp(s) => (s.as_raw_fd(), s.as_raw_fd()),
            DgramSock::Unix(u) => (u.rx.as_raw_fd(), u.tx.as_raw_fd()),
        }
    }

    fn reading(&self) -> bool {
        self.outbox.len() <= HELD_MAX
    }

    fn update(&self) {
        let (rx, tx) = self.fds();
        let (reading, writing) = (self.reading(), !self.outbox.is_empty());
        self.wait.set(|i| {
            *i = Interest {
                read: reading.then_some(rx),
                write: writing.then_some(tx),
                now: false,
            }
        });
    }

    /// One datagram from the remote: its length.
    fn poll_rx(&mut self, buf: &mut [u8]) -> Option<usize> {
        self.flush();
        let got = if self.reading() { self.read(buf) } else { None };
        self.update();
        got
    }

    fn read(&mut self, buf: &mut [u8]) -> Option<usize> {
        for _ in 0..READS_PER_RECEIVE {
            let got = match &mut self.sock {
                DgramSock::Udp(s) => s.recv(buf).map(Some),
                DgramSock::Unix(u) => u.rx.recv_from(buf).map(|(n, from)| {
                    if u.is_remote(from.as_pathname()) {
                        return Some(n);
                    }
                    if !u.warned {
                        u.warned = true;
                        log::info!(
                            "qemu: ignoring datagrams from {:?}, which is not {} (said once)",
                            from,
                            u.remote.display()
                        );
                    }
                    None
                }),
            };
            match got {
                Ok(Some(n)) if n == 0 || n > self.max_frame => {
                    log::debug!("qemu: dropped a {n}-byte datagram");
                }
                Ok(Some(n)) => {
                    // "Talking" the first time it is heard (even if frames sent before it was
                    // there were lost, as the mDNS probes at start are), "back" after it left.
                    match (self.up, self.heard) {
                        (_, false) => log::info!("qemu peer {} is talking", self.remote),
                        (Some(false), true) => log::info!("qemu peer {} is back", self.remote),
                        _ => {}
                    }
                    self.up = Some(true);
                    self.heard = true;
                    return Some(n);
                }
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => failed(&mut self.up, &self.remote, &e),
            }
        }
        None
    }

    /// Hands one frame to the socket.
    fn send_one(sock: &mut DgramSock, frame: &[u8]) -> io::Result<usize> {
        match sock {
            DgramSock::Udp(s) => s.send(frame),
            DgramSock::Unix(u) => u.send(frame),
        }
    }

    /// Sends what is held back, in order, as far as the socket takes it.
    fn flush(&mut self) {
        let (sock, up, remote) = (&mut self.sock, &mut self.up, &self.remote);
        let (absent, other) = self
            .outbox
            .flush_frames(|f| outcome(up, remote, Self::send_one(sock, f)));
        self.count_lost(absent, other);
    }

    fn count_lost(&self, absent: u64, other: u64) {
        if absent + other > 0 {
            self.wait.count(|c| {
                c.unplugged += absent;
                c.dropped += other;
            });
        }
    }

    fn can_send(&mut self) -> bool {
        self.flush();
        self.update();
        self.outbox.is_empty()
    }

    /// Sends `self.frame[4..4 + len]` as one datagram now, or holds it back (behind what is
    /// already held back).
    fn send(&mut self, len: usize) {
        self.frame[..4].copy_from_slice(&(len as u32).to_be_bytes());
        self.flush();
        let sent = if self.outbox.is_empty() {
            let r = Self::send_one(&mut self.sock, &self.frame[4..4 + len]);
            outcome(&mut self.up, &self.remote, r)
        } else {
            Sent::Full
        };
        match sent {
            Sent::Taken => {}
            Sent::Full => {
                self.outbox.push(&self.frame[..4 + len]);
                self.wait.count(|c| c.held += 1);
            }
            Sent::Lost(absent) => self.count_lost(absent as u64, !absent as u64),
        }
        self.update();
    }
}

/// What a send's result means for the frame.
fn outcome(up: &mut Option<bool>, remote: &SockAddr, r: io::Result<usize>) -> Sent {
    match r {
        Ok(_) => Sent::Taken,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Sent::Full,
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Sent::Full,
        Err(e) => {
            failed(up, remote, &e);
            Sent::Lost(absent(&e))
        }
    }
}

/// A receive or send error: the peer is not there (refused, gone), or something else.
fn failed(up: &mut Option<bool>, remote: &SockAddr, e: &io::Error) {
    if !absent(e) {
        log::debug!("qemu: {e}");
    } else if *up != Some(false) {
        log::warn!("qemu peer {remote} is not there ({e}); frames are dropped until it is");
        *up = Some(false);
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
        self.out.can_send().then_some(QemuTx(&mut self.out))
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
    use crate::wait::wait;
    use smoltcp::phy::{RxToken, TxToken};
    use smoltcp::time::Duration;
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

    /// The fd the loop reads from.
    fn read_fd(w: &Waiter) -> RawFd {
        w.interest().read.expect("reading")
    }

    /// Frames the device receives within a bounded number of polls, sleeping as the main
    /// loop would.
    fn receive_frames<D: Device>(dev: &mut D, w: &Waiter, want: usize) -> Vec<Vec<u8>> {
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
                None => wait(&w.interest(), Duration::from_millis(10)).unwrap(),
            }
        }
        got
    }

    /// Sends `frame` with a token from `transmit`; false if the device gave none.
    fn send_frame<D: Device>(dev: &mut D, frame: &[u8]) -> bool {
        match dev.transmit(now()) {
            Some(tx) => {
                tx.consume(frame.len(), |buf| buf.copy_from_slice(frame));
                true
            }
            None => false,
        }
    }

    /// A frame numbered `i` in its first four bytes.
    fn numbered(len: usize, i: u32) -> Vec<u8> {
        let mut f = pattern(len, i as u8);
        f[..4].copy_from_slice(&i.to_be_bytes());
        f
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
        let listen_fd = read_fd(&waiter);
        assert!(dev.receive(now()).is_none(), "nobody connected yet");
        // Sending with no peer loses the frame quietly, as an unplugged wire does.
        assert!(send_frame(&mut dev, &[0xaa; 60]));
        assert_eq!(waiter.counters().unplugged, 1);

        for round in 0..2u8 {
            let mut client = UnixStream::connect(&path).unwrap();
            let frames: Vec<Vec<u8>> = (0..4).map(|i| pattern(60 + i * 400, round)).collect();
            let bytes: Vec<u8> = frames.iter().flat_map(|f| framed(f)).collect();
            // The first frame split over two writes, the rest in one write.
            client.write_all(&bytes[..30]).unwrap();
            assert!(dev.receive(now()).is_none(), "half a frame is no frame");
            assert_ne!(read_fd(&waiter), listen_fd, "now waiting on the peer");
            client.write_all(&bytes[30..]).unwrap();
            assert_eq!(receive_frames(&mut dev, &waiter, 4), frames);

            // Device to peer: prefix plus frame.
            let out = pattern(1514, 9);
            assert!(send_frame(&mut dev, &out));
            assert_eq!(read_n(&mut client, 4 + 1514), framed(&out));

            drop(client);
            for _ in 0..10 {
                if dev.receive(now()).is_none() && read_fd(&waiter) == listen_fd {
                    break;
                }
            }
            assert_eq!(
                read_fd(&waiter),
                listen_fd,
                "back to listening after the peer left"
            );
        }
        assert_eq!(waiter.counters().dropped, 0);
        drop(dev);
        assert!(!path.exists(), "the socket file is removed");
    }

    #[test]
    fn stream_device_drops_a_peer_that_sends_garbage() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let waiter = dev.waiter();
        let listen_fd = read_fd(&waiter);
        let mut client = UnixStream::connect(&path).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..100 {
            assert!(dev.receive(now()).is_none());
            if read_fd(&waiter) == listen_fd {
                break;
            }
            wait(&waiter.interest(), Duration::from_millis(10)).unwrap();
        }
        assert_eq!(read_fd(&waiter), listen_fd);
        let mut buf = [0u8; 16];
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the device hung up");
    }

    #[test]
    fn stream_device_refuses_a_frame_over_the_mtu_at_once() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 1500).unwrap();
        let waiter = dev.waiter();
        let mut client = UnixStream::connect(&path).unwrap();
        let (big, ok) = (pattern(1515, 1), pattern(1514, 2));
        client.write_all(&framed(&big)).unwrap();
        client.write_all(&framed(&ok)).unwrap();
        assert_eq!(receive_frames(&mut dev, &waiter, 1), vec![ok]);
        assert!(dev.receive(now()).is_none(), "the big one was not kept");
        assert_eq!(waiter.counters(), Counters::default());
    }

    /// Reads the peer's side of a stream in a thread after `delay`, until `frames` frames of
    /// `len` bytes came (or 10 s passed): their numbers.
    fn read_later(
        mut client: UnixStream,
        delay: std::time::Duration,
        frames: usize,
        len: usize,
    ) -> std::thread::JoinHandle<Vec<u32>> {
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(10)))
                .unwrap();
            let mut r = Reassembler::new(MAX_WIRE_FRAME);
            let mut seen = Vec::new();
            while seen.len() < frames {
                match client.read(r.space()) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => r.filled(n),
                }
                while let Some(f) = r.next_frame().unwrap() {
                    let f = r.frame(f);
                    let i = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                    assert_eq!(f, &numbered(len, i)[..], "frame {i} whole");
                    seen.push(i);
                }
            }
            seen
        })
    }

    #[test]
    fn stream_device_holds_frames_back_while_the_peer_does_not_read() {
        let dir = TempDir::new();
        let path = dir.0.join("q.sock");
        let mut dev = StreamDevice::listen(&SockAddr::Unix(path.clone()), 9000).unwrap();
        let waiter = dev.waiter();
        let client = UnixStream::connect(&path).unwrap();
        assert!(dev.receive(now()).is_none());
        // Send until the device gives no token: the socket is full and a frame waits.
        let mut sent = 0u32;
        while sent < 10_000 && send_frame(&mut dev, &numbered(9014, sent)) {
            sent += 1;
        }
        assert!(sent < 10_000, "the device says when the socket is full");
        let peer_fd = read_fd(&waiter);
        assert_eq!(
            waiter.interest().write,
            Some(peer_fd),
            "the loop waits for POLLOUT"
        );
        assert!(waiter.counters().held >= 1);
        // The peer reads nothing and sends nothing: the loop sleeps its whole timeout.
        let t = std::time::Instant::now();
        wait(&waiter.interest(), Duration::from_millis(200)).unwrap();
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(190),
            "{:?}",
            t.elapsed()
        );
        assert!(!send_frame(&mut dev, &numbered(9014, sent)), "still full");

        // Frames that come with received ones (ACKs) join the outbox; past HELD_MAX the
        // device stops reading, so the outbox stays bounded.
        let mut writer = client.try_clone().unwrap();
        for i in 0..20u8 {
            writer.write_all(&framed(&pattern(60, i))).unwrap();
        }
        let mut replies = 0;
        while let Some((rx, tx)) = dev.receive(now()) {
            rx.consume(|_| ());
            tx.consume(9014, |b| b.copy_from_slice(&numbered(9014, sent)));
            sent += 1;
            replies += 1;
            assert!(replies <= 20);
        }
        assert!(replies < 20, "reading pauses while the outbox is full");
        assert!(dev.out.outbox.len() <= HELD_MAX + 4 + 9014);
        assert_eq!(
            waiter.interest().read,
            None,
            "no wake-ups for input it will not read"
        );
        assert_eq!(waiter.interest().write, Some(peer_fd));

        // Now the peer reads: every frame arrives, whole and in order; the loop wakes on
        // POLLOUT as soon as it does (not after its timeout).
        let reader = read_later(
            client,
            std::time::Duration::from_millis(300),
            sent as usize,
            9014,
        );
        let t = std::time::Instant::now();
        wait(&waiter.interest(), Duration::from_secs(5)).unwrap();
        let woke = t.elapsed();
        assert!(
            woke < std::time::Duration::from_secs(4),
            "woke after {woke:?}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !dev.out.outbox.is_empty() && std::time::Instant::now() < deadline {
            while let Some((rx, _)) = dev.receive(now()) {
                rx.consume(|_| ());
            }
            let _ = dev.transmit(now());
            wait(&waiter.interest(), Duration::from_millis(50)).unwrap();
        }
        let seen = reader.join().unwrap();
        assert_eq!(seen, (0..sent).collect::<Vec<_>>(), "all {sent}, in order");
        assert_eq!(waiter.interest().write, None, "nothing held at the end");
        let c = waiter.counters();
        assert_eq!((c.dropped, c.unplugged), (0, 0));
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

    /// `abs` spelled relative to the current directory (`../../tmp/...`).
    fn relative(abs: &Path) -> PathBuf {
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        PathBuf::from(up).join(abs.strip_prefix("/").unwrap())
    }

    #[test]
    fn dgram_device_over_unix_sockets() {
        let dir = TempDir::new();
        let (ours, theirs) = (dir.0.join("s.sock"), dir.0.join("q.sock"));
        // REMOTE spelled another way than the peer binds it: still the peer.
        let addrs = DgramAddrs {
            local: SockAddr::Unix(ours.clone()),
            remote: SockAddr::Unix(relative(&theirs)),
        };
        let mut dev = DgramDevice::bind(&addrs, 1500).unwrap();
        let waiter = dev.waiter();
        // QEMU is not there yet: the frame is lost as on an unplugged wire, nothing fails.
        assert!(send_frame(&mut dev, &[1; 60]));
        assert_eq!(waiter.counters().unplugged, 1);
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
        assert_eq!(receive_frames(&mut dev, &waiter, 3), frames);
        assert!(dev.receive(now()).is_none());
        let out = pattern(1514, 3);
        assert!(send_frame(&mut dev, &out));
        let mut buf = vec![0; 2000];
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &out[..], "one datagram, no prefix");

        // More than the peer's queue (net.unix.max_dgram_qlen, 10 by default) while it reads
        // nothing: the device gives no token once a frame waits, and loses none.
        let mut sent = 0u32;
        while sent < 1000 && send_frame(&mut dev, &numbered(1000, sent)) {
            sent += 1;
        }
        assert!(sent < 1000, "the device says when the peer's queue is full");
        assert!(
            waiter.interest().write.is_some(),
            "the loop waits for POLLOUT"
        );
        let t = std::time::Instant::now();
        wait(&waiter.interest(), Duration::from_millis(200)).unwrap();
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(190),
            "no spin while full"
        );
        // The peer reads: all of them, whole and in order.
        peer.set_nonblocking(true).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < sent as usize && std::time::Instant::now() < deadline {
            while let Ok(n) = peer.recv(&mut buf) {
                got.push(buf[..n].to_vec());
            }
            let _ = dev.transmit(now()); // flushes what waits
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let want: Vec<Vec<u8>> = (0..sent).map(|i| numbered(1000, i)).collect();
        assert!(got == want, "{} of {sent}, whole and in order", got.len());
        assert_eq!(waiter.interest().write, None);

        // QEMU restarts: a new socket at the same path. The device finds it.
        drop(peer);
        std::fs::remove_file(&theirs).unwrap();
        let peer = UnixDatagram::bind(&theirs).unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(send_frame(&mut dev, &out));
        let n = peer.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &out[..], "sent to the new socket");
        let c = waiter.counters();
        assert_eq!((c.dropped, c.unplugged), (0, 1));
        drop(dev);
        assert!(!ours.exists());
    }
}
