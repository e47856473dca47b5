//! The [`LinkInfo`] block the rewriter fills in every image, and its check.
//!
//! `CABIN_LINK_INFO` is a writable, exported static in its own `.data`
//! section so that it has file bytes in the blob: the rewriter overwrites
//! those bytes in the image. The libos reads it only with a volatile load so
//! the compiler cannot fold the unfilled initial value into the code.

use cabin_abi::link::{LinkInfo, LINK_INFO_MAGIC};

/// The link-time facts, filled in by the rewriter (symbol
/// [`cabin_abi::link::LINK_INFO_SYMBOL`]).
#[unsafe(no_mangle)]
#[unsafe(link_section = ".data.cabin_link_info")]
#[used]
pub static mut CABIN_LINK_INFO: LinkInfo = LinkInfo::EMPTY;

/// Why a [`LinkInfo`] block was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkError {
    /// The magic is wrong: the rewriter never filled the block.
    BadMagic,
    /// Written by a rewriter with another ABI version.
    BadVersion,
    /// The block names no program headers.
    NoProgramHeaders,
}

impl LinkError {
    /// The one-line message printed before the image is stopped.
    pub fn message(self) -> &'static [u8] {
        b"cabin: image link info is missing or corrupt\n"
    }
}

/// Reads the current contents of `CABIN_LINK_INFO`.
pub fn read() -> LinkInfo {
    // SAFETY: the static is always initialised and properly aligned; it is
    // written only by the rewriter (in the image file), never at run time,
    // so a plain copy cannot race. Volatile keeps the compiler from assuming
    // the initial `EMPTY` value.
    unsafe { core::ptr::read_volatile(&raw const CABIN_LINK_INFO) }
}

/// Checks that `info` was written by a rewriter speaking this ABI.
pub fn validate(info: &LinkInfo) -> Result<(), LinkError> {
    if info.magic != LINK_INFO_MAGIC {
        return Err(LinkError::BadMagic);
    }
    if info.abi_version != cabin_abi::ABI_VERSION {
        return Err(LinkError::BadVersion);
    }
    if info.phnum == 0 {
        return Err(LinkError::NoProgramHeaders);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> LinkInfo {
        LinkInfo { magic: LINK_INFO_MAGIC, abi_version: cabin_abi::ABI_VERSION, phnum: 4, ..LinkInfo::EMPTY }
    }

    #[test]
    fn accepts_a_filled_block() {
        assert_eq!(validate(&good()), Ok(()));
    }

    #[test]
    fn refuses_the_unfilled_block() {
        assert_eq!(validate(&LinkInfo::EMPTY), Err(LinkError::BadMagic));
        assert_eq!(validate(&read()), Err(LinkError::BadMagic));
    }

    #[test]
    fn refuses_other_versions_and_missing_headers() {
        let info = LinkInfo { abi_version: cabin_abi::ABI_VERSION + 1, ..good() };
        assert_eq!(validate(&info), Err(LinkError::BadVersion));
        let info = LinkInfo { phnum: 0, ..good() };
        assert_eq!(validate(&info), Err(LinkError::NoProgramHeaders));
    }
}
