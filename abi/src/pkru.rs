//! The one way an image may contain `xrstor`: followed by the PKRU check.
//!
//! Execute-only code rests on PKRU denying data access to the code's
//! protection key (docs/execute-only.md). Where XCR0 enables the PKRU
//! component (the process backend on a CPU with protection keys: Linux
//! enables it), `xrstor` with feature bit 9 requested loads PKRU from
//! memory the program controls, and a program can jump to any instruction
//! of its domain with registers of its choosing, so masking the request
//! *before* an `xrstor` is not enough. Every `xrstor` Cabin emits (the
//! rewriter's masked trampolines, the libos's signal-return restore) is
//! therefore followed by [`PKRU_CHECK`]: if XCR0 enables PKRU and PKRU no
//! longer denies access to every key but 0, the program ends at once
//! (`exit_group(139)`), before anything can read code.
//!
//! [`unchecked_xrstor`] is the run-time half: before claiming execute-only,
//! the process backend scans every executable byte of the image (any
//! offset) for an `xrstor` that is not followed by the check, and for
//! `wrpkru`. The manifest is not trusted for this.

/// PKRU bits that must stay set: access-disable for keys 1..15 (Linux's
/// default PKRU, which every thread of a confined child starts with; the
/// kernel's execute-only key is one of these keys).
pub const PKRU_AD_ALL_BUT_0: u32 = 0x5555_5554;

/// XCR0 bit of the PKRU state component.
pub const XCR0_PKRU: u32 = 1 << 9;

/// Exit status of a program stopped by [`PKRU_CHECK`] (128 + SIGSEGV, as
/// if the read it was preparing had faulted).
pub const PKRU_CHECK_EXIT: u8 = 139;

/// The bytes that must follow every `xrstor`:
///
/// ```text
///     pushfq
///     xor   ecx, ecx
///     xgetbv                    ; edx:eax = XCR0
///     test  eax, 0x200          ; PKRU not in XCR0: xrstor cannot load it
///     jz    ok
///     xor   ecx, ecx
///     rdpkru                    ; eax = PKRU
///     and   eax, 0x55555554
///     cmp   eax, 0x55555554
///     je    ok
///     mov   edi, 139
///     mov   eax, 231            ; exit_group
///     syscall
///     ud2
/// ok: popfq
/// ```
///
/// Clobbers `rax`, `rcx`, `rdx` (and `rdi` on the exit path); flags are
/// kept. Position-independent.
pub const PKRU_CHECK: [u8; 45] = [
    0x9c, // pushfq
    0x31,
    0xc9, // xor ecx, ecx
    0x0f,
    0x01,
    0xd0, // xgetbv
    0xa9,
    0x00,
    0x02,
    0x00,
    0x00, // test eax, 0x200
    0x74,
    0x1f, // jz ok (+31)
    0x31,
    0xc9, // xor ecx, ecx
    0x0f,
    0x01,
    0xee, // rdpkru
    0x25,
    0x54,
    0x55,
    0x55,
    0x55, // and eax, 0x55555554
    0x3d,
    0x54,
    0x55,
    0x55,
    0x55, // cmp eax, 0x55555554
    0x74,
    0x0e, // je ok (+14)
    0xbf,
    PKRU_CHECK_EXIT,
    0x00,
    0x00,
    0x00, // mov edi, 139
    0xb8,
    0xe7,
    0x00,
    0x00,
    0x00, // mov eax, 231
    0x0f,
    0x05, // syscall
    0x0f,
    0x0b, // ud2
    0x9d, // ok: popfq
];

/// Why an image's code could change PKRU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkruWriter {
    /// `wrpkru` (`0f 01 ef`) at this address.
    Wrpkru(u64),
    /// An `xrstor` (`0f ae /5`, memory form, any prefix) at this address
    /// (of its `0f` byte) not followed by [`PKRU_CHECK`].
    UncheckedXrstor(u64),
}

/// Bytes after `0f ae modrm` of the memory operand: SIB and displacement.
fn operand_tail(modrm: u8, sib: Option<u8>) -> usize {
    let (md, rm) = (modrm >> 6, modrm & 7);
    let has_sib = rm == 4;
    let sib_len = usize::from(has_sib);
    let disp = match md {
        0 if rm == 5 => 4,
        0 if has_sib && sib.is_some_and(|s| s & 7 == 5) => 4,
        0 => 0,
        1 => 1,
        _ => 4,
    };
    sib_len + disp
}

