//! Start-up glue between the assembly entry and the pure logic in
//! [`crate::stack`]: a raw view of the real initial stack, and the Rust half
//! of `cabin_start`. Built for the image target only.

use crate::reloc::{self, Rela};
use crate::stack::{self, Words};
use crate::{die, dispatch, forward, link};

/// The process's initial stack, seen through its entry `rsp`.
struct RawStack(*mut u64);

impl RawStack {
    /// # Safety
    ///
    /// `sp` must be the entry stack pointer of a process that has not run
    /// anything else yet: it points at `argc`, followed by the argv, envp and
    /// auxv arrays exactly as the kernel (or a Cabin monitor) laid them out,
    /// all readable and writable. [`stack::parse`] reads only within those
    /// arrays and [`stack::patch_auxv`] writes only auxv values.
    unsafe fn new(sp: *mut u64) -> RawStack {
        RawStack(sp)
    }
}

impl Words for RawStack {
    fn word(&self, index: usize) -> Option<u64> {
        // SAFETY: by the contract of `RawStack::new`, the stack walk only
        // asks for words inside the initial-stack arrays.
        Some(unsafe { self.0.add(index).read() })
    }

    fn set_word(&mut self, index: usize, value: u64) -> bool {
        // SAFETY: as for `word`; the arrays are in the writable stack.
        unsafe { self.0.add(index).write(value) };
        true
    }
}

/// The Rust half of `cabin_start`: returns the address to jump to.
///
/// # Safety
///
/// Called only by `cabin_start`, once, with the process's entry `rsp` (see
/// [`RawStack::new`]) and the libos load base.
pub(crate) unsafe extern "C" fn cabin_rust_start(sp: *mut u64, base: u64) -> u64 {
    let info = link::read();
    // SAFETY: forwarded from this function's own contract.
    let mut initial = unsafe { RawStack::new(sp) };
    let start = match stack::prepare(&mut initial, &info, base) {
        Ok(start) => start,
        Err(e) => die(e.message()),
    };
    if let Some(boot) = start.boot {
        if !forward::init(boot) {
            die(b"cabin: confined mode is not available in this libos\n");
        }
        dispatch::set_confined();
    }
    start.entry
}

/// Applies the blob's relocation table `[start, end)` for load address
/// `base`. Runs first in `cabin_start`, before any other Rust code, in its
/// own call so nothing that reads relocated data can be moved before it.
///
/// # Safety
///
/// Called only by `cabin_start`, once, before anything else, with `base` the
/// blob's load address and `start`/`end` the bounds of its `.rela.dyn`
/// (linker-script symbols). The build checked that every entry is
/// `R_X86_64_RELATIVE` and targets the blob's writable segment.
pub(crate) unsafe extern "C" fn cabin_relocate(base: u64, start: *const Rela, end: *const Rela) {
    // SAFETY: `start..end` is the blob's relocation table, a whole number of
    // aligned `Rela` entries in its read-only segment (linker script).
    let table = unsafe { core::slice::from_raw_parts(start, end.offset_from(start) as usize) };
    let result = reloc::apply(table, base, |address, value| {
        // SAFETY: the build checked that every target is an aligned word in
        // the blob's writable segment, which nothing has used yet.
        unsafe { (address as *mut u64).write(value) }
    });
    if result.is_err() {
        die(b"cabin: the libos blob has an unsupported relocation\n");
    }
}
