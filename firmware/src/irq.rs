//! Interrupts: the NIC's line in the NVIC, and the handler every device interrupt lands in
//! (there is no PAC, so no vector of its own). cortex-m-rt declares that handler `unsafe fn`,
//! so this module allows `unsafe_code` for its signature alone; its body is safe code.
#![allow(unsafe_code)]

use cortex_m_rt::exception;

use crate::regs::Reg;

/// Unmasks (or masks) the NIC's interrupt in the NVIC.
pub fn nic(on: bool) {
    let n = usize::from(crate::bsp::IRQ);
    // ISER (set-enable) or ICER (clear-enable), one bit per interrupt.
    let reg = if on { 0xE000_E100 } else { 0xE000_E180 };
    Reg(reg + 4 * (n / 32)).write(1 << (n % 32));
}

/// The NIC's line stays high while a frame waits, so the handler masks it and returns; the main
/// loop reads the frame and unmasks the line before it sleeps again. Nothing else is done in
/// interrupt context.
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    if irqn == crate::bsp::IRQ as i16 {
        nic(false);
    }
}