/// The first instruction in `code` (mapped at `vaddr`) that could change
/// PKRU unchecked, looking at every byte offset (a jump can land anywhere).
pub fn unchecked_xrstor(code: &[u8], vaddr: u64) -> Option<PkruWriter> {
    let mut j = 0;
    while j + 3 <= code.len() {
        j = next_0f_pair(code, j, 0x01, 0xae);
        if j + 3 > code.len() {
            break;
        }
        let (op, modrm) = (code[j + 1], code[j + 2]);
        let at = vaddr.wrapping_add(j as u64);
        if op == 0x01 && modrm == 0xef {
            return Some(PkruWriter::Wrpkru(at));
        }
        if op == 0xae && (modrm >> 3) & 7 == 5 && modrm >> 6 != 3 {
            let end = j + 3 + operand_tail(modrm, code.get(j + 3).copied());
            let checked = code.get(end..end + PKRU_CHECK.len()) == Some(&PKRU_CHECK[..]);
            if !checked {
                return Some(PkruWriter::UncheckedXrstor(at));
            }
        }
        j += 1;
    }
    None
}

/// The first `wrpkru` (`0f 01 ef`) in `code` mapped at `vaddr`, at any
/// byte offset.
pub fn wrpkru_at(code: &[u8], vaddr: u64) -> Option<u64> {
    let mut j = 0;
    while j + 3 <= code.len() {
        j = next_0f_pair(code, j, 0x01, 0x01);
        if j + 3 <= code.len() && code[j + 2] == 0xef {
            return Some(vaddr.wrapping_add(j as u64));
        }
        j += 1;
    }
    None
}

/// Bytes [`next_0f_pair`] tests at once.
const BLOCK: usize = 32;

