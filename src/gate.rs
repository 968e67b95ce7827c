//! The gate: a `Device` wrapper that holds off new connections while every slot is busy.
//!
//! smoltcp answers a SYN that finds no listening socket with RST, which a client reports as
//! "connection refused". While no slot listens, the gate hides such SYNs from the interface
//! instead, so the client's TCP retries a little later and is served when a slot frees. It looks
//! at nothing but inbound TCP SYNs to the HTTP port, IPv4 or (feature `ipv6`) IPv6 with TCP as
//! the first header after the IPv6 one; every other frame passes untouched.
//!
//! The caller wraps its device once (`Gate::new(tap)`, like smoltcp's `FaultInjector`) and
//! hands the gate to [`crate::Server::poll`], which tells it before each frame whether a slot
//! listens. A held-off SYN is kept and fed to the interface as soon as one does, so the client
//! is answered within the poll that frees a slot. A gate nobody arms lets everything through.

use smoltcp::phy::{Device, DeviceCapabilities, RxToken};
use smoltcp::time::{Duration, Instant};
#[cfg(feature = "ipv6")]
use smoltcp::wire::Ipv6Packet;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};

use crate::config::{SLOTS, SYN_QUEUE};

/// Longest SYN frame the queue keeps (Ethernet, IPv4 or IPv6 and TCP heads with options:
/// 14 + 40 + 60 = 114 bytes at most over IPv6).
const SYN_FRAME: usize = 128;
/// A kept SYN is forgotten this long after its last (re)transmission: its client gave up.
const SYN_KEEP: Duration = Duration::from_secs(10);

/// What the gate lets through.
#[derive(Debug, Clone)]
struct Filter<const N: usize> {
    /// Some slot listens: every SYN may pass.
    open: bool,
    /// HTTP port.
    port: u16,
    /// Peers of the connections the slots hold; their SYNs (retransmissions) pass.
    known: heapless::Vec<IpEndpoint, N>,
}

/// A SYN held off, kept to be fed to the interface when a slot listens.
#[derive(Debug, Clone)]
struct Held {
    peer: IpEndpoint,
    /// When the client (re)sent it.
    at: Instant,
    len: usize,
    frame: [u8; SYN_FRAME],
}

/// A device whose inbound SYNs to the HTTP port are held off while no slot of an `N`-slot
/// server listens. The last [`SYN_QUEUE`] of them are kept (a retransmission replaces its copy) and fed
/// to the interface the moment a slot listens again, so the client gets its SYN-ACK at once
/// instead of after its TCP's retry (1, 3, 7 s...). A SYN that finds the queue full waits for
/// its retry, as without a queue.
pub struct Gate<D: Device, const N: usize = SLOTS> {
    inner: D,
    filter: Filter<N>,
    queue: [Option<Held>; SYN_QUEUE],
    /// Set when a frame was a SYN the gate held off.
    held: bool,
}

