//! The Cabin manifest: a versioned record of how an image was built.
//!
//! It travels in an ELF `PT_NOTE` with owner [`NOTE_OWNER`] and type
//! [`NT_CABIN_MANIFEST`]; the launch measurement travels in a second note of
//! type [`NT_CABIN_MEASUREMENT`]. The manifest is part of what is measured,
//! the measurement note is not (it is the result).
//!
//! Encoding: little-endian, a fixed [`ManifestHeader`] followed by
//! `site_count` [`SiteRecord`]s and `forbidden_count` [`ForbiddenRecord`]s,
//! then (images built since the image cache, issue 20) an optional
//! input-digest trailer: [`INPUT_DIGEST_MAGIC`] and the SHA-256 of the
//! executable the image was built from. The trailer is inside the measured
//! manifest, so it cannot be changed without the measurement changing;
//! readers that predate it ignore bytes after the records.

/// ELF note owner name (without the terminating NUL).
pub const NOTE_OWNER: &[u8] = b"CABIN";
/// Note type of the manifest.
pub const NT_CABIN_MANIFEST: u32 = 1;
/// Note type of the 48-byte SEV-SNP launch digest.
pub const NT_CABIN_MEASUREMENT: u32 = 2;
/// Current manifest format version.
pub const FORMAT_VERSION: u32 = 1;

/// Manifest flag: code segments are execute-only in the image.
pub const MF_EXECUTE_ONLY: u32 = 1 << 0;
/// Manifest flag: the program is static-PIE.
pub const MF_PIE: u32 = 1 << 1;

/// The 8 bytes that open the input-digest trailer.
pub const INPUT_DIGEST_MAGIC: [u8; 8] = *b"CABINSRC";
/// Encoded size of the input-digest trailer (magic and SHA-256).
pub const INPUT_DIGEST_TRAILER: usize = 8 + 32;

/// Encodes the input-digest trailer for `sha256` (the input's SHA-256).
pub fn input_digest_trailer(sha256: &[u8; 32]) -> [u8; INPUT_DIGEST_TRAILER] {
    let mut b = [0u8; INPUT_DIGEST_TRAILER];
    b[..8].copy_from_slice(&INPUT_DIGEST_MAGIC);
    b[8..].copy_from_slice(sha256);
    b
}

/// Why a manifest could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteError {
    /// Fewer bytes than the header or the records it announces.
    Truncated,
    /// A format version this reader does not know.
    UnknownVersion(u32),
    /// A field holds a value outside its enumeration.
    BadField,
}

/// Fixed part of the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ManifestHeader {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// `MF_*` bits.
    pub flags: u32,
    /// Entry point of the input program (link-time address).
    pub original_entry: u64,
    /// Entry point of the image: the libos start routine (link-time address).
    pub entry: u64,
    /// [`crate::LIBOS_VERSION`] of the linked libos.
    pub libos_version: u32,
    /// Number of [`SiteRecord`]s that follow.
    pub site_count: u32,
    /// Number of [`ForbiddenRecord`]s after the sites.
    pub forbidden_count: u32,
    /// First link-time address of the added Cabin segments (libos, trampolines).
    pub cabin_vaddr: u64,
    /// Size in bytes of the added Cabin address range.
    pub cabin_size: u64,
}

impl ManifestHeader {
    /// Encoded size.
    pub const SIZE: usize = 64;

    /// Encodes the header.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put32(&mut b, 0, self.format_version);
        put32(&mut b, 4, self.flags);
        put64(&mut b, 8, self.original_entry);
        put64(&mut b, 16, self.entry);
        put32(&mut b, 24, self.libos_version);
        put32(&mut b, 28, self.site_count);
        put32(&mut b, 32, self.forbidden_count);
        put64(&mut b, 40, self.cabin_vaddr);
        put64(&mut b, 48, self.cabin_size);
        b
    }

    /// Decodes and version-checks a header.
    pub fn from_bytes(b: &[u8]) -> Result<Self, NoteError> {
        if b.len() < Self::SIZE {
            return Err(NoteError::Truncated);
        }
        let format_version = get32(b, 0);
        if format_version != FORMAT_VERSION {
            return Err(NoteError::UnknownVersion(format_version));
        }
        Ok(Self {
            format_version,
            flags: get32(b, 4),
            original_entry: get64(b, 8),
            entry: get64(b, 16),
            libos_version: get32(b, 24),
            site_count: get32(b, 28),
            forbidden_count: get32(b, 32),
            cabin_vaddr: get64(b, 40),
            cabin_size: get64(b, 48),
        })
    }
}