/// The index of the first `0x0f` byte in `code` at or after `from` that is
/// followed by `a` or `b` (`code.len()` when there is none). Both scans
/// above look at every byte offset of a whole image's code at every start
/// (and `execve`), and `0f` alone is common in x86 code (one byte in 20-30
/// of a libc), while `0f 01` and `0f ae` are rare: a block of [`BLOCK`]
/// offsets is tested with branch-free compares the compiler turns into
/// vector instructions, and only a block that holds a pair is looked at
/// offset by offset.
fn next_0f_pair(code: &[u8], from: usize, a: u8, b: u8) -> usize {
    let mut j = from;
    while let Some(w) = code.get(j..j + BLOCK + 1) {
        let mut hit = false;
        for i in 0..BLOCK {
            hit |= (w[i] == 0x0f) & ((w[i + 1] == a) | (w[i + 1] == b));
        }
        if hit {
            break;
        }
        j += BLOCK;
    }
    while j + 1 < code.len() {
        if code[j] == 0x0f && (code[j + 1] == a || code[j + 1] == b) {
            return j;
        }
        j += 1;
    }
    code.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_check(insn: &[u8]) -> [u8; 64] {
        let mut b = [0x90u8; 64];
        b[..insn.len()].copy_from_slice(insn);
        b[insn.len()..insn.len() + PKRU_CHECK.len()].copy_from_slice(&PKRU_CHECK);
        b
    }

    /// What [`next_0f_pair`] must find: the first `0f a` or `0f b` at or after `from`.
    fn naive_pair(code: &[u8], from: usize, a: u8, b: u8) -> usize {
        (from..code.len().saturating_sub(1))
            .find(|&i| code[i] == 0x0f && (code[i + 1] == a || code[i + 1] == b))
            .unwrap_or(code.len())
    }

    #[test]
    fn the_block_scan_finds_what_a_byte_scan_finds() {
        // Every position of a pair (across block edges and at the very
        // end), every start, and lone 0x0f bytes around it.
        const N: usize = 2 * BLOCK + 7;
        let n = N;
        for at in 0..n - 1 {
            for second in [0x01u8, 0xae, 0x0f, 0x90] {
                let mut code = [0x0fu8; N];
                for (i, c) in code.iter_mut().enumerate() {
                    if i % 3 == 1 {
                        *c = 0x90;
                    }
                }
                code[at] = 0x0f;
                code[at + 1] = second;
                for from in 0..=n {
                    for (a, b) in [(0x01, 0xae), (0x01, 0x01)] {
                        assert_eq!(
                            next_0f_pair(&code, from, a, b),
                            naive_pair(&code, from, a, b),
                            "pair {second:#x} at {at}, from {from}"
                        );
                    }
                }
            }
        }
        // Pseudo-random code (a fixed xorshift), dense in 0x0f, 0x01, 0xae, 0xef.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut code = [0u8; 4096];
        for c in code.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *c = [0x0f, 0x01, 0xae, 0xef, 0x2f, 0x90, (x >> 32) as u8, 0x0f][(x % 8) as usize];
        }
        let mut from = 0;
        while from < code.len() {
            let want = naive_pair(&code, from, 0x01, 0xae);
            assert_eq!(next_0f_pair(&code, from, 0x01, 0xae), want, "from {from}");
            from = want + 1;
        }
        let naive_wrpkru =
            |c: &[u8]| c.windows(3).position(|w| w == [0x0f, 0x01, 0xef]).map(|i| 0x1000 + i as u64);
        for len in [0, 1, 2, 3, 31, 32, 33, 34, 64, 65, 100, 4096] {
            assert_eq!(wrpkru_at(&code[..len], 0x1000), naive_wrpkru(&code[..len]), "len {len}");
        }
        for at in 0..(3 * BLOCK) {
            let mut c = [0xccu8; 3 * BLOCK + 3];
            c[at..at + 3].copy_from_slice(&[0x0f, 0x01, 0xef]);
            assert_eq!(wrpkru_at(&c, 0x1000), Some(0x1000 + at as u64));
            assert_eq!(unchecked_xrstor(&c, 0x1000), Some(PkruWriter::Wrpkru(0x1000 + at as u64)));
            let mut c = [0x90u8; 3 * BLOCK + 3];
            c[at..at + 3].copy_from_slice(&[0x0f, 0xae, 0x2f]);
            assert_eq!(unchecked_xrstor(&c, 0x1000), Some(PkruWriter::UncheckedXrstor(0x1000 + at as u64)));
            assert_eq!(wrpkru_at(&c, 0x1000), None);
        }
        assert_eq!(wrpkru_at(&[0x0f, 0x01], 0), None);
        assert_eq!(wrpkru_at(&[], 0), None);
    }

    #[test]
    fn the_check_branches_land_on_popfq() {
        // jz at 11..13, je at 28..30; ok = 44.
        assert_eq!(13 + PKRU_CHECK[12] as usize, 44);
        assert_eq!(30 + PKRU_CHECK[29] as usize, 44);
        assert_eq!(PKRU_CHECK[44], 0x9d);
        // No PKRU writer inside the check itself.
        assert_eq!(unchecked_xrstor(&PKRU_CHECK, 0), None);
    }

    #[test]
    fn checked_xrstor_forms_pass() {
        for insn in [
            &[0x48, 0x0f, 0xae, 0x2f][..],                // xrstor64 [rdi]
            &[0x0f, 0xae, 0x6c, 0x24, 0x40][..],          // xrstor [rsp+0x40]
            &[0x0f, 0xae, 0xac, 0x24, 0, 1, 0, 0][..],    // xrstor [rsp+0x100]
            &[0x0f, 0xae, 0x2d, 1, 2, 3, 4][..],          // xrstor [rip+x]
            &[0x0f, 0xae, 0x2c, 0x25, 0, 0x10, 0, 0][..], // xrstor [abs32]
        ] {
            assert_eq!(unchecked_xrstor(&with_check(insn), 0x1000), None, "{insn:02x?}");
        }
    }

    #[test]
    fn unchecked_xrstor_and_wrpkru_are_found_at_any_offset() {
        let mut b = [0x90u8; 32];
        b[7..10].copy_from_slice(&[0x0f, 0xae, 0x2f]);
        assert_eq!(unchecked_xrstor(&b, 0x1000), Some(PkruWriter::UncheckedXrstor(0x1007)));
        let mut b = [0x90u8; 32];
        b[3..6].copy_from_slice(&[0x0f, 0x01, 0xef]);
        assert_eq!(unchecked_xrstor(&b, 0x1000), Some(PkruWriter::Wrpkru(0x1003)));
        assert_eq!(wrpkru_at(&b, 0x1000), Some(0x1003));
        assert_eq!(wrpkru_at(&PKRU_CHECK, 0), None);
        // The check cut short is not the check.
        let b = with_check(&[0x0f, 0xae, 0x2f]);
        assert!(unchecked_xrstor(&b[..20], 0).is_some());
        // Register forms (0f ae e8 is lfence) are not xrstor.
        assert_eq!(unchecked_xrstor(&[0x0f, 0xae, 0xe8, 0x90], 0), None);
    }
}
