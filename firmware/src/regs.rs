//! Memory-mapped registers: the only `unsafe` in the firmware. A register is a fixed address
//! of the board's memory map; reading or writing one is a volatile access to that address,
//! which the compiler cannot check, hence `unsafe` here and nowhere else. The same access
//! paints and reads the stack's unused words ([`stack_bounds`]).
#![allow(unsafe_code)]

/// A 32-bit device register at a fixed address.
#[derive(Clone, Copy)]
pub struct Reg(pub usize);

impl Reg {
    /// Reads the register.
    pub fn read(self) -> u32 {
        // SAFETY: `self.0` is a register address of the board's memory map, 4-byte aligned,
        // mapped for the whole run; a volatile read has no other effect than the device's.
        unsafe { core::ptr::read_volatile(self.0 as *const u32) }
    }

    /// Writes the register.
    pub fn write(self, value: u32) {
        // SAFETY: as for `read`; the register is writable and no Rust object lives there.
        unsafe { core::ptr::write_volatile(self.0 as *mut u32, value) }
    }
}

/// The stack's lowest and highest addresses, from cortex-m-rt's linker script (`_stack_end`
/// is the bottom, right after `.bss`; `_stack_start` the top).
pub fn stack_bounds() -> (usize, usize) {
    extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    // Only the addresses of the linker's symbols are taken, never their contents.
    (
        core::ptr::addr_of!(_stack_end) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}