/// The instruction found at a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SiteKind {
    /// `syscall` (0f 05).
    Syscall = 0,
    /// `sysenter` (0f 34).
    Sysenter = 1,
    /// `int 0x80` (cd 80).
    Int80 = 2,
}

/// What the rewriter did with a site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Tactic {
    /// Replaced by a jump to a trampoline that calls the libos.
    Rewritten = 0,
    /// Left in place; the backend catches it at run time (slow path).
    Trap = 1,
}

/// Why a site was left as a trap site (or `Rewritten`'s `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum TrapReason {
    /// Not a trap site.
    None = 0,
    /// A known branch target falls inside the bytes a jump would overwrite.
    BranchTargetInWindow = 1,
    /// Not enough instruction bytes around the site to hold a 5-byte jump.
    WindowTooSmall = 2,
    /// An instruction in the window cannot be moved (e.g. it reads `rip`
    /// in a way the encoder cannot preserve, or is itself a site).
    UnmovableInstruction = 3,
    /// The instruction is not `syscall` (32-bit entry points are never
    /// rewritten: their calling convention differs).
    LegacyEntry = 4,
    /// The trampoline would be out of reach of a 32-bit displacement.
    OutOfRange = 5,
    /// The call switches stacks or never returns to the site in the usual
    /// way (`rt_sigreturn`, `clone` with a new stack, `vfork`).
    ControlFlowSyscall = 6,
    /// The build asked for every site to stay a trap site
    /// (`cabinc build --trap-all-sites`, to exercise the slow path).
    Requested = 7,
}

impl TrapReason {
    /// Stable, human-readable name used in JSON reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TrapReason::None => "rewritten",
            TrapReason::BranchTargetInWindow => "branch target inside patch window",
            TrapReason::WindowTooSmall => "not enough movable instructions around the site",
            TrapReason::UnmovableInstruction => "an instruction in the window cannot be moved",
            TrapReason::LegacyEntry => "32-bit system call entry (int 0x80 / sysenter)",
            TrapReason::OutOfRange => "trampoline out of 32-bit reach",
            TrapReason::ControlFlowSyscall => "system call that switches stacks or does not return",
            TrapReason::Requested => "left as a trap site on request (--trap-all-sites)",
        }
    }

    fn from_u16(v: u16) -> Option<Self> {
        Some(match v {
            0 => TrapReason::None,
            1 => TrapReason::BranchTargetInWindow,
            2 => TrapReason::WindowTooSmall,
            3 => TrapReason::UnmovableInstruction,
            4 => TrapReason::LegacyEntry,
            5 => TrapReason::OutOfRange,
            6 => TrapReason::ControlFlowSyscall,
            7 => TrapReason::Requested,
            _ => return None,
        })
    }
}

/// One system-call site.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SiteRecord {
    /// Link-time address of the instruction.
    pub addr: u64,
    /// Which instruction.
    pub kind: SiteKind,
    /// What the rewriter did.
    pub tactic: Tactic,
    /// Why, for trap sites.
    pub reason: TrapReason,
    /// Link-time address of the trampoline (0 for trap sites).
    pub trampoline: u64,
}

impl SiteRecord {
    /// Encoded size.
    pub const SIZE: usize = 24;

