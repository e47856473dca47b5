//! The program's initial stack, laid out as Linux's `execve` does.
//!
//! From the top down: the argument and environment strings, the platform
//! string and 16 random bytes, padding, then (16-byte aligned at `rsp`)
//! `argc`, the `argv` pointers and a null, the `envp` pointers and a null,
//! and the auxiliary vector ending with `AT_NULL`. Pure: it returns the
//! bytes and the stack pointer, and the caller copies them into guest memory.

use cabin_abi::boot::auxv::*;

/// What goes on the stack besides the auxiliary entries the caller supplies.
#[derive(Clone, Debug)]
pub struct StackSpec<'a> {
    /// `argv` strings (without terminating nulls).
    pub args: &'a [Vec<u8>],
    /// `envp` strings, `KEY=VALUE`.
    pub env: &'a [Vec<u8>],
    /// The 16 bytes `AT_RANDOM` points at.
    pub random: [u8; 16],
    /// The `AT_PLATFORM` string.
    pub platform: &'a [u8],
    /// Auxiliary entries (type, value), without `AT_RANDOM`, `AT_PLATFORM`,
    /// `AT_EXECFN` and `AT_NULL`, which this module adds.
    pub auxv: &'a [(u64, u64)],
}

/// The built stack: `bytes` belong at `[rsp, top)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// Stack pointer at entry (points at `argc`; 16-byte aligned).
    pub rsp: u64,
    /// Contents of `[rsp, top)`.
    pub bytes: Vec<u8>,
}

/// Lays out the stack below `top` (16-byte aligned). `None` if it would
/// need more than `max` bytes.
pub fn build(top: u64, spec: &StackSpec<'_>, max: u64) -> Option<InitialStack> {
    // Strings area, growing down from `top`.
    let mut strings: Vec<u8> = Vec::new();
    let mut place = |s: &[u8]| -> u64 {
        strings.splice(0..0, s.iter().copied().chain(std::iter::once(0)));
        strings.len() as u64 // distance below top of the string's start
    };
    let mut arg_off = Vec::new();
    for a in spec.args.iter().rev() {
        arg_off.push(place(a));
    }
    arg_off.reverse();
    let mut env_off = Vec::new();
    for e in spec.env.iter().rev() {
        env_off.push(place(e));
    }
    env_off.reverse();
    let platform_off = place(spec.platform);
    strings.splice(0..0, spec.random);
    let random_off = strings.len() as u64;
    let strings_len = strings.len() as u64;

    // Words: argc, argv..., 0, envp..., 0, auxv pairs..., AT_NULL pair.
    let mut words: Vec<u64> = Vec::new();
    words.push(spec.args.len() as u64);
    let at = |off: u64| top - off;
    for o in &arg_off {
        words.push(at(*o));
    }
    words.push(0);
    for o in &env_off {
        words.push(at(*o));
    }
    words.push(0);
    for &(k, v) in spec.auxv {
        words.push(k);
        words.push(v);
    }
    words.extend([AT_RANDOM, at(random_off), AT_PLATFORM, at(platform_off)]);
    if let Some(first) = arg_off.first() {
        words.extend([AT_EXECFN, at(*first)]);
    }
    words.extend([AT_NULL, 0]);

    let words_len = words.len() as u64 * 8;
    let rsp = (top.checked_sub(strings_len)?.checked_sub(words_len)?) & !15;
    if top - rsp > max {
        return None;
    }
    let mut bytes = vec![0u8; (top - rsp) as usize];
    for (i, w) in words.iter().enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    let s_at = bytes.len() - strings.len();
    bytes[s_at..].copy_from_slice(&strings);
    Some(InitialStack { rsp, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &InitialStack, i: usize) -> u64 {
        u64::from_le_bytes(s.bytes[i * 8..i * 8 + 8].try_into().expect("8"))
    }

    fn cstr(s: &InitialStack, top: u64, addr: u64) -> Vec<u8> {
        let off = (addr - s.rsp) as usize;
        let end = s.bytes[off..].iter().position(|&b| b == 0).expect("nul");
        let _ = top;
        s.bytes[off..off + end].to_vec()
    }

    #[test]
    fn linux_layout() {
        let top = 0x7fff_0000_0000;
        let args = vec![b"prog".to_vec(), b"-x".to_vec()];
        let env = vec![b"A=1".to_vec()];
        let spec = StackSpec {
            args: &args,
            env: &env,
            random: [7; 16],
            platform: b"x86_64",
            auxv: &[(AT_PAGESZ, 4096), (AT_ENTRY, 0x401000)],
        };
        let s = build(top, &spec, 1 << 20).expect("fits");
        assert_eq!(s.rsp % 16, 0);
        assert_eq!(s.rsp + s.bytes.len() as u64, top);
        assert_eq!(word(&s, 0), 2, "argc");
        assert_eq!(cstr(&s, top, word(&s, 1)), b"prog");
        assert_eq!(cstr(&s, top, word(&s, 2)), b"-x");
        assert_eq!(word(&s, 3), 0);
        assert_eq!(cstr(&s, top, word(&s, 4)), b"A=1");
        assert_eq!(word(&s, 5), 0);
        let mut aux = Vec::new();
        let mut i = 6;
        loop {
            let (k, v) = (word(&s, i), word(&s, i + 1));
            aux.push((k, v));
            i += 2;
            if k == AT_NULL {
                break;
            }
        }
        assert_eq!(aux[0], (AT_PAGESZ, 4096));
        assert_eq!(aux[1], (AT_ENTRY, 0x401000));
        let random = aux.iter().find(|a| a.0 == AT_RANDOM).expect("random").1;
        let off = (random - s.rsp) as usize;
        assert_eq!(&s.bytes[off..off + 16], &[7u8; 16]);
        let plat = aux.iter().find(|a| a.0 == AT_PLATFORM).expect("platform").1;
        assert_eq!(cstr(&s, top, plat), b"x86_64");
        let execfn = aux.iter().find(|a| a.0 == AT_EXECFN).expect("execfn").1;
        assert_eq!(execfn, word(&s, 1));
    }

    #[test]
    fn too_big_is_refused() {
        let big = vec![vec![b'x'; 5000]];
        let spec = StackSpec { args: &big, env: &[], random: [0; 16], platform: b"x86_64", auxv: &[] };
        assert!(build(0x10_0000, &spec, 4096).is_none());
        assert!(build(0x10_0000, &spec, 1 << 20).is_some());
    }
}
