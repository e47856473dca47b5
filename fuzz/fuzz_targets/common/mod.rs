//! What the run-time fuzz targets (`service`, `ring`) share: the fake
//! program memory, a reader over the fuzzer's bytes, and the watchdog that
//! keeps a blocking host call from stalling the fuzzer.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use cabin_monitor::memory::{GuestMemory, Region, RegionKind};

/// The fake program memory: (start, pages, kind). Adjacent regions of
/// every kind of access (a string or buffer may run from one into the
/// next), a gap, an unusable region, and a lone region far up.
pub const LAYOUT: [(u64, u64, RegionKind); 6] = [
    (0x10000, 2, RegionKind::Data),
    (0x12000, 1, RegionKind::Rodata),
    (0x13000, 1, RegionKind::Arena),
    (0x14000, 1, RegionKind::Code),
    (0x20000, 1, RegionKind::Stack),
    (0x7fff_ffff_f000, 1, RegionKind::Rodata),
];

const PAGE: u64 = 4096;

/// Host bytes behind [`LAYOUT`], allocated once (the program's memory is
/// refilled from the input before each run).
pub struct Memory {
    buf: &'static mut [u8],
    pub mem: GuestMemory,
}

impl Memory {
    /// The one memory of this process.
    pub fn get() -> &'static mut Memory {
        static mut MEM: Option<Memory> = None;
        // SAFETY: fuzz targets run their closure on one thread; the value
        // is created once and only ever handed to that thread.
        unsafe {
            let slot = &mut *std::ptr::addr_of_mut!(MEM);
            slot.get_or_insert_with(Memory::new)
        }
    }

    fn new() -> Memory {
        let pages: u64 = LAYOUT.iter().map(|r| r.1).sum();
        let buf: &'static mut [u8] = Box::leak(vec![0u8; (pages * PAGE) as usize].into_boxed_slice());
        let mut regions = Vec::new();
        let mut off = 0usize;
        for &(start, n, kind) in &LAYOUT {
            // SAFETY: inside the leaked buffer.
            let host = unsafe { buf.as_mut_ptr().add(off) };
            regions.push(Region { start, len: n * PAGE, host, kind });
            off += (n * PAGE) as usize;
        }
        // SAFETY: the buffer is leaked (lives forever); regions do not overlap.
        let mem = unsafe { GuestMemory::new(regions) };
        Memory { buf, mem }
    }

    /// Fills the whole memory by repeating `seed` (zeros when empty).
    pub fn fill(&mut self, seed: &[u8]) {
        if seed.is_empty() {
            self.buf.fill(0);
            return;
        }
        for (i, b) in self.buf.iter_mut().enumerate() {
            *b = seed[i % seed.len()];
        }
    }
}

/// Reads the fuzzer's bytes; past the end, zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.data.split_first() else { return 0 };
        self.data = rest;
        b
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }

    /// Up to `n` bytes.
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }

    /// A call number: mostly one of the x86-64 calls, sometimes any.
    pub fn nr(&mut self) -> u64 {
        match self.u8() {
            0..=239 => u64::from(self.u16() % 512),
            240..=247 => 100_000 + u64::from(self.u32()),
            _ => self.u64(),
        }
    }

    /// An argument: a pointer near a region's edges, a small number, a
    /// descriptor, `AT_FDCWD`, or any 64-bit value.
    pub fn arg(&mut self) -> u64 {
        match self.u8() % 8 {
            0 | 1 => {
                let (start, pages, _) = LAYOUT[usize::from(self.u8()) % LAYOUT.len()];
                // Mostly within 128 bytes of the edge (where a buffer or a
                // string crosses into the next region), sometimes further.
                let off = match self.u8() {
                    0..=191 => i64::from(self.u8() as i8),
                    _ => i64::from(self.u16() as i16),
                };
                // Around the start or the end of the region.
                let base = if self.u8() & 1 == 0 { start } else { start + pages * PAGE };
                base.wrapping_add(off as u64)
            }
            2 => u64::from(self.u8()),
            3 => u64::from(self.u8() % 12),
            4 => (-100i64) as u64, // AT_FDCWD
            5 => u64::from(self.u32()),
            6 => u64::from(self.u16()),
            _ => self.u64(),
        }
    }

    pub fn args(&mut self) -> [u64; 6] {
        std::array::from_fn(|_| self.arg())
    }
}

/// Keeps host calls short. The fuzzing thread runs each call into the
/// monitor through [`Watchdog::call`]; a call still running after 0.5-1 ms is
/// kicked with the monitor's own kick signal (`cabin_monitor::kick`: an
/// empty handler installed without `SA_RESTART`) every 0.5 ms until
/// it returns, so a blocking `read`, `poll`, `nanosleep`, `write` to a full
/// pipe ... returns `EINTR`, as when the monitor stops a program. A call
/// that never returns even so (a loop retrying on `EINTR`) still hangs, and
/// libFuzzer's `-timeout` reports it.
pub struct Watchdog {
    /// Odd while a call runs; bumped at each start and end.
    seq: AtomicU64,
    thread: AtomicU64,
}

impl Watchdog {
    /// The process's watchdog (its thread starts on first use).
    pub fn get() -> &'static Arc<Watchdog> {
        static W: OnceLock<Arc<Watchdog>> = OnceLock::new();
        W.get_or_init(|| {
            cabin_monitor::kick::install();
            let w = Arc::new(Watchdog { seq: AtomicU64::new(0), thread: AtomicU64::new(0) });
            let w2 = w.clone();
            std::thread::spawn(move || w2.watch());
            w
        })
    }

    fn watch(&self) {
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_micros(500));
            let s = self.seq.load(Ordering::SeqCst);
            if s % 2 == 1 && s == last {
                let t = self.thread.load(Ordering::SeqCst);
                // SAFETY: the fuzzing thread lives as long as the process.
                unsafe { cabin_monitor::kick::kick(t) };
            }
            last = s;
        }
    }

    /// Runs `f` (one call into the monitor) under the watchdog.
    pub fn call<R>(&self, f: impl FnOnce() -> R) -> R {
        // SAFETY: pthread_self has no preconditions.
        self.thread.store(unsafe { libc::pthread_self() } as u64, Ordering::SeqCst);
        self.seq.fetch_add(1, Ordering::SeqCst);
        let r = f();
        self.seq.fetch_add(1, Ordering::SeqCst);
        r
    }
}

/// `/dev/null` for the program's stdin, stdout and stderr.
pub fn dev_null_stdio() -> [i32; 3] {
    static FD: OnceLock<i32> = OnceLock::new();
    let fd = *FD.get_or_init(|| {
        // SAFETY: opens a path; the descriptor is kept for the process's life.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }
    });
    [fd; 3]
}
