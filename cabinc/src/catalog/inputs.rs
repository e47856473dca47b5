//! Generated input files: deterministic bytes from a seed, so that every machine benchmarks the
//! same data. A file is regenerated only when its spec changes (a `.spec` file sits beside it).

use std::io::{BufWriter, Write};
use std::path::Path;

use thiserror::Error;

use super::manifest::{GenerateKind, GenerateSpec};

/// Why an input could not be generated.
#[derive(Debug, Error)]
#[error("cannot generate input {path}: {source}")]
pub struct InputError {
    path: String,
    source: std::io::Error,
}

/// SplitMix64: a small, fast, well-mixed generator (not for secrets).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "cabin", "delta", "echo", "forest", "gamma", "harbor", "island", "juniper", "kernel",
    "lantern", "meadow", "north", "orbit", "pine", "quartz", "river", "summit", "timber", "umbra", "valley",
    "willow", "xenon", "yarrow", "zephyr",
];

/// Writes `spec.bytes` bytes of generated data to `out`.
pub fn generate(spec: &GenerateSpec, out: &mut dyn Write) -> std::io::Result<()> {
    let mut rng = SplitMix64::new(spec.seed);
    let mut left = spec.bytes;
    let mut buf = Vec::with_capacity(1 << 16);
    while left > 0 {
        buf.clear();
        match spec.kind {
            GenerateKind::Random => {
                while buf.len() < 1 << 16 {
                    buf.extend_from_slice(&rng.next_u64().to_le_bytes());
                }
            }
            GenerateKind::Text => {
                while buf.len() < 1 << 16 {
                    let r = rng.next_u64();
                    let w1 = WORDS[(r % WORDS.len() as u64) as usize];
                    let w2 = WORDS[((r >> 8) % WORDS.len() as u64) as usize];
                    let n = (r >> 16) % 1_000_000;
                    let _ = writeln!(buf, "{w1} {n} {w2}");
                }
            }
        }
        let take = (buf.len() as u64).min(left) as usize;
        out.write_all(&buf[..take])?;
        left -= take as u64;
    }
    Ok(())
}

/// Makes sure `path` holds the data `spec` describes, generating it when missing or stale.
/// Returns whether it was (re)generated.
pub fn ensure(path: &Path, spec: &GenerateSpec) -> Result<bool, InputError> {
    let err = |source| InputError { path: path.display().to_string(), source };
    let stamp_path = path.with_extension("spec");
    let stamp = format!("{:?} {} {}\n", spec.kind, spec.bytes, spec.seed);
    let fresh = std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str())
        && std::fs::metadata(path).map(|m| m.len() == spec.bytes).unwrap_or(false);
    if fresh {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let tmp = path.with_extension("tmp");
    let result = (|| {
        let mut f = BufWriter::new(std::fs::File::create(&tmp)?);
        generate(spec, &mut f)?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::write(&stamp_path, &stamp)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_exact_and_deterministic() {
        for kind in [GenerateKind::Random, GenerateKind::Text] {
            let spec = GenerateSpec { kind, bytes: 100_003, seed: 7 };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            generate(&spec, &mut a).expect("gen");
            generate(&spec, &mut b).expect("gen");
            assert_eq!(a.len(), 100_003);
            assert_eq!(a, b);
            let other = GenerateSpec { seed: 8, ..spec.clone() };
            let mut c = Vec::new();
            generate(&other, &mut c).expect("gen");
            assert_ne!(a, c);
        }
    }

    #[test]
    fn text_is_lines() {
        let spec = GenerateSpec { kind: GenerateKind::Text, bytes: 4096, seed: 1 };
        let mut a = Vec::new();
        generate(&spec, &mut a).expect("gen");
        assert!(a.iter().all(|&c| c == b'\n' || c == b' ' || c.is_ascii_alphanumeric()));
        assert!(a.iter().filter(|&&c| c == b'\n').count() > 100);
    }

    #[test]
    fn ensure_regenerates_only_when_stale() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("in.bin");
        let spec = GenerateSpec { kind: GenerateKind::Random, bytes: 5000, seed: 1 };
        assert!(ensure(&p, &spec).expect("first"));
        assert!(!ensure(&p, &spec).expect("second"));
        let spec2 = GenerateSpec { bytes: 6000, ..spec };
        assert!(ensure(&p, &spec2).expect("changed"));
        assert_eq!(std::fs::metadata(&p).expect("meta").len(), 6000);
    }
}