impl<D: Device, const N: usize> Gate<D, N> {
    /// A gate in front of `inner`, open until a server arms it.
    pub fn new(inner: D) -> Self {
        Gate {
            inner,
            filter: Filter {
                open: true,
                port: 0,
                known: heapless::Vec::new(),
            },
            queue: core::array::from_fn(|_| None),
            held: false,
        }
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Unwraps the device.
    pub fn into_inner(self) -> D {
        self.inner
    }

    /// Clients waiting for a slot: SYNs kept and not yet fed to the interface.
    pub fn waiting(&self) -> usize {
        self.queue.iter().filter(|h| h.is_some()).count()
    }

    /// Sets what the next frames may pass: all SYNs when `open`, else only those to other
    /// ports or from `known` peers. Forgets kept SYNs that expired or whose peer got in.
    pub(crate) fn arm(
        &mut self,
        now: Instant,
        open: bool,
        port: u16,
        known: impl Iterator<Item = IpEndpoint>,
    ) {
        self.filter.open = open;
        self.filter.port = port;
        self.filter.known.clear();
        // The common case, a slot listens and nobody waits, costs nothing more per frame.
        let waiting = self.queue.iter().any(Option::is_some);
        if open && !waiting {
            return;
        }
        for ep in known {
            // More peers than slots cannot be.
            let _ = self.filter.known.push(ep);
        }
        let known = &self.filter.known;
        for entry in &mut self.queue {
            if entry
                .as_ref()
                .is_some_and(|h| now >= h.at + SYN_KEEP || known.contains(&h.peer))
            {
                *entry = None;
            }
        }
    }

    /// True once per SYN held off since the last call.
    pub(crate) fn take_held(&mut self) -> bool {
        core::mem::take(&mut self.held)
    }
}

/// Keeps a copy of a held-off SYN: over the same peer's older copy, else in a free entry,
/// else over an expired one; a full queue keeps nothing.
fn keep(queue: &mut [Option<Held>], peer: IpEndpoint, frame: &[u8], now: Instant) {
    if frame.len() > SYN_FRAME {
        return;
    }
    let same = queue
        .iter()
        .position(|h| h.as_ref().is_some_and(|h| h.peer == peer));
    let free = || {
        queue
            .iter()
            .position(|h| h.as_ref().is_none_or(|h| now >= h.at + SYN_KEEP))
    };
    if let Some(i) = same.or_else(free) {
        let mut held = Held {
            peer,
            at: now,
            len: frame.len(),
            frame: [0; SYN_FRAME],
        };
        held.frame[..frame.len()].copy_from_slice(frame);
        queue[i] = Some(held);
    }
}

/// The TCP segment of an Ethernet frame carrying TCP over IPv4 (or IPv6, with TCP as its first
/// next header), with its source endpoint.
pub fn tcp_segment(frame: &[u8]) -> Option<(IpEndpoint, TcpPacket<&[u8]>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (src, payload) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (ip.src_addr().into(), ip.payload())
        }
        #[cfg(feature = "ipv6")]
        EthernetProtocol::Ipv6 => {
            let ip = Ipv6Packet::new_checked(eth.payload()).ok()?;
            if ip.next_header() != IpProtocol::Tcp {
                return None;
            }
            (ip.src_addr().into(), ip.payload())
        }
        _ => return None,
    };
    let tcp = TcpPacket::new_checked(payload).ok()?;
    Some((IpEndpoint::new(src, tcp.src_port()), tcp))
}

/// Where a received frame comes from.
enum Source<'a, T> {
    /// The device; a held-off SYN is copied into the queue.
    Device(T, &'a mut [Option<Held>]),
    /// A kept SYN, fed again now that a slot listens.
    Replay(&'a mut Option<Held>),
}

/// Receive token that may hide its frame, or gives a kept one.
pub struct GateRx<'a, T: RxToken, const N: usize> {
    source: Source<'a, T>,
    filter: &'a Filter<N>,
    held: &'a mut bool,
    now: Instant,
}

impl<T: RxToken, const N: usize> RxToken for GateRx<'_, T, N> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let GateRx {
            source,
            filter,
            held,
            now,
        } = self;
        match source {
            Source::Replay(entry) => match entry.take() {
                Some(h) => f(&h.frame[..h.len]),
                None => f(&[]),
            },
            Source::Device(inner, queue) => inner.consume(|frame| {
                let syn = tcp_segment(frame)
                    .filter(|(_, tcp)| tcp.dst_port() == filter.port && tcp.syn() && !tcp.ack());
                let Some((peer, _)) = syn else {
                    return f(frame);
                };
                if filter.open || filter.known.contains(&peer) {
                    // It goes in now: a copy kept earlier must not follow it.
                    for entry in queue.iter_mut() {
                        if entry.as_ref().is_some_and(|h| h.peer == peer) {
                            *entry = None;
                        }
                    }
                    return f(frame);
                }
                keep(queue, peer, frame, now);
                *held = true;
                // An empty frame is dropped by the interface without a reply.
                f(&[])
            }),
        }
    }
}

