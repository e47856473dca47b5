//! The SNP domain: built by the KVM backend's builder
//! ([`cabin_kvm::domain::build`]), then described for VMPL1 (launch pages,
//! permission plan, VMSA) and relocated to the guest pages the module took.
//!
//! Everything up to the module's ioctls is pure and tested here;
//! [`SnpDomain`] is the monitor's [`Domain`] over `/dev/cabin-vmpl`, whose
//! [`Domain::available`] says why it cannot run on a machine without
//! SEV-SNP or without the module.

use cabin_image::image::{launch_pages, Image, LaunchPage};
use cabin_kvm::domain::{Guest, ProgramSpec};
use cabin_kvm::layout::{PT_END, PT_GPA};
use cabin_kvm::memory::PhysMemory;
use cabin_kvm::paging::{PTE_ADDR, PTE_P, PTE_PS};
use cabin_kvm::vcpu::{cpu_state, CpuFeatures, CpuState, VcpuStart};
use thiserror::Error;

use crate::plan::{plan, Grant, PlanError};
use crate::rmp::{DOMAIN_VMPL, LARGE_PAGE, PAGE};
use crate::vmsa::VmsaFields;

/// Errors of building an SNP domain.
#[derive(Debug, Error)]
pub enum SnpError {
    /// The shared builder failed.
    #[error(transparent)]
    Domain(#[from] cabin_kvm::domain::DomainError),
    /// The image is not an intact Cabin image.
    #[error(transparent)]
    Image(#[from] cabin_image::image::ImageError),
    /// The manifest does not fit below the image.
    #[error("the manifest ({0} bytes) does not fit the measured layout")]
    Manifest(usize),
    /// The permission plan does not describe the domain (a Cabin bug).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The vCPU state is invalid.
    #[error(transparent)]
    Vcpu(#[from] cabin_kvm::vcpu::VcpuError),
    /// Guest memory access failed.
    #[error(transparent)]
    Memory(#[from] cabin_kvm::memory::MemoryError),
    /// The chunks the module reported cannot hold the domain.
    #[error("bad chunk list from the module: {0}")]
    Chunks(&'static str),
    /// A page-table entry points outside the domain or its pool.
    #[error("page-table entry {entry:#x} at {at:#x} cannot be relocated")]
    Relocate {
        /// Where the entry lies (domain GPA).
        at: u64,
        /// The entry.
        entry: u64,
    },
}

/// A domain built for VMPL1, still at domain addresses (GPA 0 = the first
/// byte of domain memory).
#[derive(Debug)]
pub struct SnpGuest {
    /// The domain, as the KVM backend builds it (manifest pages added).
    pub guest: Guest,
    /// The pages the launch measurement folds, in order.
    pub launch: Vec<LaunchPage>,
    /// VMPL1's permissions, page range by page range.
    pub grants: Vec<Grant>,
    /// vCPU 0's start state.
    pub cpu: CpuState,
}

/// Builds the domain of `image` with `mem_size` bytes. `f`: the CPU
/// features the VMPL1 vCPU gets (from the SNP CPUID page at bring-up). No
/// protection key on code: the RMP makes it execute-only.
pub fn build(
    image: &[u8],
    mem_size: u64,
    program: &ProgramSpec,
    random: [u8; 16],
    f: &CpuFeatures,
) -> Result<SnpGuest, SnpError> {
    let img = Image::parse(image)?;
    let hwcap = (u64::from(f.leaf1_edx), f.hwcap2());
    let guest = cabin_kvm::domain::build(image, mem_size, program, random, hwcap, 0)?;
    let manifest = img.manifest_bytes;
    if manifest.len() as u64 > cabin_abi::layout::MANIFEST_MAX {
        return Err(SnpError::Manifest(manifest.len()));
    }
    guest.phys.write(cabin_abi::layout::MANIFEST_GPA, manifest)?;
    let launch = launch_pages(&img.elf, manifest.len());
    let grants = plan(&guest, &launch)?;
    let start = VcpuStart { rip: guest.entry, rsp: guest.rsp, ..VcpuStart::default() };
    let cpu = cpu_state(f, &guest, 0, &start)?;
    Ok(SnpGuest { guest, launch, grants, cpu })
}

/// Where the domain's memory lies in the confidential VM: the guest-physical
/// address of each 2 MiB chunk the module took, and the C-bit (memory
/// encryption bit, CPUID 0x8000_001F EBX[5:0]) every page-table entry of a
/// private page must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relocation {
    chunks: Vec<u64>,
    c_bit: u64,
}

impl Relocation {
    /// Checks the module's answer: one 2 MiB-aligned chunk per 2 MiB of
    /// `mem_size`, below the C-bit, which lies in 32..=51.
    pub fn new(chunks: Vec<u64>, mem_size: u64, c_bit: u8) -> Result<Relocation, SnpError> {
        if !(32..=51).contains(&c_bit) {
            return Err(SnpError::Chunks("C-bit position outside 32..=51"));
        }
        let c = 1u64 << c_bit;
        if chunks.len() as u64 != mem_size / LARGE_PAGE || !mem_size.is_multiple_of(LARGE_PAGE) {
            return Err(SnpError::Chunks("chunk count does not match the memory size"));
        }
        if chunks.iter().any(|&g| !g.is_multiple_of(LARGE_PAGE) || g >= c) {
            return Err(SnpError::Chunks("a chunk is unaligned or above the C-bit"));
        }
        Ok(Relocation { chunks, c_bit: c })
    }

    /// The confidential VM's GPA of domain address `gpa`, with the C-bit.
    pub fn gpa(&self, gpa: u64) -> Option<u64> {
        let chunk = self.chunks.get(usize::try_from(gpa / LARGE_PAGE).ok()?)?;
        Some((chunk + gpa % LARGE_PAGE) | self.c_bit)
    }

    /// The C-bit mask.
    pub fn c_bit(&self) -> u64 {
        self.c_bit
    }

    /// The domain address of a relocated address `addr` (with the C-bit):
    /// the inverse of [`Relocation::gpa`]. `None` for an address without the
    /// C-bit or outside every chunk.
    pub fn domain(&self, addr: u64) -> Option<u64> {
        if addr & self.c_bit == 0 {
            return None;
        }
        let a = addr & !self.c_bit;
        let i = self.chunks.iter().position(|&c| c == a & !(LARGE_PAGE - 1))?;
        Some(i as u64 * LARGE_PAGE + a % LARGE_PAGE)
    }
}

/// Page-table edits after the relocation (`mprotect`, `munmap`, commits:
/// `cabin_kvm::protect`/`commit`) go through it.
impl cabin_kvm::paging::Relocate for Relocation {
    fn to_entry(&self, gpa: u64) -> Option<u64> {
        self.gpa(gpa)
    }

    fn to_domain(&self, addr: u64) -> Option<u64> {
        self.domain(addr)
    }
}

/// Rewrites the page tables rooted at `cr3` (domain addresses, tables in
/// the pool `[PT_GPA, PT_END)`) so every entry holds the relocated address
/// with the C-bit, and returns the relocated CR3. Each table is rewritten
/// once; an entry pointing outside the domain, a table outside the pool, or
/// a 1 GiB leaf is refused.
pub fn relocate_page_tables(mem: &PhysMemory, cr3: u64, r: &Relocation) -> Result<u64, SnpError> {
    let mut stack = vec![(cr3 & PTE_ADDR, 4u8)];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((table, level)) = stack.pop() {
        if !(PT_GPA..PT_END).contains(&table) || !seen.insert(table) {
            return Err(SnpError::Relocate { at: table, entry: 0 });
        }
        for i in 0..512u64 {
            let at = table + i * 8;
            let e = mem.read_u64(at)?;
            if e & PTE_P == 0 {
                continue;
            }
            let leaf = level == 1 || (level == 2 && e & PTE_PS != 0);
            if level >= 3 && e & PTE_PS != 0 {
                return Err(SnpError::Relocate { at, entry: e });
            }
            let addr = e & PTE_ADDR;
            if !leaf {
                stack.push((addr, level - 1));
            }
            let new = r.gpa(addr).ok_or(SnpError::Relocate { at, entry: e })?;
            mem.write_u64(at, (e & !PTE_ADDR) | new)?;
        }
    }
    r.gpa(cr3 & PTE_ADDR).ok_or(SnpError::Relocate { at: 0, entry: cr3 })
}

impl SnpGuest {
    /// vCPU 0's VMPL1 VMSA, with the relocated `cr3`.
    pub fn vmsa(&self, cr3: u64, sev_features: u64) -> VmsaFields {
        VmsaFields::from_cpu(&CpuState { cr3, ..self.cpu }, DOMAIN_VMPL, sev_features)
    }

    /// Bytes of domain memory that hold something at start (every placed
    /// range and the manifest): what is copied into the module's pages.
    pub fn used_ranges(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self.guest.placed.iter().map(|p| (p.gpa, p.len)).collect();
        v.extend(
            self.launch.iter().filter(|p| p.gpa < cabin_abi::layout::IMAGE_GPA_BASE).map(|p| (p.gpa, PAGE)),
        );
        v
    }
}
