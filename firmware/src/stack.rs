//! The stack's high-water mark: at boot the unused stack below the current frame is painted
//! with a pattern; the deepest use so far is where the pattern first changed, scanning up from
//! the bottom. `/board` reports it as `stack_peak`, so the RAM budget (data + bss + stack) is
//! measured, not guessed.

use crate::regs::{stack_bounds, Reg};

const PAINT: u32 = 0xC0DE_5AFE;
/// The painted window at most (a 4 MiB board need not paint all of it, and a scan stays short).
const WINDOW: usize = 64 * 1024;
/// Room left unpainted below the frame that paints.
const MARGIN: usize = 256;

/// Paints the unused stack; call first thing in `main`.
pub fn paint() {
    let (bottom, _) = stack_bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let low = bottom.max(sp.saturating_sub(WINDOW));
    let mut a = low.next_multiple_of(4);
    while a + 4 <= sp - MARGIN {
        Reg(a).write(PAINT);
        a += 4;
    }
}

/// Bytes of stack used at most since boot (the whole window, if the pattern is gone).
pub fn peak() -> usize {
    let (bottom, top) = stack_bounds();
    // Where paint() began (main's frame sits just below the top).
    let low = bottom.max(top.saturating_sub(WINDOW));
    let mut a = low.next_multiple_of(4);
    while a < top && Reg(a).read() == PAINT {
        a += 4;
    }
    top - a
}
