//! The gate: a `Device` wrapper that holds off new connections while every slot is busy.
//!
//! smoltcp answers a SYN that finds no listening socket with RST, which a client reports as
//! "connection refused". While no slot listens, the gate hides such SYNs from the interface
//! instead, so the client's TCP retries a little later and is served when a slot frees. It looks
//! at nothing but inbound IPv4 TCP SYNs to the HTTP port; every other frame passes untouched.
//!
//! The caller wraps its device once (`Gate::new(tap)`, like smoltcp's `FaultInjector`) and
//! hands the gate to [`crate::Server::poll`], which tells it before each frame whether a slot
//! listens. A gate nobody arms lets everything through.

use smoltcp::phy::{Device, DeviceCapabilities, RxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};

use crate::config::SLOTS;

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

/// A device whose inbound SYNs to the HTTP port are held off while no slot of an `N`-slot
/// server listens.
pub struct Gate<D: Device, const N: usize = SLOTS> {
    inner: D,
    filter: Filter<N>,
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

    /// Sets what the next frames may pass: all SYNs when `open`, else only those to other
    /// ports or from `known` peers.
    pub(crate) fn arm(&mut self, open: bool, port: u16, known: impl Iterator<Item = IpEndpoint>) {
        self.filter.open = open;
        self.filter.port = port;
        self.filter.known.clear();
        if !open {
            for ep in known {
                // More peers than slots cannot be; a full list only holds off a retry.
                let _ = self.filter.known.push(ep);
            }
        }
    }

    /// True once per SYN held off since the last call.
    pub(crate) fn take_held(&mut self) -> bool {
        core::mem::take(&mut self.held)
    }
}

/// The TCP segment of an Ethernet frame carrying IPv4 TCP, with its source endpoint.
pub fn tcp_segment(frame: &[u8]) -> Option<(IpEndpoint, TcpPacket<&[u8]>)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some((IpEndpoint::new(ip.src_addr().into(), tcp.src_port()), tcp))
}

/// True when `frame` is an IPv4 TCP SYN (without ACK) to `port` from a peer not in `known`.
pub fn is_new_syn(frame: &[u8], port: u16, known: &[IpEndpoint]) -> bool {
    tcp_segment(frame).is_some_and(|(peer, tcp)| {
        tcp.dst_port() == port && tcp.syn() && !tcp.ack() && !known.contains(&peer)
    })
}

/// Receive token that may hide its frame.
pub struct GateRx<'a, T: RxToken, const N: usize> {
    inner: T,
    filter: &'a Filter<N>,
    held: &'a mut bool,
}

impl<T: RxToken, const N: usize> RxToken for GateRx<'_, T, N> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let GateRx {
            inner,
            filter,
            held,
        } = self;
        inner.consume(|frame| {
            if !filter.open && is_new_syn(frame, filter.port, &filter.known) {
                // An empty frame is dropped by the interface without a reply.
                *held = true;
                f(&[])
            } else {
                f(frame)
            }
        })
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
            held,
        } = self;
        let (rx, tx) = inner.receive(timestamp)?;
        Some((
            GateRx {
                inner: rx,
                filter,
                held,
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
