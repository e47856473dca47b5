//! The permission plan: which RMP permissions VMPL1 gets on each page of a
//! domain, derived from what the KVM backend's builder placed where
//! ([`cabin_kvm::domain::Guest::placed`]) and, for the image and manifest
//! pages, from the launch measurement's own page list (so the permissions
//! the RMP enforces are the ones the measurement records).
//!
//! | what | VMPL1 permissions | why |
//! |---|---|---|
//! | program code | execute-user only (plus read if the image has readable code) | execute-only by the RMP, no PKU needed |
//! | image data / rodata | read+write / read | as the segments say |
//! | stack, `brk`, arena, boot page, ring | read+write | the program's memory and the ring it shares with VMPL0 |
//! | manifest | read | measured read-only |
//! | GDT, IDT, TSS | read | the CPU reads them; accessed bits are preset, nothing writes them |
//! | ring-0 stacks (`#VC` stack included) | read+write | the proxy-kernel's stacks (user code is kept out by the page tables' U/S bit) |
//! | `#VC` calling areas | read+write | the proxy-kernel's requests to VMPL0; supervisor-only in the page tables, so ring 3 can neither read nor forge one |
//! | proxy-kernel | read + execute-supervisor | its code and constants; never user-executable, never writable |
//! | page tables | read | the CPU walks them (A/D bits preset); only VMPL0 edits them |
//! | anything else (VMPL0's own pages, the VMSA) | nothing | |

use cabin_image::image::LaunchPage;
use cabin_image::measure::VmplPerms;
use cabin_kvm::domain::{Guest, Placed, Role};
use thiserror::Error;

use crate::rmp::{PageSize, RmpAdjust, DOMAIN_VMPL, LARGE_PAGE, PAGE};

/// One range of the plan: `len` bytes at `gpa`, all with `perms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grant {
    /// First guest-physical address (4 KiB aligned).
    pub gpa: u64,
    /// Bytes (a multiple of 4 KiB).
    pub len: u64,
    /// VMPL1's permissions.
    pub perms: VmplPerms,
    /// What the range holds (`None`: a manifest page).
    pub role: Option<Role>,
}

/// A domain the plan cannot describe (a builder or layout bug, never input).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum PlanError {
    /// An image page the builder placed has no page in the launch list (or
    /// the other way round).
    #[error("image page {0:#x} is not where the launch measurement expects it")]
    ImageMismatch(u64),
    /// Two ranges overlap.
    #[error("ranges overlap at {0:#x}")]
    Overlap(u64),
    /// A range is not page aligned.
    #[error("range at {0:#x} is not page aligned")]
    Unaligned(u64),
}

const R: u8 = VmplPerms::READ;
const W: u8 = VmplPerms::WRITE;
const XS: u8 = VmplPerms::EXEC_SUPERVISOR;

/// VMPL1's permissions for a range the builder placed (image ranges take
/// the measurement's per-page permissions instead: see [`plan`]).
pub fn role_perms(role: Role) -> VmplPerms {
    VmplPerms(match role {
        Role::ImageCode => VmplPerms::EXEC_USER,
        Role::ImageData | Role::UserData | Role::BootPage | Role::Ring | Role::KernelStack | Role::VcArea => {
            R | W
        }
        Role::ImageRodata | Role::Gdt | Role::Idt | Role::Tss | Role::PageTables => R,
        Role::ProxyKernel => R | XS,
    })
}

fn is_image(role: Role) -> bool {
    matches!(role, Role::ImageCode | Role::ImageData | Role::ImageRodata)
}

/// The plan for `guest`, whose image and manifest pages are `launch`
/// (`cabin_image::image::launch_pages`). Sorted by address, no overlaps.
pub fn plan(guest: &Guest, launch: &[LaunchPage]) -> Result<Vec<Grant>, PlanError> {
    let measured: std::collections::BTreeMap<u64, VmplPerms> =
        launch.iter().map(|p| (p.gpa, p.vmpl1)).collect();
    let mut grants = Vec::new();
    let mut image_pages = 0usize;
    for &Placed { gpa, len, role } in &guest.placed {
        if !gpa.is_multiple_of(PAGE) || !len.is_multiple_of(PAGE) {
            return Err(PlanError::Unaligned(gpa));
        }
        if !is_image(role) {
            grants.push(Grant { gpa, len, perms: role_perms(role), role: Some(role) });
            continue;
        }
        for p in (gpa..gpa + len).step_by(PAGE as usize) {
            let perms = *measured.get(&p).ok_or(PlanError::ImageMismatch(p))?;
            grants.push(Grant { gpa: p, len: PAGE, perms, role: Some(role) });
            image_pages += 1;
        }
    }
    let manifest: Vec<_> = launch.iter().filter(|p| p.gpa < cabin_abi::layout::IMAGE_GPA_BASE).collect();
    if image_pages + manifest.len() != launch.len() {
        return Err(PlanError::ImageMismatch(launch.first().map_or(0, |p| p.gpa)));
    }
    grants.extend(manifest.iter().map(|p| Grant { gpa: p.gpa, len: PAGE, perms: p.vmpl1, role: None }));
    grants.sort_by_key(|g| g.gpa);
    if let Some(w) = grants.windows(2).find(|w| w[0].gpa + w[0].len > w[1].gpa) {
        return Err(PlanError::Overlap(w[1].gpa));
    }
    Ok(grants)
}

/// The `RMPADJUST`s that carry out `grants` for VMPL1: 2 MiB where a whole
/// aligned 2 MiB page lies in one grant, 4 KiB elsewhere. Pages with no
/// permissions are left alone (a fresh page has none).
pub fn adjusts(grants: &[Grant]) -> Vec<RmpAdjust> {
    let mut out = Vec::new();
    for g in grants.iter().filter(|g| g.perms != VmplPerms::NONE) {
        let mut p = g.gpa;
        let end = g.gpa + g.len;
        while p < end {
            let size = if p.is_multiple_of(LARGE_PAGE) && end - p >= LARGE_PAGE {
                PageSize::Large
            } else {
                PageSize::Small
            };
            out.push(RmpAdjust { gpa: p, size, target_vmpl: DOMAIN_VMPL, perms: g.perms, vmsa: false });
            p += size.bytes();
        }
    }
    out
}