    /// Encodes the record.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put64(&mut b, 0, self.addr);
        b[8] = self.kind as u8;
        b[9] = self.tactic as u8;
        b[10..12].copy_from_slice(&(self.reason as u16).to_le_bytes());
        put64(&mut b, 16, self.trampoline);
        b
    }

    /// Decodes a record.
    pub fn from_bytes(b: &[u8]) -> Result<Self, NoteError> {
        if b.len() < Self::SIZE {
            return Err(NoteError::Truncated);
        }
        let kind = match b[8] {
            0 => SiteKind::Syscall,
            1 => SiteKind::Sysenter,
            2 => SiteKind::Int80,
            _ => return Err(NoteError::BadField),
        };
        let tactic = match b[9] {
            0 => Tactic::Rewritten,
            1 => Tactic::Trap,
            _ => return Err(NoteError::BadField),
        };
        let reason = TrapReason::from_u16(u16::from_le_bytes([b[10], b[11]])).ok_or(NoteError::BadField)?;
        Ok(Self { addr: get64(b, 0), kind, tactic, reason, trampoline: get64(b, 16) })
    }
}

/// An instruction that could lift the program's own protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ForbiddenKind {
    /// `wrpkru`: images containing it are refused; never appears in a manifest.
    Wrpkru = 0,
    /// `xrstor` / `xrstor64`: can load PKRU when XCR0 enables it.
    Xrstor = 1,
    /// `xrstors` / `xrstors64`.
    Xrstors = 2,
}

impl ForbiddenKind {
    /// Mnemonic as printed in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ForbiddenKind::Wrpkru => "wrpkru",
            ForbiddenKind::Xrstor => "xrstor",
            ForbiddenKind::Xrstors => "xrstors",
        }
    }
}

/// What the build did with a forbidden instruction (byte 9 of its
/// record; 0 in manifests written before the field existed, which is
/// [`ForbiddenFix::Left`]: the safe reading).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ForbiddenFix {
    /// Left in place: where XCR0 enables PKRU (the process backend on a
    /// CPU with protection keys) it could load PKRU, so execute-only is not
    /// claimed for the image there.
    Left = 0,
    /// Moved to a trampoline that clears PKRU from the requested features
    /// and ends the program if PKRU changed anyway; the original bytes
    /// became a jump.
    Masked = 1,
    /// `xrstors`: privileged, it faults in ring 3 whatever it asks for.
    Privileged = 2,
}

impl ForbiddenFix {
    /// Words for reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ForbiddenFix::Left => "left in place",
            ForbiddenFix::Masked => "rewritten: PKRU masked",
            ForbiddenFix::Privileged => "privileged: faults in ring 3",
        }
    }
}

/// One forbidden-instruction occurrence (possibly at an unaligned offset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForbiddenRecord {
    /// Link-time address of the first byte of the instruction.
    pub addr: u64,
    /// Which instruction.
    pub kind: ForbiddenKind,
    /// What the build did with it.
    pub fix: ForbiddenFix,
}

impl ForbiddenRecord {
    /// Encoded size.
    pub const SIZE: usize = 16;

    /// Encodes the record.
    pub fn to_bytes(&self) -> [u8; Self::SIZE] {
        let mut b = [0u8; Self::SIZE];
        put64(&mut b, 0, self.addr);
        b[8] = self.kind as u8;
        b[9] = self.fix as u8;
        b
    }

    /// Decodes a record.
    pub fn from_bytes(b: &[u8]) -> Result<Self, NoteError> {
        if b.len() < Self::SIZE {
            return Err(NoteError::Truncated);
        }
        let kind = match b[8] {
            0 => ForbiddenKind::Wrpkru,
            1 => ForbiddenKind::Xrstor,
            2 => ForbiddenKind::Xrstors,
            _ => return Err(NoteError::BadField),
        };
        let fix = match b[9] {
            0 => ForbiddenFix::Left,
            1 => ForbiddenFix::Masked,
            2 => ForbiddenFix::Privileged,
            _ => return Err(NoteError::BadField),
        };
        Ok(Self { addr: get64(b, 0), kind, fix })
    }
}

/// A decoded view over manifest bytes.
#[derive(Clone, Copy, Debug)]
pub struct Manifest<'a> {
    /// The fixed header.
    pub header: ManifestHeader,
    sites: &'a [u8],
    forbidden: &'a [u8],
    /// The SHA-256 of the executable the image was built from, when the
    /// manifest carries the trailer.
    pub input_digest: Option<[u8; 32]>,
}

