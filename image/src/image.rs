//! A built Cabin image: an ELF executable carrying Cabin notes.
//!
//! [`Image::parse`] validates the ELF with [`crate::elf`], finds the manifest
//! and measurement notes, decodes them, and can recompute the launch
//! measurement from the loadable pages and the manifest, so a reader can tell
//! whether an image was changed after it was built.

use std::collections::BTreeMap;

use cabin_abi::layout::{IMAGE_GPA_BASE, MANIFEST_GPA, MANIFEST_MAX};
use cabin_abi::note::{self, Manifest, NoteError, NOTE_OWNER, NT_CABIN_MANIFEST, NT_CABIN_MEASUREMENT};
use cabin_abi::PAGE_SIZE;
use thiserror::Error;

use crate::elf::{ElfError, ElfFile, PF_R, PF_W, PF_X, PT_NOTE};
use crate::measure::{page_digest, LaunchDigest, MeasureError, PageType, VmplPerms, DIGEST_LEN};

/// Why a file is not a valid Cabin image.
#[derive(Debug, Error)]
pub enum ImageError {
    /// The ELF itself is malformed.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// No `CABIN` manifest note.
    #[error("not a Cabin image (no CABIN manifest note); help: build one with `cabinc build`")]
    NoManifest,
    /// The manifest note does not decode.
    #[error("corrupt Cabin manifest: {0:?}")]
    BadManifest(NoteError),
    /// The measurement note is missing or has the wrong size.
    #[error("Cabin image has no valid measurement note")]
    NoMeasurement,
    /// The manifest is larger than the measured layout allows.
    #[error("Cabin manifest too large ({0} bytes)")]
    ManifestTooLarge(usize),
    /// The recorded measurement does not match the image's pages.
    #[error("its pages do not match its recorded measurement (modified after it was built); help: rebuild it with `cabinc build`")]
    MeasurementMismatch,
    /// The measurement primitive refused a page.
    #[error("measurement failed: {0}")]
    Measure(#[from] MeasureError),
}

/// One ELF note.
#[derive(Debug, Clone, Copy)]
pub struct Note<'a> {
    /// Owner name without the NUL terminator.
    pub name: &'a [u8],
    /// `n_type`.
    pub n_type: u32,
    /// Descriptor bytes.
    pub desc: &'a [u8],
}

fn align4(x: usize) -> Option<usize> {
    x.checked_add(3).map(|v| v & !3)
}

/// Iterates the notes in a note segment's bytes; stops at the first malformed one.
pub fn notes(mut bytes: &[u8]) -> impl Iterator<Item = Note<'_>> {
    std::iter::from_fn(move || {
        if bytes.len() < 12 {
            return None;
        }
        let namesz = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
        let descsz = u32::from_le_bytes(bytes[4..8].try_into().ok()?) as usize;
        let n_type = u32::from_le_bytes(bytes[8..12].try_into().ok()?);
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = align4(name_end)?;
        let desc_end = desc_start.checked_add(descsz)?;
        let next = align4(desc_end)?;
        if desc_end > bytes.len() {
            return None;
        }
        let mut name = &bytes[12..name_end];
        if let [rest @ .., 0] = name {
            name = rest;
        }
        let note = Note { name, n_type, desc: &bytes[desc_start..desc_end] };
        bytes = &bytes[next.min(bytes.len())..];
        Some(note)
    })
}

