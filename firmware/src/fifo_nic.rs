//! The `smoltcp::phy::Device` both boards' NICs share: a frame buffer each way and a chip that
//! moves one whole frame at a time through its FIFOs. A driver says how (`Fifos`); this module
//! does the tokens and capabilities once.

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Largest Ethernet frame without FCS.
pub const MAX_FRAME: usize = 1514;

/// How a chip takes one frame in or out.
pub trait Fifos {
    /// Reads one frame into `buf`: its length, or None when none waits (or it was bad and
    /// thrown away).
    fn receive_frame(buf: &mut [u8; MAX_FRAME]) -> Option<usize>;
    /// Sends one frame (waits, bounded, for room).
    fn send_frame(frame: &[u8]);
}

/// A NIC of chip `C` with its two frame buffers.
pub struct FifoNic<C> {
    rx: [u8; MAX_FRAME],
    tx: [u8; MAX_FRAME],
    chip: core::marker::PhantomData<C>,
}

impl<C> FifoNic<C> {
    /// The buffers; the chip is set up by its driver's constructor.
    pub(crate) const fn with_buffers() -> Self {
        FifoNic {
            rx: [0; MAX_FRAME],
            tx: [0; MAX_FRAME],
            chip: core::marker::PhantomData,
        }
    }
}

pub struct RxToken<'a>(&'a [u8]);
pub struct TxToken<'a, C>(&'a mut [u8; MAX_FRAME], core::marker::PhantomData<C>);

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl<C: Fifos> phy::TxToken for TxToken<'_, C> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MAX_FRAME);
        let r = f(&mut self.0[..len]);
        C::send_frame(&self.0[..len]);
        r
    }
}

impl<C: Fifos> Device for FifoNic<C> {
    type RxToken<'a>
        = RxToken<'a>
    where
        C: 'a;
    type TxToken<'a>
        = TxToken<'a, C>
    where
        C: 'a;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_, C>)> {
        let n = C::receive_frame(&mut self.rx)?;
        Some((
            RxToken(&self.rx[..n]),
            TxToken(&mut self.tx, core::marker::PhantomData),
        ))
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_, C>> {
        Some(TxToken(&mut self.tx, core::marker::PhantomData))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        caps.max_burst_size = Some(1);
        caps
    }
}
