//! The process's initial stack: find the auxiliary vector, spot the Cabin
//! boot marker and repair the entries the rewriter moved.
//!
//! Layout as the kernel (or a Cabin monitor) leaves it, one 64-bit word each,
//! starting at the entry `rsp`:
//!
//! ```text
//! argc | argv[0..argc] | 0 | envp... | 0 | (type, value)... | (AT_NULL, _)
//! ```
//!
//! All logic works on any [`Words`], so tests use a plain `[u64]`; the image
//! uses a raw view of the real stack.

use cabin_abi::boot::{auxv, AT_CABIN_BOOT};
use cabin_abi::link::LinkInfo;

use crate::link::{self, LinkError};

/// Indexed 64-bit words, readable and writable.
pub trait Words {
    /// The word at `index`, or `None` past the end.
    fn word(&self, index: usize) -> Option<u64>;
    /// Overwrites the word at `index`; `false` past the end.
    fn set_word(&mut self, index: usize, value: u64) -> bool;
}

impl Words for [u64] {
    fn word(&self, index: usize) -> Option<u64> {
        self.get(index).copied()
    }

    fn set_word(&mut self, index: usize, value: u64) -> bool {
        match self.get_mut(index) {
            Some(w) => {
                *w = value;
                true
            }
            None => false,
        }
    }
}

/// Why the initial stack could not be understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The words end before the auxiliary vector's `AT_NULL`.
    Truncated,
    /// `argv[argc]` is not the terminating null pointer.
    BadArgv,
}

/// Where the parts of the initial stack are, as word indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StackLayout {
    /// Number of arguments.
    pub argc: usize,
    /// Index of `envp[0]`.
    pub envp: usize,
    /// Index of the first auxiliary-vector type word.
    pub auxv: usize,
    /// Number of (type, value) pairs before `AT_NULL`.
    pub auxv_pairs: usize,
    /// Value of the `AT_CABIN_BOOT` entry, when a monitor started us.
    pub boot: Option<u64>,
}

/// Walks argv, envp and the auxiliary vector.
pub fn parse<W: Words + ?Sized>(w: &W) -> Result<StackLayout, StackError> {
    let argc = usize::try_from(w.word(0).ok_or(StackError::Truncated)?).map_err(|_| StackError::BadArgv)?;
    let argv_end = argc.checked_add(1).ok_or(StackError::BadArgv)?;
    if w.word(argv_end).ok_or(StackError::Truncated)? != 0 {
        return Err(StackError::BadArgv);
    }
    let envp = argv_end + 1;
    let mut i = envp;
    while w.word(i).ok_or(StackError::Truncated)? != 0 {
        i += 1;
    }
    let auxv_start = i + 1;
    let mut i = auxv_start;
    let mut boot = None;
    loop {
        let kind = w.word(i).ok_or(StackError::Truncated)?;
        let value = w.word(i + 1).ok_or(StackError::Truncated)?;
        if kind == auxv::AT_NULL {
            break;
        }
        if kind == AT_CABIN_BOOT {
            boot = Some(value);
        }
        i += 2;
    }
    Ok(StackLayout { argc, envp, auxv: auxv_start, auxv_pairs: (i - auxv_start) / 2, boot })
}

/// The auxiliary-vector values the program must see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuxvPatch {
    /// `AT_ENTRY`: the program's original entry point.
    pub entry: u64,
    /// `AT_PHDR`: the program headers as loaded.
    pub phdr: u64,
    /// `AT_PHNUM`: their number.
    pub phnum: u64,
}

impl AuxvPatch {
    /// The absolute values for a libos loaded at `base`.
    pub fn from_link_info(info: &LinkInfo, base: u64) -> AuxvPatch {
        AuxvPatch {
            entry: base.wrapping_add_signed(info.original_entry),
            phdr: base.wrapping_add_signed(info.phdr),
            phnum: info.phnum,
        }
    }
}

/// Overwrites `AT_ENTRY`, `AT_PHDR` and `AT_PHNUM` in place. Returns how
/// many entries were changed (types that are absent are left absent: there
/// is no room to add words to the stack).
pub fn patch_auxv<W: Words + ?Sized>(w: &mut W, layout: &StackLayout, patch: &AuxvPatch) -> usize {
    let mut changed = 0;
    for pair in 0..layout.auxv_pairs {
        let at = layout.auxv + 2 * pair;
        let value = match w.word(at) {
            Some(auxv::AT_ENTRY) => patch.entry,
            Some(auxv::AT_PHDR) => patch.phdr,
            Some(auxv::AT_PHNUM) => patch.phnum,
            _ => continue,
        };
        if w.set_word(at + 1, value) {
            changed += 1;
        }
    }
    changed
}

/// Why start-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartError {
    /// `CABIN_LINK_INFO` is unfilled or from another ABI.
    Link(LinkError),
    /// The initial stack is malformed.
    Stack(StackError),
}

impl StartError {
    /// The one-line message printed before the image is stopped.
    pub fn message(self) -> &'static [u8] {
        match self {
            StartError::Link(e) => e.message(),
            StartError::Stack(_) => b"cabin: the initial stack (argv, envp, auxv) is malformed\n",
        }
    }
}

