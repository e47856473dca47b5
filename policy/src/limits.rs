//! What `[limits]` means, as pure logic: open descriptors (the monitor's
//! gate, [`LimitState`]), bytes written and file size (the syscall service,
//! [`WriteLimits`]), the memory bound ([`MemoryBound`]) and the words of a
//! limit hit. Memory and CPU time are enforced by the monitor's session
//! (domain memory sized from the [`MemoryBound`], the watch threads of
//! `cabin_monitor::watch`); this module gives them the words for the record
//! ([`memory_limit_hit`] reads what the libos left when it stopped a program
//! at the memory bound).

use cabin_abi::boot::{EndWords, ABORT_MEMORY};

use super::{names, Limits};
use crate::trace::{LimitHit, LimitKind};

/// EFBIG: what the call that hit `file-size` returns (as `RLIMIT_FSIZE`
/// does; the program is stopped before it sees it).
pub const EFBIG: i32 = 27;

/// The bound on a program's memory when neither `[limits] memory` nor
/// `--mem` gives one, on every backend.
pub const DEFAULT_MEMORY: u64 = 256 << 20;

/// What a limit check says about one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitCheck {
    /// Go on.
    Ok,
    /// Stop the program.
    Stop(LimitHit),
}

/// The limits the gate checks from a call's registers alone (today
/// `open-files`); the write limits need the descriptor and are applied by
/// the syscall service ([`WriteLimits`]).
#[derive(Debug, Clone, Default)]
pub struct LimitState {
    limits: Limits,
}

impl LimitState {
    /// State for `limits`.
    pub fn new(limits: &Limits) -> LimitState {
        LimitState { limits: limits.clone() }
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Before serving call `nr`: `open_fds` is the number of descriptors
    /// the program holds (when the caller knows it): a call that creates
    /// one when `open-files` are already open stops the program.
    pub fn before(&self, time_ns: u64, nr: u64, args: &[u64; 6], open_fds: Option<u64>) -> LimitCheck {
        let Some(name) = names::name(nr) else { return LimitCheck::Ok };
        if let (Some(max), Some(open)) = (self.limits.open_files, open_fds) {
            let creates = matches!(
                name,
                "open"
                    | "openat"
                    | "openat2"
                    | "creat"
                    | "dup"
                    | "dup2"
                    | "dup3"
                    | "pipe"
                    | "pipe2"
                    | "socket"
                    | "socketpair"
                    | "accept"
                    | "accept4"
                    | "eventfd"
                    | "eventfd2"
                    | "epoll_create"
                    | "epoll_create1"
                    | "memfd_create"
                    | "timerfd_create"
                    | "signalfd"
                    | "signalfd4"
            ) || (name == "fcntl" && matches!(args[1], 0 | 1030)); // F_DUPFD, F_DUPFD_CLOEXEC
            if creates && open >= max {
                return LimitCheck::Stop(LimitHit {
                    time_ns,
                    limit: LimitKind::OpenFiles,
                    value: open + 1,
                    max,
                    action: format!("stopped the program ({name} with {open} descriptors open)"),
                });
            }
        }
        LimitCheck::Ok
    }
}

/// `[limits] bytes-written` and `file-size`, applied by the syscall service
/// *before* each call that writes or extends a file, where the descriptor,
/// its type and its offset are known (the gate sees only registers).
///
/// The rule, for both: a call that would pass a limit is clipped to what
/// still fits (a short write, as the kernel does at `RLIMIT_FSIZE`); a call
/// that cannot write one byte within it is a limit hit, which stops the
/// program (exit 137, a `limit` record), as `SIGXFSZ` would by default. So
/// nothing past either limit ever reaches a file. `file-size` applies to
/// regular files only (pipes, terminals, sockets, `/dev/null` have no size)
/// and bounds the *offset* the program writes at: its writes never start
/// or end past the limit; `bytes-written` counts every byte written through
/// any descriptor. Hits carry `time_ns` 0: the gate stamps them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteLimits {
    bytes_written: Option<u64>,
    file_size: Option<u64>,
    written: u64,
}