impl<D: Device, const N: usize> Device for Gate<D, N> {
    type RxToken<'a>
        = GateRx<'a, D::RxToken<'a>, N>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let Gate {
            inner,
            filter,
            queue,
            held,
        } = self;
        // A slot listens: the oldest kept SYN goes first, ahead of new frames.
        let oldest = queue
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h.at)))
            .min_by_key(|&(_, at)| at)
            .map(|(i, _)| i);
        if let (true, Some(i)) = (filter.open, oldest) {
            let tx = inner.transmit(timestamp)?;
            let source = Source::Replay(&mut queue[i]);
            return Some((
                GateRx {
                    source,
                    filter,
                    held,
                    now: timestamp,
                },
                tx,
            ));
        }
        let (rx, tx) = inner.receive(timestamp)?;
        Some((
            GateRx {
                source: Source::Device(rx, &mut queue[..]),
                filter,
                held,
                now: timestamp,
            },
            tx,
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.inner.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        EthernetAddress, EthernetRepr, IpAddress, IpRepr, TcpControl, TcpRepr, TcpSeqNumber,
    };

    /// A SYN from `src:40000` to `dst:80` in an Ethernet frame.
    fn syn(src: IpAddress, dst: IpAddress) -> std::vec::Vec<u8> {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 80,
            control: TcpControl::Syn,
            seq_number: TcpSeqNumber(1),
            ack_number: None,
            window_len: 1000,
            window_scale: None,
            max_seg_size: Some(1460),
            sack_permitted: false,
            sack_ranges: [None, None, None],
            timestamp: None,
            payload: &[],
        };
        let ip = IpRepr::new(src, dst, IpProtocol::Tcp, tcp.buffer_len(), 64);
        let eth = EthernetRepr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 2]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            ethertype: match src {
                IpAddress::Ipv4(_) => EthernetProtocol::Ipv4,
                #[cfg(feature = "ipv6")]
                IpAddress::Ipv6(_) => EthernetProtocol::Ipv6,
            },
        };
        let mut frame = vec![0u8; 14 + ip.buffer_len()];
        let caps = ChecksumCapabilities::default();
        let mut f = EthernetFrame::new_unchecked(&mut frame[..]);
        eth.emit(&mut f);
        let payload = f.payload_mut();
        ip.emit(&mut payload[..], &caps);
        let head = ip.header_len();
        tcp.emit(
            &mut TcpPacket::new_unchecked(&mut payload[head..]),
            &src,
            &dst,
            &caps,
        );
        frame
    }

    #[test]
    fn a_syn_is_read_in_either_family() {
        use smoltcp::wire::Ipv4Address;
        let (a, b) = (
            Ipv4Address::new(192, 168, 69, 100).into(),
            Ipv4Address::new(192, 168, 69, 1).into(),
        );
        let frame = syn(a, b);
        let (peer, tcp) = tcp_segment(&frame).expect("an IPv4 SYN");
        assert_eq!(peer, IpEndpoint::new(a, 40000));
        assert!(tcp.syn() && tcp.dst_port() == 80);
        #[cfg(feature = "ipv6")]
        {
            use smoltcp::wire::Ipv6Address;
            let (a, b) = (
                Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 0x100).into(),
                Ipv6Address::new(0xfd69, 0, 0, 0, 0, 0, 0, 1).into(),
            );
            let frame = syn(a, b);
            assert!(frame.len() <= SYN_FRAME);
            let (peer, tcp) = tcp_segment(&frame).expect("an IPv6 SYN");
            assert_eq!(peer, IpEndpoint::new(a, 40000));
            assert!(tcp.syn() && tcp.dst_port() == 80);
        }
        // Not TCP: nothing.
        assert!(tcp_segment(&frame[..20]).is_none());
    }
}