/// What start-up decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Startup {
    /// Absolute address of the program's original entry point.
    pub entry: u64,
    /// Boot-information address when a Cabin monitor started the image.
    pub boot: Option<u64>,
}

/// The whole start-up decision: check `info`, walk the stack, patch auxv.
pub fn prepare<W: Words + ?Sized>(w: &mut W, info: &LinkInfo, base: u64) -> Result<Startup, StartError> {
    link::validate(info).map_err(StartError::Link)?;
    let layout = parse(w).map_err(StartError::Stack)?;
    let patch = AuxvPatch::from_link_info(info, base);
    patch_auxv(w, &layout, &patch);
    Ok(Startup { entry: patch.entry, boot: layout.boot })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_abi::link::LINK_INFO_MAGIC;

    /// argc=2, two argv, one env, auxv with PHDR/PHNUM/ENTRY/PAGESZ.
    fn sample(extra: &[(u64, u64)]) -> Vec<u64> {
        let mut v = vec![2, 0x7000, 0x7010, 0, 0x7020, 0];
        for (t, val) in [
            (auxv::AT_PHDR, 0x40_0040),
            (auxv::AT_PHENT, 56),
            (auxv::AT_PHNUM, 9),
            (auxv::AT_PAGESZ, 4096),
            (auxv::AT_ENTRY, 0x40_1000),
        ]
        .into_iter()
        .chain(extra.iter().copied())
        {
            v.push(t);
            v.push(val);
        }
        v.extend([auxv::AT_NULL, 0]);
        v
    }

    fn info() -> LinkInfo {
        LinkInfo {
            magic: LINK_INFO_MAGIC,
            abi_version: cabin_abi::ABI_VERSION,
            original_entry: -0x10_0000,
            phdr: -0x20_0000 + 0x40,
            phnum: 11,
            ..LinkInfo::EMPTY
        }
    }

    #[test]
    fn parses_a_kernel_stack() {
        let v = sample(&[]);
        let l = parse(&v[..]).unwrap();
        assert_eq!(l, StackLayout { argc: 2, envp: 4, auxv: 6, auxv_pairs: 5, boot: None });
    }

    #[test]
    fn finds_the_boot_marker() {
        let v = sample(&[(AT_CABIN_BOOT, 0xdead_0000)]);
        assert_eq!(parse(&v[..]).unwrap().boot, Some(0xdead_0000));
    }

    #[test]
    fn empty_argv_and_envp() {
        let v = [0, 0, 0, auxv::AT_ENTRY, 5, auxv::AT_NULL, 0];
        let l = parse(&v[..]).unwrap();
        assert_eq!((l.envp, l.auxv, l.auxv_pairs), (2, 3, 1));
    }

    #[test]
    fn refuses_truncated_and_bad_stacks() {
        let v = sample(&[]);
        for cut in 0..v.len() {
            assert_eq!(parse(&v[..cut]), Err(StackError::Truncated), "cut at {cut}");
        }
        let mut bad = v.clone();
        bad[0] = 3; // argv[3] is then envp[0] != 0
        assert_eq!(parse(&bad[..]), Err(StackError::BadArgv));
        let huge = [u64::MAX, 0];
        assert!(parse(&huge[..]).is_err());
    }

    #[test]
    fn patches_entry_phdr_phnum_only() {
        let mut v = sample(&[]);
        let before = v.clone();
        let base = 0x50_0000;
        let s = prepare(&mut v[..], &info(), base).unwrap();
        assert_eq!(s, Startup { entry: 0x40_0000, boot: None });
        let changed: Vec<usize> = (0..v.len()).filter(|&i| v[i] != before[i]).collect();
        // values of PHDR (index 7), PHNUM (11), ENTRY (15)
        assert_eq!(changed, vec![7, 11, 15]);
        assert_eq!((v[7], v[11], v[15]), (0x30_0040, 11, 0x40_0000));
    }

    #[test]
    fn patch_tolerates_missing_entries() {
        let mut v = vec![0, 0, 0, auxv::AT_PAGESZ, 4096, auxv::AT_NULL, 0];
        let l = parse(&v[..]).unwrap();
        let p = AuxvPatch { entry: 1, phdr: 2, phnum: 3 };
        assert_eq!(patch_auxv(&mut v[..], &l, &p), 0);
        assert_eq!(v, vec![0, 0, 0, auxv::AT_PAGESZ, 4096, auxv::AT_NULL, 0]);
    }

    #[test]
    fn prepare_checks_link_info_first() {
        let mut v = sample(&[]);
        let before = v.clone();
        let e = prepare(&mut v[..], &LinkInfo::EMPTY, 0).unwrap_err();
        assert_eq!(e, StartError::Link(LinkError::BadMagic));
        assert_eq!(e.message(), b"cabin: image link info is missing or corrupt\n");
        assert_eq!(v, before);
    }

    #[test]
    fn prepare_reports_confined_boot() {
        let mut v = sample(&[(AT_CABIN_BOOT, 0x1234_5000)]);
        let s = prepare(&mut v[..], &info(), 0x50_0000).unwrap();
        assert_eq!(s.boot, Some(0x1234_5000));
    }
}
