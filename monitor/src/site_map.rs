//! From a ring submission's site hint to the program's call site.
//!
//! The libos leaves a hint per submission (`cabin_abi::ring`, site hints):
//! for a rewritten site it is the return address of the trampoline's `call`
//! into the libos, somewhere inside that site's trampoline; for a trapped
//! call it is already the address of the `syscall` instruction. A
//! [`SiteMap`], built once per run from the image manifest's site records,
//! turns the first kind into the site it stands for and leaves the second as
//! it is.
//!
//! Addresses come out as in the image file (link-time: what `objdump`, the
//! manifest and `cabinc build --policy` show); for a static-PIE image the
//! load bias is taken off. A hint is written by the program, so it is never
//! trusted: the result is only shown (denial messages, trace records), never
//! acted on. Looking it up is a binary search, done only when a message or
//! record needs it.

use cabin_abi::note::{SiteRecord, Tactic};
use cabin_image::image::Image;

/// Largest distance from a trampoline's first byte to the return address of
/// its `call` into the libos. A trampoline starts with at most a few
/// displaced instructions (the rewriter moves at most 4 on each side of the
/// site, 15 bytes each, a short branch widened to 6), then `lea` (8 bytes)
/// and `call` (5 bytes): well under this bound.
pub const MAX_TRAMPOLINE_LEN: u64 = 256;

/// Trampoline start → site, for one run.
#[derive(Debug, Clone, Default)]
pub struct SiteMap {
    /// `(trampoline, site)` in link-time addresses, sorted by trampoline.
    trampolines: Vec<(u64, u64)>,
    /// Load bias (run-time address minus link-time address).
    bias: u64,
}

impl SiteMap {
    /// A map from the manifest's `sites` of an image loaded with `bias`
    /// (0 for a position-dependent image). Trap sites have no trampoline and
    /// are left out.
    pub fn new(sites: impl IntoIterator<Item = SiteRecord>, bias: u64) -> SiteMap {
        let mut trampolines: Vec<(u64, u64)> = sites
            .into_iter()
            .filter(|s| s.tactic == Tactic::Rewritten && s.trampoline != 0)
            .map(|s| (s.trampoline, s.addr))
            .collect();
        trampolines.sort_unstable();
        trampolines.dedup_by_key(|t| t.0);
        SiteMap { trampolines, bias }
    }

    /// The map of `image` (the image file's bytes) whose entry point the
    /// backend placed at `entry` (the domain's address of the libos
    /// `cabin_start`), which gives the load bias. An image whose manifest does
    /// not parse gives an empty map (hints are then shown as they are);
    /// backends have checked the image before this.
    pub fn for_image(image: &[u8], entry: u64) -> SiteMap {
        match Image::parse(image) {
            Ok(img) => SiteMap::new(img.manifest.sites(), entry.wrapping_sub(img.elf.entry)),
            Err(_) => SiteMap::default(),
        }
    }

    /// The site address a hint stands for: the site of the trampoline the
    /// hint falls in (the greatest trampoline start at or below it, no more
    /// than [`MAX_TRAMPOLINE_LEN`] before it), otherwise the hint itself
    /// (a trapped call's `syscall` address); `None` for 0 (unknown).
    pub fn site(&self, hint: u64) -> Option<u64> {
        if hint == 0 {
            return None;
        }
        let link = hint.wrapping_sub(self.bias);
        let i = self.trampolines.partition_point(|&(t, _)| t <= link);
        if let Some(&(t, site)) = i.checked_sub(1).and_then(|i| self.trampolines.get(i)) {
            if link - t < MAX_TRAMPOLINE_LEN {
                return Some(site);
            }
        }
        Some(link)
    }

    /// Number of trampolines known.
    pub fn len(&self) -> usize {
        self.trampolines.len()
    }

    /// Whether no trampoline is known.
    pub fn is_empty(&self) -> bool {
        self.trampolines.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cabin_abi::note::{SiteKind, TrapReason};

    fn rewritten(addr: u64, trampoline: u64) -> SiteRecord {
        SiteRecord {
            addr,
            kind: SiteKind::Syscall,
            tactic: Tactic::Rewritten,
            reason: TrapReason::None,
            trampoline,
        }
    }

    fn trap(addr: u64) -> SiteRecord {
        SiteRecord {
            addr,
            kind: SiteKind::Syscall,
            tactic: Tactic::Trap,
            reason: TrapReason::Requested,
            trampoline: 0,
        }
    }

    #[test]
    fn trampoline_hints_map_to_their_site() {
        // Given out of order, as nothing promises the manifest is sorted.
        let m = SiteMap::new(
            [rewritten(0x40_2000, 0x50_0040), trap(0x40_3000), rewritten(0x40_1000, 0x50_0000)],
            0,
        );
        assert_eq!(m.len(), 2);
        // The return address after `lea; call` inside each trampoline.
        assert_eq!(m.site(0x50_000d), Some(0x40_1000));
        assert_eq!(m.site(0x50_0000), Some(0x40_1000));
        assert_eq!(m.site(0x50_003f), Some(0x40_1000));
        assert_eq!(m.site(0x50_0040 + 13 + 20), Some(0x40_2000));
        // Past the last trampoline's reach, below the first, or a trap
        // site's own address: shown as is.
        assert_eq!(m.site(0x50_0040 + MAX_TRAMPOLINE_LEN), Some(0x50_0040 + MAX_TRAMPOLINE_LEN));
        assert_eq!(m.site(0x4f_ffff), Some(0x4f_ffff));
        assert_eq!(m.site(0x40_3000), Some(0x40_3000));
        assert_eq!(m.site(0), None);
        assert_eq!(m.site(u64::MAX), Some(u64::MAX));
    }

    #[test]
    fn bias_is_taken_off() {
        let bias = 0x1000_0000_0000;
        let m = SiteMap::new([rewritten(0x1000, 0x9000)], bias);
        assert_eq!(m.site(bias + 0x900d), Some(0x1000));
        assert_eq!(m.site(bias + 0x1234), Some(0x1234));
        // A hostile hint below the bias wraps instead of panicking.
        assert_eq!(m.site(5), Some(5u64.wrapping_sub(bias)));
    }

    #[test]
    fn empty_map_shows_hints_as_they_are() {
        let m = SiteMap::for_image(b"not an image", 0x40_0000);
        assert!(m.is_empty());
        assert_eq!(m.site(0x40_1234), Some(0x40_1234));
    }
}