impl WriteLimits {
    /// The write limits of `limits`; `None` when neither is set (the
    /// service then does no extra work).
    pub fn new(limits: &Limits) -> Option<WriteLimits> {
        (limits.bytes_written.is_some() || limits.file_size.is_some()).then_some(WriteLimits {
            bytes_written: limits.bytes_written,
            file_size: limits.file_size,
            written: 0,
        })
    }

    /// `[limits] file-size`.
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// How many of the `len` bytes call `name` asks to write it may write.
    /// `at`: the offset in a regular file where they would land (`None`:
    /// not a regular file). `Err`: not one byte fits; the program stops.
    pub fn allow(&self, name: &str, len: u64, at: Option<u64>) -> Result<u64, LimitHit> {
        if len == 0 {
            return Ok(0);
        }
        let mut n = len;
        if let Some(max) = self.bytes_written {
            let left = max.saturating_sub(self.written);
            if left == 0 {
                return Err(LimitHit {
                    time_ns: 0,
                    limit: LimitKind::BytesWritten,
                    value: self.written.saturating_add(len),
                    max,
                    action: format!(
                        "stopped the program ({name} of {len} bytes after {} written)",
                        self.written
                    ),
                });
            }
            n = n.min(left);
        }
        if let (Some(max), Some(pos)) = (self.file_size, at) {
            if pos >= max {
                return Err(LimitHit {
                    time_ns: 0,
                    limit: LimitKind::FileSize,
                    value: pos.saturating_add(len),
                    max,
                    action: format!("stopped the program ({name} of {len} bytes at offset {pos})"),
                });
            }
            n = n.min(max - pos);
        }
        Ok(n)
    }

    /// Call `name` sets a regular file's size (`ftruncate`, `truncate`) or
    /// allocates its blocks (`fallocate`) up to `end`: a hit past
    /// `file-size`.
    pub fn resize(&self, name: &str, end: u64) -> Result<(), LimitHit> {
        match self.file_size {
            Some(max) if end > max => Err(LimitHit {
                time_ns: 0,
                limit: LimitKind::FileSize,
                value: end,
                max,
                action: format!("stopped the program ({name} to {end} bytes)"),
            }),
            _ => Ok(()),
        }
    }

    /// A call wrote `n` bytes.
    pub fn wrote(&mut self, n: u64) {
        self.written = self.written.saturating_add(n);
    }
}

/// The bound on a program's memory, the same on every backend: `[limits]
/// memory`, `--mem` (the smaller when both are given), or
/// [`DEFAULT_MEMORY`]. The backend sizes the domain's memory
/// to it (process: the memfd; kvm: the guest memory) and the libos stops the
/// program at the first request the domain cannot give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBound {
    /// Bytes.
    pub bytes: u64,
    /// Where it comes from, as a message says it: `p.toml [limits] memory`,
    /// `--mem`, or `the default bound`.
    pub source: String,
}

impl MemoryBound {
    /// The bound for `[limits] memory` = `limit` (set in `policy_file`) and
    /// `--mem` = `mem` (0: not given).
    pub fn new(mem: u64, limit: Option<u64>, policy_file: &str) -> MemoryBound {
        let policy = || format!("{policy_file} [limits] memory");
        let (bytes, source) = match (limit, mem) {
            (Some(l), m) if m == 0 || l <= m => (l, policy()),
            (_, 0) => (DEFAULT_MEMORY, "the default bound".to_string()),
            (_, m) => (m, "--mem".to_string()),
        };
        MemoryBound { bytes, source }
    }
}

/// The limit hit a backend records when the libos stopped the program at
/// the memory bound (`cabin_abi::boot::ABORT_MEMORY`), or `None` when it
/// did not: `words` is what the libos left in the boot page, read after the
/// program ended, `exit_code` its exit status (the libos exits with 137), `bound`
/// the program's memory bound, `fixed` the domain bytes the program cannot
/// grow (image, stack, boot page, ring; on KVM also the system area).
///
/// The words come from the program's side and are untrusted: they can only
/// make the program's own end more or less informative. The amount in use
/// is clamped to the bound.
pub fn memory_limit_hit(
    words: &EndWords,
    exit_code: i32,
    bound: &MemoryBound,
    fixed: u64,
    time_ns: u64,
) -> Option<LimitHit> {
    if words.abort != ABORT_MEMORY || exit_code != crate::LIMIT_EXIT_CODE {
        return None;
    }
    let limit = bound.bytes;
    let requested = words.memory_request;
    let in_use = fixed.saturating_add(words.memory_used).min(limit);
    Some(LimitHit {
        time_ns,
        limit: LimitKind::Memory,
        value: in_use.saturating_add(requested),
        max: limit,
        action: format!(
            "the program asked for {} more with {} of {} in use; the program was stopped \
             (limit set by {})",
            size(requested),
            size(in_use),
            size(limit),
            bound.source
        ),
    })
}

