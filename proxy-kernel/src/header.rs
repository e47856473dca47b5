//! The header at the start of the proxy-kernel blob.
//!
//! The monitor does not parse ELF or symbols to find the kernel's entry
//! points: the blob starts with this fixed header (written in assembly in
//! `arch/x86_64/entry.rs`, offsets resolved at link time), and everything
//! in it is an offset from the blob's first byte. All fields little-endian.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | [`MAGIC`] |
//! | 8 | 4 | [`VERSION`] |
//! | 12 | 4 | number of vector stubs ([`VECTORS`]) |
//! | 16 | 8 | offset of the stub of vector 0 |
//! | 24 | 8 | distance between stubs ([`STUB_SIZE`]) |
//! | 32 | 8 | offset of the `syscall` entry (the value for `MSR_LSTAR`) |
//! | 40 | 8 | size of the blob in memory |
//! | 48 | 8 | offset of the compatibility-mode `syscall` entry (the value for `MSR_CSTAR`) |
//! | 56 | 8 | offset of the `sysenter` entry (the value for `MSR_SYSENTER_EIP`) |

/// "CABINPK\0".
pub const MAGIC: u64 = u64::from_le_bytes(*b"CABINPK\0");
/// Version of this header and of the trap protocol behind it (2: the
/// `CSTAR` and `SYSENTER_EIP` entries).
pub const VERSION: u32 = 2;
/// Number of IDT vectors the blob has stubs for.
pub const VECTORS: u32 = 256;
/// Distance between two vector stubs.
pub const STUB_SIZE: u64 = 16;
/// Size of the header in bytes.
pub const HEADER_SIZE: usize = 64;

/// Why a blob was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than the header.
    Truncated,
    /// Wrong magic.
    BadMagic,
    /// A version this monitor does not know.
    BadVersion(u32),
    /// An offset points outside the blob or a field is inconsistent.
    BadLayout,
}

/// The decoded header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Offset of vector 0's stub.
    pub vectors: u64,
    /// Offset of the `syscall` entry.
    pub syscall_entry: u64,
    /// Offset of the compatibility-mode `syscall` entry (`MSR_CSTAR`).
    pub compat_syscall_entry: u64,
    /// Offset of the `sysenter` entry (`MSR_SYSENTER_EIP`).
    pub sysenter_entry: u64,
    /// Size of the blob in memory (≥ its file size; the rest is zero).
    pub size: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

impl Header {
    /// Reads and checks the header of `blob`.
    pub fn parse(blob: &[u8]) -> Result<Header, HeaderError> {
        if blob.len() < HEADER_SIZE {
            return Err(HeaderError::Truncated);
        }
        if u64_at(blob, 0) != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u32_at(blob, 8);
        if version != VERSION {
            return Err(HeaderError::BadVersion(version));
        }
        let count = u32_at(blob, 12);
        let vectors = u64_at(blob, 16);
        let stub = u64_at(blob, 24);
        let syscall_entry = u64_at(blob, 32);
        let size = u64_at(blob, 40);
        let compat_syscall_entry = u64_at(blob, 48);
        let sysenter_entry = u64_at(blob, 56);
        let len = blob.len() as u64;
        let entry_ok = |at: u64| (HEADER_SIZE as u64..len).contains(&at);
        let stubs_end = vectors.checked_add(u64::from(count) * STUB_SIZE).ok_or(HeaderError::BadLayout)?;
        if count != VECTORS
            || stub != STUB_SIZE
            || vectors < HEADER_SIZE as u64
            || stubs_end > len
            || !entry_ok(syscall_entry)
            || !entry_ok(compat_syscall_entry)
            || !entry_ok(sysenter_entry)
            || size < len
        {
            return Err(HeaderError::BadLayout);
        }
        Ok(Header { vectors, syscall_entry, compat_syscall_entry, sysenter_entry, size })
    }

    /// Offset of the stub for `vector`.
    pub fn vector_offset(&self, vector: u8) -> u64 {
        self.vectors + u64::from(vector) * STUB_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob() -> Vec<u8> {
        let mut b = vec![0u8; 0x1000 + 256 * 16 + 64];
        b[0..8].copy_from_slice(&MAGIC.to_le_bytes());
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&VECTORS.to_le_bytes());
        b[16..24].copy_from_slice(&0x40u64.to_le_bytes());
        b[24..32].copy_from_slice(&STUB_SIZE.to_le_bytes());
        b[32..40].copy_from_slice(&0x1010u64.to_le_bytes());
        let len = b.len() as u64;
        b[40..48].copy_from_slice(&len.to_le_bytes());
        b[48..56].copy_from_slice(&0x1020u64.to_le_bytes());
        b[56..64].copy_from_slice(&0x1030u64.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_good_header() {
        let h = Header::parse(&blob()).expect("good header");
        assert_eq!(h.vectors, 0x40);
        assert_eq!(h.syscall_entry, 0x1010);
        assert_eq!(h.compat_syscall_entry, 0x1020);
        assert_eq!(h.sysenter_entry, 0x1030);
        assert_eq!(h.vector_offset(14), 0x40 + 14 * 16);
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Header::parse(&[0u8; 10]), Err(HeaderError::Truncated));
        let mut b = blob();
        b[0] ^= 1;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadMagic));
        let mut b = blob();
        b[8] = 9;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadVersion(9)));
        let mut b = blob();
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Header::parse(&b), Err(HeaderError::BadLayout));
        let mut b = blob();
        b[16..24].copy_from_slice(&(u64::MAX - 8).to_le_bytes());
        assert_eq!(Header::parse(&b), Err(HeaderError::BadLayout));
        for at in [48, 56] {
            let mut b = blob();
            b[at..at + 8].copy_from_slice(&8u64.to_le_bytes()); // inside the header
            assert_eq!(Header::parse(&b), Err(HeaderError::BadLayout));
        }
    }
}
