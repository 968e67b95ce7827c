//! The TAP device (std shell): a `smoltcp::phy::Device` over a Linux TAP interface opened with
//! the tun-tap crate, non-blocking, without packet info.
//!
//! One frame per read; `WouldBlock` means no frame. The owner waits for readiness with
//! `smoltcp::phy::wait` on [`TapDevice::fd`].

use std::io;
use std::os::unix::io::{AsRawFd, RawFd};

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use tun_tap::{Iface, Mode};

/// A TAP interface as a smoltcp device.
pub struct TapDevice {
    iface: Iface,
    mtu: usize,
    rx: Vec<u8>,
    tx: Vec<u8>,
}

impl TapDevice {
    /// Opens the existing TAP interface `name`; `mtu` is the IP MTU (the frame adds 14 bytes).
    pub fn open(name: &str, mtu: usize) -> io::Result<TapDevice> {
        let iface = Iface::without_packet_info(name, Mode::Tap)?;
        iface.set_non_blocking()?;
        Ok(TapDevice {
            iface,
            mtu,
            rx: vec![0; mtu + 14],
            tx: vec![0; mtu + 14],
        })
    }

    /// The file descriptor to wait on.
    pub fn fd(&self) -> RawFd {
        self.iface.as_raw_fd()
    }

    /// Reads one frame into the device's buffer; its length, or None when none is queued.
    fn read(&mut self) -> Option<usize> {
        match self.iface.recv(&mut self.rx) {
            Ok(n) => Some(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => {
                log::warn!("tap read: {e}");
                None
            }
        }
    }
}

/// A frame read from the tap.
pub struct TapRx<'a>(&'a [u8]);

/// Room to write one frame to the tap.
pub struct TapTx<'a>(&'a Iface, &'a mut [u8]);

impl phy::RxToken for TapRx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TapTx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let frame = &mut self.1[..len];
        let r = f(frame);
        if let Err(e) = self.0.send(frame) {
            // A full tap queue drops the frame, like a busy wire; TCP retransmits.
            log::debug!("tap write: {e}");
        }
        r
    }
}

impl Device for TapDevice {
    type RxToken<'a> = TapRx<'a>;
    type TxToken<'a> = TapTx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(TapRx<'_>, TapTx<'_>)> {
        let n = self.read()?;
        Some((TapRx(&self.rx[..n]), TapTx(&self.iface, &mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<TapTx<'_>> {
        Some(TapTx(&self.iface, &mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.mtu + 14;
        caps
    }
}