/// `v` bytes in the largest binary unit it reaches: `256 MiB`, `255.9 MiB`.
pub fn size(v: u64) -> String {
    let (unit, name) = match v {
        _ if v >= 1 << 30 => (1u64 << 30, "GiB"),
        _ if v >= 1 << 20 => (1 << 20, "MiB"),
        _ if v >= 1 << 10 => (1 << 10, "KiB"),
        _ => return format!("{v} bytes"),
    };
    if v.is_multiple_of(unit) {
        format!("{} {name}", v / unit)
    } else {
        format!("{:.1} {name}", v as f64 / unit as f64)
    }
}

/// The one-line stderr message for a limit hit.
pub fn message(hit: &LimitHit) -> String {
    if hit.limit == LimitKind::Memory {
        // memory_limit_hit already put the whole story in the action.
        return format!(
            "cabin: memory limit reached: {}; help: raise [limits] memory or --mem if the program needs more",
            hit.action
        );
    }
    let unit = |v: u64| match hit.limit {
        LimitKind::CpuTime | LimitKind::WallTime => format!("{:.3} s", v as f64 / 1e9),
        LimitKind::OpenFiles => format!("{v} descriptors"),
        LimitKind::Processes => format!("{v} processes"),
        _ => format!("{v} bytes"),
    };
    format!(
        "cabin: limit {} reached ({} > {}): {}; help: raise [limits] {} in the policy if the program needs more",
        hit.limit.as_str(),
        unit(hit.value),
        unit(hit.max),
        hit.action,
        hit.limit.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nr(n: &str) -> u64 {
        names::number(n).unwrap_or(u64::MAX)
    }

    #[test]
    fn the_processes_limit_parses_renders_and_explains() {
        let p = crate::file::parse("p.toml", "version = 1\n[limits]\nprocesses = 64\n").expect("parses");
        assert_eq!(p.limits.processes, Some(64));
        let text = crate::render::to_toml(&p, &[]);
        assert!(text.contains("processes = 64"), "{text}");
        let again = crate::file::parse("again.toml", &text).expect("the rendering parses");
        assert_eq!(again.limits, p.limits);
        assert!(crate::explain::explain(&p).contains("processes:     64"));
        assert!(crate::file::parse("p.toml", "version = 1\n[limits]\nprocesses = -1\n").is_err());
    }

    #[test]
    fn bytes_written_clips_then_stops() {
        let l = Limits { bytes_written: Some(100), ..Limits::default() };
        let mut w = WriteLimits::new(&l).expect("a write limit");
        assert_eq!(w.allow("write", 60, None), Ok(60));
        w.wrote(60);
        assert_eq!(w.allow("writev", 41, Some(0)), Ok(40), "clipped to what is left");
        assert_eq!(w.allow("write", 0, None), Ok(0));
        w.wrote(40);
        let hit = w.allow("sendfile", 1, None).expect_err("nothing left");
        assert_eq!((hit.limit, hit.value, hit.max), (LimitKind::BytesWritten, 101, 100));
        assert!(message(&hit).starts_with("cabin: limit bytes-written reached (101 bytes > 100 bytes)"));
        assert!(WriteLimits::new(&Limits { open_files: Some(3), ..Limits::default() }).is_none());
    }

    #[test]
    fn file_size_clips_at_the_offset_and_stops_past_it() {
        let l = Limits { file_size: Some(4096), ..Limits::default() };
        let w = WriteLimits::new(&l).expect("a write limit");
        assert_eq!(w.allow("write", 10, Some(4090)), Ok(6));
        assert_eq!(w.allow("write", 10, None), Ok(10), "not a regular file");
        assert_eq!(w.allow("write", 0, Some(1 << 40)), Ok(0));
        let hit = w.allow("write", 1, Some(1 << 40)).expect_err("past the limit");
        assert_eq!((hit.limit, hit.value), (LimitKind::FileSize, (1 << 40) + 1));
        assert!(w.allow("pwrite64", 1, Some(4096)).is_err(), "at the limit");
        assert_eq!(w.resize("ftruncate", 4096), Ok(()));
        assert!(w.resize("fallocate", 4097).is_err());
        assert!(w.resize("truncate", u64::MAX).is_err());
    }

    #[test]
    fn open_files_stop_the_program() {
        let l = Limits { open_files: Some(8), ..Limits::default() };
        let s = LimitState::new(&l);
        assert_eq!(s.before(0, nr("openat"), &[0; 6], Some(7)), LimitCheck::Ok);
        assert!(matches!(s.before(0, nr("openat"), &[0; 6], Some(8)), LimitCheck::Stop(_)));
        assert!(matches!(s.before(0, nr("fcntl"), &[3, 1030, 0, 0, 0, 0], Some(8)), LimitCheck::Stop(_)));
        assert_eq!(s.before(0, nr("write"), &[1, 0, 1 << 40, 0, 0, 0], Some(8)), LimitCheck::Ok);
        assert_eq!(s.before(0, nr("read"), &[0; 6], Some(8)), LimitCheck::Ok);
    }

    #[test]
    fn memory_abort_becomes_a_limit_hit() {
        use cabin_abi::boot::ABORT_RING;
        let mut r = EndWords {
            abort: ABORT_MEMORY,
            memory_request: 64 << 20,
            memory_used: (200 << 20) + (900 << 10),
            ..EndWords::default()
        };
        let fixed = 55 << 20;
        let bound = MemoryBound::new(0, Some(256 << 20), "policy.toml");
        let hit = memory_limit_hit(&r, 137, &bound, fixed, 5).expect("a hit");
        assert_eq!(hit.limit, LimitKind::Memory);
        assert_eq!((hit.max, hit.value), (256 << 20, (255 << 20) + (900 << 10) + (64 << 20)));
        assert_eq!(
            message(&hit),
            "cabin: memory limit reached: the program asked for 64 MiB more with 255.9 MiB of 256 MiB in use; \
             the program was stopped (limit set by policy.toml [limits] memory); help: raise [limits] memory \
             or --mem if the program needs more"
        );
        // Not a memory stop: another reason, another status.
        let gib = MemoryBound::new(0, Some(1 << 30), "p");
        assert!(memory_limit_hit(&r, 0, &gib, fixed, 0).is_none());
        r.abort = ABORT_RING;
        assert!(memory_limit_hit(&r, 137, &gib, fixed, 0).is_none());
        // Lies from the program's side stay within the limit.
        r.abort = ABORT_MEMORY;
        r.memory_used = u64::MAX;
        let hit = memory_limit_hit(&r, 137, &MemoryBound::new(64 << 20, None, "p"), fixed, 0).expect("a hit");
        assert!(hit.action.contains("of 64 MiB in use"), "{}", hit.action);
        assert!(hit.action.ends_with("(limit set by --mem)"), "{}", hit.action);
        assert_eq!(size(1023), "1023 bytes");
        assert_eq!(size((1 << 20) + 4096), "1.0 MiB");
        assert_eq!(size(3 << 30), "3 GiB");
    }

    #[test]
    fn memory_bound_is_the_smaller_given_or_the_default() {
        let b = MemoryBound::new(0, None, "p.toml");
        assert_eq!((b.bytes, b.source.as_str()), (DEFAULT_MEMORY, "the default bound"));
        assert_eq!(MemoryBound::new(0, Some(64 << 20), "p.toml").source, "p.toml [limits] memory");
        // cabinc passes the policy's limit as --mem when --mem is not given.
        assert_eq!(MemoryBound::new(64 << 20, Some(64 << 20), "p.toml").source, "p.toml [limits] memory");
        assert_eq!(MemoryBound::new(1 << 30, Some(64 << 20), "p.toml").bytes, 64 << 20);
        let b = MemoryBound::new(32 << 20, Some(64 << 20), "p.toml");
        assert_eq!((b.bytes, b.source.as_str()), (32 << 20, "--mem"));
    }
}
