//! The gate: a `Device` wrapper that holds off new connections while every slot is busy.
//!
//! smoltcp answers a SYN that finds no listening socket with RST, which a client reports as
//! "connection refused". While no slot listens, the gate hides such SYNs from the interface
//! instead, so the client's TCP retries a little later and is served when a slot frees. It looks
//! at nothing but inbound IPv4 TCP SYNs to the HTTP port; every other frame passes untouched.

use smoltcp::phy::{Device, DeviceCapabilities, RxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpEndpoint, IpProtocol, Ipv4Packet, TcpPacket,
};

/// What the gate lets through for one frame.
#[derive(Debug, Clone, Copy)]
pub struct Filter<'f> {
    /// Some slot listens: every SYN may pass.
    pub open: bool,
    /// HTTP port.
    pub port: u16,
    /// Peers of the connections the slots hold; their SYNs (retransmissions) pass.
    pub known: &'f [IpEndpoint],
}

/// Wraps a device for one ingress frame.
pub struct Gate<'d, 'f, D: Device + ?Sized> {
    inner: &'d mut D,
    filter: Filter<'f>,
    /// Set when the frame was a SYN the gate held off.
    pub held: bool,
}

impl<'d, 'f, D: Device + ?Sized> Gate<'d, 'f, D> {
    /// A gate in front of `inner`.
    pub fn new(inner: &'d mut D, filter: Filter<'f>) -> Self {
        Gate {
            inner,
            filter,
            held: false,
        }
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
pub struct GateRx<'a, T: RxToken> {
    inner: T,
    filter: Filter<'a>,
    held: &'a mut bool,
}

impl<T: RxToken> RxToken for GateRx<'_, T> {
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
            if !filter.open && is_new_syn(frame, filter.port, filter.known) {
                // An empty frame is dropped by the interface without a reply.
                *held = true;
                f(&[])
            } else {
                f(frame)
            }
        })
    }
}

impl<D: Device + ?Sized> Device for Gate<'_, '_, D> {
    type RxToken<'a>
        = GateRx<'a, D::RxToken<'a>>
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
                filter: *filter,
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
