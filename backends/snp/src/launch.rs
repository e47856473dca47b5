//! The launch digest of a built domain: the image and manifest pages in the
//! order the loader adds them (`cabin_image::image::launch_pages`), with the
//! contents the KVM backend's builder actually put in guest memory. Equal to
//! what `cabinc measure` prints for the image: the builder places every
//! byte where the measurement expects it.

use cabin_image::image::LaunchPage;
use cabin_image::measure::{LaunchDigest, MeasureError, VmplPerms, DIGEST_LEN, PAGE_SIZE};
use cabin_kvm::memory::PhysMemory;
use thiserror::Error;

/// Why the digest could not be computed.
#[derive(Debug, Error)]
pub enum LaunchError {
    /// A page lies outside guest memory.
    #[error(transparent)]
    Memory(#[from] cabin_kvm::memory::MemoryError),
    /// The measurement refused a page.
    #[error(transparent)]
    Measure(#[from] MeasureError),
}

/// Folds `pages` of `mem` into a launch digest, as the firmware would at
/// `SNP_LAUNCH_UPDATE` (NORMAL pages by their contents in `mem`, ZERO pages
/// by address; VMPL2/3 get nothing).
pub fn digest(mem: &PhysMemory, pages: &[LaunchPage]) -> Result<[u8; DIGEST_LEN], LaunchError> {
    let mut ld = LaunchDigest::new();
    let mut buf = vec![0u8; PAGE_SIZE];
    let none = VmplPerms::NONE;
    for p in pages {
        let contents = if p.page_type.has_contents() {
            mem.read(p.gpa, &mut buf)?;
            Some(&buf[..])
        } else {
            None
        };
        ld.update(p.page_type, p.gpa, contents, [p.vmpl1, none, none])?;
    }
    Ok(ld.digest())
}