/// Encodes one note (owner [`NOTE_OWNER`]) with 4-byte padding.
pub fn encode_note(n_type: u32, desc: &[u8]) -> Vec<u8> {
    let namesz = NOTE_OWNER.len() + 1;
    let mut out = Vec::with_capacity(12 + 8 + desc.len() + 3);
    out.extend_from_slice(&(namesz as u32).to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(NOTE_OWNER);
    out.push(0);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out.extend_from_slice(desc);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// A parsed Cabin image.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    /// The validated ELF.
    pub elf: ElfFile<'a>,
    /// Raw manifest bytes (the note descriptor).
    pub manifest_bytes: &'a [u8],
    /// Decoded manifest.
    pub manifest: Manifest<'a>,
    /// Measurement recorded at build time.
    pub measurement: [u8; DIGEST_LEN],
}

impl<'a> Image<'a> {
    /// Parses `data` as a Cabin image.
    pub fn parse(data: &'a [u8]) -> Result<Self, ImageError> {
        let elf = ElfFile::parse(data)?;
        let mut manifest_bytes = None;
        let mut measurement = None;
        for seg in elf.segments_of(PT_NOTE) {
            let start = seg.offset as usize;
            let Some(bytes) = start.checked_add(seg.filesz as usize).and_then(|end| data.get(start..end))
            else {
                continue;
            };
            for n in notes(bytes).filter(|n| n.name == NOTE_OWNER) {
                match n.n_type {
                    NT_CABIN_MANIFEST => manifest_bytes = Some(n.desc),
                    NT_CABIN_MEASUREMENT => measurement = <[u8; DIGEST_LEN]>::try_from(n.desc).ok(),
                    _ => {}
                }
            }
        }
        let manifest_bytes = manifest_bytes.ok_or(ImageError::NoManifest)?;
        let manifest = Manifest::parse(manifest_bytes).map_err(ImageError::BadManifest)?;
        let measurement = measurement.ok_or(ImageError::NoMeasurement)?;
        Ok(Self { elf, manifest_bytes, manifest, measurement })
    }

    /// Recomputes the launch digest from the image's pages and manifest.
    pub fn compute_measurement(&self) -> Result<[u8; DIGEST_LEN], ImageError> {
        measure(&self.elf, self.manifest_bytes)
    }

    /// Recomputes the launch digest and checks it against the recorded one:
    /// the check every reader does before trusting an image.
    pub fn verify_measurement(&self) -> Result<[u8; DIGEST_LEN], ImageError> {
        let computed = self.compute_measurement()?;
        if computed != self.measurement {
            return Err(ImageError::MeasurementMismatch);
        }
        Ok(computed)
    }

    /// Whether execute-only code is recorded in the manifest.
    pub fn execute_only(&self) -> bool {
        self.manifest.header.flags & note::MF_EXECUTE_ONLY != 0
    }
}

/// Whether an ELF already carries a Cabin note (it is an image, not an input).
pub fn has_cabin_note(elf: &ElfFile<'_>) -> bool {
    elf.segments_of(PT_NOTE).any(|seg| {
        let start = seg.offset as usize;
        start
            .checked_add(seg.filesz as usize)
            .and_then(|end| elf.data.get(start..end))
            .is_some_and(|bytes| notes(bytes).any(|n| n.name == NOTE_OWNER))
    })
}

/// RMP permissions that VMPL1 (the confined domain) gets for a segment.
pub fn vmpl1_perms(flags: u32) -> VmplPerms {
    let mut p = 0;
    if flags & PF_R != 0 {
        p |= VmplPerms::READ;
    }
    if flags & PF_W != 0 {
        p |= VmplPerms::WRITE;
    }
    if flags & PF_X != 0 {
        p |= VmplPerms::EXEC_USER;
    }
    VmplPerms(p)
}

/// The contents digests of `pages` (`None` for a page without contents),
/// hashed on up to four threads: hashing every page is most of the cost of
/// checking an image before each run.
fn page_digests(pages: &[Option<&[u8]>]) -> Vec<Option<[u8; DIGEST_LEN]>> {
    let hash = |chunk: &[Option<&[u8]>]| -> Vec<_> { chunk.iter().map(|p| p.map(page_digest)).collect() };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads < 2 || pages.len() < 128 {
        return hash(pages);
    }
    let per = pages.len().div_ceil(threads);
    std::thread::scope(|s| {
        let parts: Vec<_> = pages.chunks(per).map(|c| s.spawn(move || hash(c))).collect();
        parts.into_iter().flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// What one page of the laid-out image holds.
enum Contents<'a> {
    /// No file bytes (a ZERO page).
    Zero,
    /// 4 KiB of one segment's file bytes, as they lie in the image.
    Whole(&'a [u8]),
    /// File bytes of one or more segments on a zeroed page.
    Assembled(Vec<u8>),
}

impl Contents<'_> {
    fn bytes(&self) -> Option<&[u8]> {
        match self {
            Contents::Zero => None,
            Contents::Whole(b) => Some(b),
            Contents::Assembled(v) => Some(v),
        }
    }
}

/// One page an image contributes to its launch digest ([`launch_pages`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchPage {
    /// Guest-physical address.
    pub gpa: u64,
    /// NORMAL (file bytes or manifest) or ZERO (no file bytes).
    pub page_type: PageType,
    /// The RMP permissions VMPL1 gets (the union over the segments
    /// touching the page; the manifest is read-only).
    pub vmpl1: VmplPerms,
}

/// The pages [`measure`] folds, in its order, without their contents: every
/// page a loadable segment touches in address order at `IMAGE_GPA_BASE +
/// (page - lowest page)`, then `manifest_len` bytes of manifest pages at
/// `MANIFEST_GPA`. A loader that adds these pages with the contents of the
/// domain it built (`cabin-snp`'s launch plan) reproduces the digest.
pub fn launch_pages(elf: &ElfFile<'_>, manifest_len: usize) -> Vec<LaunchPage> {
    // page vaddr -> (any file byte lands there, permission bits)
    let mut pages: BTreeMap<u64, (bool, u8)> = BTreeMap::new();
    for seg in elf.loads().filter(|s| s.memsz > 0) {
        let mut p = seg.vaddr & !(PAGE_SIZE - 1);
        while p < seg.end() {
            let e = pages.entry(p).or_insert((false, 0));
            e.0 |= p.max(seg.vaddr) < (p + PAGE_SIZE).min(seg.vaddr + seg.filesz);
            e.1 |= vmpl1_perms(seg.flags).0;
            p += PAGE_SIZE;
        }
    }
    let base = pages.keys().next().copied().unwrap_or(0);
    let image = pages.iter().map(|(&vaddr, &(bytes, perms))| LaunchPage {
        gpa: IMAGE_GPA_BASE + (vaddr - base),
        page_type: if bytes { PageType::Normal } else { PageType::Zero },
        vmpl1: VmplPerms(perms),
    });
    let manifest = (0..manifest_len.div_ceil(PAGE_SIZE as usize) as u64).map(|i| LaunchPage {
        gpa: MANIFEST_GPA + i * PAGE_SIZE,
        page_type: PageType::Normal,
        vmpl1: VmplPerms(VmplPerms::READ),
    });
    image.chain(manifest).collect()
}

/// The SEV-SNP launch digest of an image laid out in the domain.
///
/// Pages: every page any loadable segment touches, in address order, at
/// `IMAGE_GPA_BASE + (page - lowest page)`; file bytes are NORMAL pages,
/// pages with no file bytes are ZERO pages; VMPL1 gets the segment's
/// permissions (execute-only code gets execute-user only). Then the manifest
/// as NORMAL, read-only pages at `MANIFEST_GPA`.
pub fn measure(elf: &ElfFile<'_>, manifest: &[u8]) -> Result<[u8; DIGEST_LEN], ImageError> {
    if manifest.len() as u64 > MANIFEST_MAX {
        return Err(ImageError::ManifestTooLarge(manifest.len()));
    }
    let page = PAGE_SIZE as usize;
    // page vaddr -> (contents if any file byte lands there, permission bits).
    // A page whose 4 KiB all come from one segment's file bytes (most of
    // them) is hashed where it lies in the image; only pages that segments
    // share or fill partly are assembled in a copy.
    let mut pages: BTreeMap<u64, (Contents<'_>, u8)> = BTreeMap::new();
    for seg in elf.loads().filter(|s| s.memsz > 0) {
        let perms = vmpl1_perms(seg.flags).0;
        let bytes = elf.bytes(seg);
        let first = seg.vaddr & !(PAGE_SIZE - 1);
        let mut p = first;
        while p < seg.end() {
            let entry = pages.entry(p).or_insert((Contents::Zero, 0));
            entry.1 |= perms;
            // File bytes of this segment that fall in page p.
            let lo = p.max(seg.vaddr);
            let hi = (p + PAGE_SIZE).min(seg.vaddr + seg.filesz);
            if lo < hi {
                let src = &bytes[(lo - seg.vaddr) as usize..(hi - seg.vaddr) as usize];
                entry.0 = match std::mem::replace(&mut entry.0, Contents::Zero) {
                    Contents::Zero if src.len() == page => Contents::Whole(src),
                    earlier => {
                        let mut copy = match earlier {
                            Contents::Zero => vec![0u8; page],
                            Contents::Whole(b) => b.to_vec(),
                            Contents::Assembled(v) => v,
                        };
                        copy[(lo - p) as usize..(hi - p) as usize].copy_from_slice(src);
                        Contents::Assembled(copy)
                    }
                };
            }
            p += PAGE_SIZE;
        }
    }
    let base = pages.keys().next().copied().unwrap_or(0);
    let none = VmplPerms(0);
    let contents: Vec<Option<&[u8]>> = pages.values().map(|(c, _)| c.bytes()).collect();
    let digests = page_digests(&contents);
    let mut digest = LaunchDigest::new();
    for ((vaddr, (_, perms)), contents_digest) in pages.iter().zip(&digests) {
        let gpa = IMAGE_GPA_BASE + (vaddr - base);
        let perms = [VmplPerms(*perms), none, none];
        let page_type = if contents_digest.is_some() { PageType::Normal } else { PageType::Zero };
        digest.update_digested(page_type, gpa, contents_digest.as_ref(), perms)?;
    }
    digest.update_normal_pages(MANIFEST_GPA, manifest, [VmplPerms(VmplPerms::READ), none, none])?;
    Ok(digest.digest())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The launch digest computed the plain way: every page assembled in a
    /// zeroed copy, whatever covers it.
    fn reference_measure(elf: &ElfFile<'_>, manifest: &[u8]) -> [u8; DIGEST_LEN] {
        let mut pages: BTreeMap<u64, (Option<Vec<u8>>, u8)> = BTreeMap::new();
        for seg in elf.loads().filter(|s| s.memsz > 0) {
            let bytes = elf.bytes(seg);
            let mut p = seg.vaddr & !(PAGE_SIZE - 1);
            while p < seg.end() {
                let entry = pages.entry(p).or_insert((None, 0));
                entry.1 |= vmpl1_perms(seg.flags).0;
                let (lo, hi) = (p.max(seg.vaddr), (p + PAGE_SIZE).min(seg.vaddr + seg.filesz));
                if lo < hi {
                    let c = entry.0.get_or_insert_with(|| vec![0; PAGE_SIZE as usize]);
                    c[(lo - p) as usize..(hi - p) as usize]
                        .copy_from_slice(&bytes[(lo - seg.vaddr) as usize..(hi - seg.vaddr) as usize]);
                }
                p += PAGE_SIZE;
            }
        }
        let base = pages.keys().next().copied().unwrap_or(0);
        let none = VmplPerms(0);
        let mut d = LaunchDigest::new();
        for (vaddr, (c, perms)) in &pages {
            let t = if c.is_some() { PageType::Normal } else { PageType::Zero };
            let digest = c.as_deref().map(page_digest);
            d.update_digested(
                t,
                IMAGE_GPA_BASE + (vaddr - base),
                digest.as_ref(),
                [VmplPerms(*perms), none, none],
            )
            .expect("in range");
        }
        d.update_normal_pages(MANIFEST_GPA, manifest, [VmplPerms(VmplPerms::READ), none, none])
            .expect("fits");
        d.digest()
    }

    /// Pages hashed in place and pages assembled from several segments give
    /// the digest of the plain computation, on real executables of this
    /// machine (segments sharing pages, partial first and last pages).
    #[test]
    fn measure_matches_the_plain_computation() {
        let mut seen = 0;
        for path in ["/bin/busybox", "/bin/true", "/bin/ls", "/usr/bin/env"] {
            let Ok(data) = std::fs::read(path) else { continue };
            let Ok(elf) = ElfFile::parse(&data) else { continue };
            let manifest = b"manifest bytes";
            assert_eq!(
                measure(&elf, manifest).expect("measure"),
                reference_measure(&elf, manifest),
                "{path}"
            );
            seen += 1;
        }
        assert!(seen > 0, "no executable to measure on this machine");
    }

    #[test]
    fn note_round_trips() {
        let n = encode_note(NT_CABIN_MANIFEST, &[1, 2, 3, 4, 5]);
        assert_eq!(n.len() % 4, 0);
        let got: Vec<_> = notes(&n).collect();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, NOTE_OWNER);
        assert_eq!(got[0].n_type, NT_CABIN_MANIFEST);
        assert_eq!(got[0].desc, &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn truncated_note_stops_iteration() {
        let n = encode_note(NT_CABIN_MANIFEST, &[0; 40]);
        assert_eq!(notes(&n[..30]).count(), 0);
    }
}