impl<'a> Manifest<'a> {
    /// Decodes a manifest, checking that every announced record is present.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, NoteError> {
        let header = ManifestHeader::from_bytes(bytes)?;
        let sites_len =
            (header.site_count as usize).checked_mul(SiteRecord::SIZE).ok_or(NoteError::Truncated)?;
        let forb_len = (header.forbidden_count as usize)
            .checked_mul(ForbiddenRecord::SIZE)
            .ok_or(NoteError::Truncated)?;
        let rest = &bytes[ManifestHeader::SIZE..];
        if rest.len() < sites_len.checked_add(forb_len).ok_or(NoteError::Truncated)? {
            return Err(NoteError::Truncated);
        }
        let after = &rest[sites_len + forb_len..];
        let input_digest = match after.get(..INPUT_DIGEST_TRAILER) {
            Some(t) if t[..8] == INPUT_DIGEST_MAGIC => <[u8; 32]>::try_from(&t[8..]).ok(),
            _ => None,
        };
        let m = Self {
            header,
            sites: &rest[..sites_len],
            forbidden: &rest[sites_len..sites_len + forb_len],
            input_digest,
        };
        // Validate every record once so that iteration cannot fail later.
        for c in m.sites.chunks_exact(SiteRecord::SIZE) {
            SiteRecord::from_bytes(c)?;
        }
        for c in m.forbidden.chunks_exact(ForbiddenRecord::SIZE) {
            ForbiddenRecord::from_bytes(c)?;
        }
        Ok(m)
    }

    /// The site records.
    pub fn sites(&self) -> impl Iterator<Item = SiteRecord> + 'a {
        self.sites.chunks_exact(SiteRecord::SIZE).filter_map(|c| SiteRecord::from_bytes(c).ok())
    }

    /// The forbidden-instruction records.
    pub fn forbidden(&self) -> impl Iterator<Item = ForbiddenRecord> + 'a {
        self.forbidden.chunks_exact(ForbiddenRecord::SIZE).filter_map(|c| ForbiddenRecord::from_bytes(c).ok())
    }

    /// Encoded length of a manifest with these counts.
    pub fn encoded_len(site_count: usize, forbidden_count: usize) -> usize {
        ManifestHeader::SIZE + site_count * SiteRecord::SIZE + forbidden_count * ForbiddenRecord::SIZE
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
fn get32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn get64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = ManifestHeader {
            format_version: FORMAT_VERSION,
            flags: MF_EXECUTE_ONLY,
            original_entry: 0x401000,
            entry: 0x900000,
            libos_version: 1,
            site_count: 0,
            forbidden_count: 0,
            cabin_vaddr: 0x900000,
            cabin_size: 0x3000,
        };
        assert_eq!(ManifestHeader::from_bytes(&h.to_bytes()), Ok(h));
    }

    #[test]
    fn manifest_rejects_truncation_and_unknown_version() {
        let h = ManifestHeader { format_version: FORMAT_VERSION, site_count: 2, ..Default::default() };
        let mut bytes = [0u8; ManifestHeader::SIZE + SiteRecord::SIZE];
        bytes[..ManifestHeader::SIZE].copy_from_slice(&h.to_bytes());
        assert_eq!(Manifest::parse(&bytes).err(), Some(NoteError::Truncated));
        let mut v = h.to_bytes();
        v[0] = 9;
        assert_eq!(Manifest::parse(&v).err(), Some(NoteError::UnknownVersion(9)));
    }

    #[test]
    fn site_record_round_trips_and_rejects_bad_enums() {
        let s = SiteRecord {
            addr: 0x401234,
            kind: SiteKind::Syscall,
            tactic: Tactic::Trap,
            reason: TrapReason::BranchTargetInWindow,
            trampoline: 0,
        };
        let mut b = s.to_bytes();
        assert_eq!(SiteRecord::from_bytes(&b), Ok(s));
        b[9] = 7;
        assert_eq!(SiteRecord::from_bytes(&b), Err(NoteError::BadField));
    }
}
