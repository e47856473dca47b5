//! `cabinc run --backend snp`: [`SnpDomain`], the monitor's [`Domain`] over
//! `/dev/cabin-vmpl`. On a machine without SEV-SNP or without the module,
//! [`Domain::available`] says which, in one line with a `help:`; the session
//! then ends before anything is built (cabinc exits 125).
//!
//! The hardware-only part is this file: open the device, let it take the
//! domain's pages, move the built domain into them, grant VMPL1 its
//! permissions, create the VMPL1 vCPU, and run it. See docs/snp.md for
//! what is still to be brought up on SNP hardware.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cabin_abi::ring::RingPtr;
use cabin_abi::thread::ThreadStart;
use cabin_image::elf::{ElfFile, PF_X};
use cabin_kvm::memory::PhysMemory;
use cabin_kvm::KvmConfig;
use cabin_monitor::config::RunError;
use cabin_monitor::domain::{
    CpuClock, Domain, DomainEnd, DomainSpec, ExecuteOnly, SpawnedBy, StopCause, Stopper,
};
use cabin_monitor::memory::GuestMemory;
use cabin_monitor::ring::WorkerStats;
use thiserror::Error;

use crate::abi;
use crate::domain::{build, relocate_page_tables, Relocation, SnpError, SnpGuest};
use crate::ghcb;
use crate::rmp::PAGE;
use crate::vc;
use cabin_kvm::layout::vc_area_gpa;
use cabin_kvm::ring::{RingGate, Shared};
use cabin_kvm::{Served, SyscallService};
use cabin_proxy_kernel::vc::CpuidTable;

/// Why the SNP backend cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Unavailable {
    /// This is not an SEV-SNP guest.
    #[error(
        "this machine is not an SEV-SNP guest (no /dev/sev-guest, no sev_snp CPU flag); \
         help: run inside an SEV-SNP confidential VM (docs/snp.md), or use --backend kvm"
    )]
    NoSnp,
    /// The module is not loaded.
    #[error(
        "/dev/cabin-vmpl is missing (the cabin-vmpl module is not loaded); \
         help: build and load backends/snp/module (docs/snp.md, \"Loading the module\")"
    )]
    NoDevice,
    /// The device exists but cannot be opened.
    #[error("/dev/cabin-vmpl cannot be opened: {0}; help: run as a user that may open it")]
    Open(String),
    /// The module speaks another ABI or the kernel does not run at VMPL0.
    #[error(
        "the cabin-vmpl module is unusable: {0}; help: rebuild it from this Cabin's backends/snp/module"
    )]
    Module(String),
}

/// Whether this machine can run the SNP backend; the error says why not.
pub fn available() -> Result<(), Unavailable> {
    available_in(Path::new("/"))
}

/// [`available`] with every path under `root` (tests).
pub fn available_in(root: &Path) -> Result<(), Unavailable> {
    let snp_flag = std::fs::read_to_string(root.join("proc/cpuinfo"))
        .map(|s| s.lines().any(|l| l.starts_with("flags") && l.split_whitespace().any(|w| w == "sev_snp")))
        .unwrap_or(false);
    if !root.join("dev/sev-guest").exists() && !snp_flag {
        return Err(Unavailable::NoSnp);
    }
    if !root.join(abi::DEVICE.trim_start_matches('/')).exists() {
        return Err(Unavailable::NoDevice);
    }
    Ok(())
}

fn unavailable(e: Unavailable) -> RunError {
    RunError::Backend { what: "starting the SEV-SNP backend", source: Box::new(e) }
}

fn snp_error(what: &'static str) -> impl Fn(SnpError) -> RunError {
    move |e| match e {
        SnpError::Domain(cabin_kvm::domain::DomainError::Elf(e)) => RunError::InvalidImage(e.to_string()),
        e => RunError::Backend { what, source: Box::new(e) },
    }
}

fn host(what: &'static str) -> RunError {
    RunError::Host { what, source: std::io::Error::last_os_error() }
}

/// One ioctl on the device with a `#[repr(C)]` argument.
///
/// # Safety
///
/// `req` must be one of [`abi`]'s numbers and `T` the struct it names.
unsafe fn ioctl<T>(fd: &File, req: u64, arg: &mut T, what: &'static str) -> Result<(), RunError> {
    // SAFETY: per the caller, the kernel reads/writes exactly size_of::<T>()
    // bytes of `arg`, a live exclusive reference.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), req as libc::c_ulong, arg as *mut T) };
    if r < 0 {
        return Err(host(what));
    }
    Ok(())
}

/// A confined program at VMPL1 of this SEV-SNP guest.
#[derive(Debug)]
pub struct SnpDomain {
    dev: File,
    snp: SnpGuest,
    mem_size: u64,
    stop: Arc<SnpStopper>,
    /// The CPUID table `cpuid` at VMPL1 is answered from (SNP CPUID page
    /// format).
    cpuid: Vec<u8>,
}

/// Stops the program: records why, ends the ring gate's waits and kicks
/// the run thread out of `RUN` (the module returns `SIGNAL`).
#[derive(Debug, Default)]
struct SnpStopper {
    stopped: AtomicBool,
    cause: std::sync::Mutex<Option<String>>,
    shared: Arc<Shared>,
}

impl Stopper for SnpStopper {
    fn stop(&self, cause: StopCause) {
        let msg = cause.message();
        *self.cause.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
        self.stopped.store(true, Ordering::SeqCst);
        self.shared.worker_ended(Some(msg));
    }
}

/// The CPU features the VMPL1 vCPU runs with: the ones the guest kernel
/// sees (CPUID inside an SNP guest answers from the firmware-checked CPUID
/// page).
fn host_cpu_features() -> cabin_kvm::vcpu::CpuFeatures {
    use core::arch::x86_64::{__cpuid, __cpuid_count};
    let l1 = __cpuid(1);
    let l7 = __cpuid_count(7, 0);
    let ld = __cpuid_count(0xd, 0);
    cabin_kvm::vcpu::CpuFeatures {
        leaf1_edx: l1.edx,
        leaf1_ecx: l1.ecx,
        leaf7_ebx: l7.ebx,
        leaf7_ecx: l7.ecx,
        xcr0_supported: u64::from(ld.eax) | (u64::from(ld.edx) << 32),
    }
}

/// The C-bit position: CPUID 0x8000_001F EBX[5:0].
fn c_bit() -> u8 {
    (core::arch::x86_64::__cpuid(0x8000_001f).ebx & 0x3f) as u8
}

impl SnpDomain {
    /// Moves the built domain into the module's pages: the module's mapping
    /// replaces the builder's anonymous one at the same host address, so
    /// every host pointer (the program's view, the ring) stays valid.
    fn move_into_module(
        dev: &File,
        snp: &mut SnpGuest,
        mem_size: u64,
        sev_features: u64,
    ) -> Result<(), RunError> {
        let mut setup = abi::Setup { mem_size, flags: 0 };
        // SAFETY: SETUP takes a Setup.
        unsafe { ioctl(dev, abi::SETUP, &mut setup, "CABIN_VMPL_SETUP")? };
        let mut gpas = vec![0u64; (mem_size / abi::CHUNK) as usize];
        let mut chunks = abi::Chunks { count: gpas.len() as u64, uaddr: gpas.as_mut_ptr() as u64 };
        // SAFETY: GET_CHUNKS takes a Chunks whose uaddr holds `count` u64s.
        unsafe { ioctl(dev, abi::GET_CHUNKS, &mut chunks, "CABIN_VMPL_GET_CHUNKS")? };
        let reloc =
            Relocation::new(gpas, mem_size, c_bit()).map_err(snp_error("checking the module's pages"))?;
        let phys: &PhysMemory = &snp.guest.phys;
        let cr3 =
            relocate_page_tables(phys, snp.guest.cr3, &reloc).map_err(snp_error("relocating page tables"))?;
        // From here every page-table edit goes through the relocation.
        snp.guest.pt.lock().unwrap_or_else(|e| e.into_inner()).relocated(Arc::new(reloc));
        let len = mem_size as usize;
        // SAFETY: a new shared mapping of the device's pages at an address
        // the kernel picks; nothing else is affected.
        let tmp = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                dev.as_raw_fd(),
                0,
            )
        };
        if tmp == libc::MAP_FAILED {
            return Err(host("mapping /dev/cabin-vmpl"));
        }
        let mut page = vec![0u8; PAGE as usize];
        for (gpa, n) in snp.used_ranges() {
            for p in (gpa..gpa + n).step_by(PAGE as usize) {
                phys.read(p, &mut page).map_err(|e| snp_error("copying the domain")(e.into()))?;
                if page.iter().any(|&b| b != 0) {
                    // SAFETY: p + PAGE <= mem_size (read above succeeded on
                    // the same-sized builder memory); `tmp` maps mem_size bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            page.as_ptr(),
                            (tmp as *mut u8).add(p as usize),
                            page.len(),
                        )
                    };
                }
            }
        }
        // SAFETY: replaces the builder's mapping (mem_size bytes at
        // host_base, owned by `phys`, unmapped by its Drop) with the
        // device's pages holding the same contents; `tmp` is unmapped.
        unsafe {
            let at = phys.host_base() as *mut libc::c_void;
            let fixed = libc::mmap(
                at,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                dev.as_raw_fd(),
                0,
            );
            libc::munmap(tmp, len);
            if fixed != at {
                return Err(host("mapping /dev/cabin-vmpl over the domain"));
            }
        }
        for g in crate::plan::adjusts(&snp.grants) {
            let mut grant = abi::Grant { offset: g.gpa, len: g.size.bytes(), perms: g.perms.0, pad: [0; 7] };
            // SAFETY: GRANT takes a Grant.
            unsafe { ioctl(dev, abi::GRANT, &mut grant, "CABIN_VMPL_GRANT")? };
        }
        let vmsa = snp.vmsa(cr3, sev_features).to_page();
        let mut vcpu = abi::Vcpu { vmsa_uaddr: vmsa.as_ptr() as u64, vcpu: 0, pad: 0 };
        // SAFETY: CREATE_VCPU takes a Vcpu whose vmsa_uaddr holds 4096 bytes.
        unsafe { ioctl(dev, abi::CREATE_VCPU, &mut vcpu, "CABIN_VMPL_CREATE_VCPU")? };
        Ok(())
    }
}

impl SnpDomain {
    /// Runs vCPU 0 at VMPL1 until the program ends, serving each request
    /// VMPL1's proxy-kernel hands over in the calling area
    /// (`cabin_proxy_kernel::vc`, [`crate::vc`]).
    fn run_loop(&self, gate: &mut RingGate) -> Result<DomainEnd, RunError> {
        let g = &self.snp.guest;
        let area = vc_area_gpa(0);
        let table = CpuidTable::parse(&self.cpuid);
        let read = |rip: u64, buf: &mut [u8]| vc::read_code(g, rip, buf);
        let cx = vc::Context {
            read_code: &read,
            cpuid: table,
            xcr0: self.snp.cpu.xcr0.unwrap_or(1),
            osxsave: self.snp.cpu.cr4 & (1 << 18) != 0,
        };
        let tsc = || {
            // SAFETY: rdtsc reads the time-stamp counter; no memory access.
            unsafe { core::arch::x86_64::_rdtsc() }
        };
        loop {
            if self.stop.stopped.load(Ordering::SeqCst) {
                let why = self.stop.cause.lock().unwrap_or_else(|e| e.into_inner()).clone();
                return Ok(DomainEnd::Violation(why.unwrap_or_else(|| "stopped".into())));
            }
            if let Some(s) = gate.interrupted() {
                return Ok(match s {
                    Served::Exit(c) => DomainEnd::Exited(c),
                    Served::Violation(m) => DomainEnd::Violation(m),
                    _ => DomainEnd::Violation("stopped".into()),
                });
            }
            let mut run = abi::Run { vcpu: 0, ..abi::Run::default() };
            // SAFETY: RUN takes a Run.
            unsafe { ioctl(&self.dev, abi::RUN, &mut run, "CABIN_VMPL_RUN")? };
            match run.reason {
                abi::exit_reason::SIGNAL => continue,
                abi::exit_reason::FAULT => {
                    return Ok(DomainEnd::Fault {
                        signo: libc::SIGSEGV,
                        addr: Some(run.exit_info2),
                        rip: Some(run.rip),
                        code: None,
                        report: Some(format!(
                            "VMPL1 fault (exit code {:#x}) at rip {:#x}",
                            run.exit_code, run.rip
                        )),
                    });
                }
                abi::exit_reason::VMGEXIT if run.exit_code == ghcb::exit::TERM_REQUEST => {
                    return Ok(DomainEnd::Exited((run.rdi & 0xff) as i32));
                }
                abi::exit_reason::VMGEXIT => {
                    // Copy the request once; ring 3 cannot reach the area,
                    // but nothing in it is trusted beyond its checks.
                    let mut page = [0u8; PAGE as usize];
                    g.phys
                        .read(area, &mut page)
                        .map_err(|e| snp_error("reading the calling area")(e.into()))?;
                    let req = match vc::read_request(&page) {
                        Ok(r) => r,
                        Err(e) => {
                            return Ok(DomainEnd::Violation(format!(
                                "VMPL1 exited to VMPL0 without a request ({e:?}, exit code {:#x}, rip {:#x})",
                                run.exit_code, run.rip
                            )))
                        }
                    };
                    match vc::serve(&req, vc::decide(&req, &cx), g, gate, &tsc) {
                        vc::Step::Resume(set) => {
                            vc::write_response(&mut page, &set);
                            g.phys
                                .write(area, &page)
                                .map_err(|e| snp_error("writing the calling area")(e.into()))?;
                        }
                        vc::Step::End(end) => return Ok(end.into()),
                        vc::Step::Bug(m) => {
                            return Err(RunError::Backend {
                                what: "running the VMPL1 domain",
                                source: m.into(),
                            })
                        }
                    }
                }
                _ => {
                    return Err(RunError::Backend {
                        what: "running the VMPL1 domain",
                        source: format!(
                            "VMPL1 halted or shut down (exit code {:#x}, rip {:#x})",
                            run.exit_code, run.rip
                        )
                        .into(),
                    });
                }
            }
        }
    }
}

impl Domain for SnpDomain {
    const BACKEND: &'static str = "snp";

    fn available() -> Result<(), RunError> {
        available().map_err(unavailable)
    }

    fn execute_only(image: &ElfFile<'_>) -> ExecuteOnly {
        if image.exec_segments().all(|s| s.flags == PF_X) {
            ExecuteOnly {
                enforced: true,
                notice: "cabin: execute-only code enforced by the RMP (VMPL1 execute-user only)",
            }
        } else {
            ExecuteOnly { enforced: false, notice: "cabin: the image has readable code: VMPL1 may read it" }
        }
    }

    fn build(image: &ElfFile<'_>, spec: &DomainSpec) -> Result<SnpDomain, RunError> {
        let dev = File::options()
            .read(true)
            .write(true)
            .open(abi::DEVICE)
            .map_err(|e| unavailable(Unavailable::Open(e.to_string())))?;
        let mut info = abi::Info::default();
        // SAFETY: GET_INFO takes an Info.
        unsafe { ioctl(&dev, abi::GET_INFO, &mut info, "CABIN_VMPL_GET_INFO")? };
        if info.version != abi::VERSION || info.vmpl != 0 {
            let why =
                format!("ABI version {} at VMPL{} (want {} at VMPL0)", info.version, info.vmpl, abi::VERSION);
            return Err(unavailable(Unavailable::Module(why)));
        }
        let sev_features = crate::vmsa::sev_features_from_status(info.sev_status)
            .map_err(|e| unavailable(Unavailable::Module(e.to_string())))?;
        if info.hv_features & ghcb::hv_features::AP_CREATION == 0 {
            return Err(unavailable(Unavailable::Module("the hypervisor offers no AP creation".into())));
        }
        let cfg = KvmConfig::for_spec(spec);
        let mut random = [0u8; 16];
        // SAFETY: getrandom writes at most 16 bytes into `random`.
        let n = unsafe { libc::getrandom(random.as_mut_ptr().cast(), random.len(), 0) };
        if n != random.len() as isize {
            return Err(host("getrandom for AT_RANDOM"));
        }
        let f = host_cpu_features();
        let mut snp = build(image.data, cfg.mem_size, &cfg.program, random, &f)
            .map_err(snp_error("building the domain"))?;
        SnpDomain::move_into_module(&dev, &mut snp, cfg.mem_size, sev_features)?;
        let cpuid = crate::vc::cpuid_table_from(&|leaf, sub| {
            let r = core::arch::x86_64::__cpuid_count(leaf, sub);
            [r.eax, r.ebx, r.ecx, r.edx]
        });
        Ok(SnpDomain { dev, snp, mem_size: cfg.mem_size, stop: Arc::default(), cpuid })
    }

    fn memory(&self) -> &GuestMemory {
        &self.snp.guest.view
    }

    fn ring(&self) -> RingPtr {
        self.snp.guest.ring
    }

    fn spawn_thread(&self, _start: &ThreadStart) -> Result<SpawnedBy, RunError> {
        // One VMPL1 vCPU for now (docs/snp.md, "Not done").
        Ok(SpawnedBy::Refused { errno: libc::EAGAIN })
    }

    fn entry(&self) -> u64 {
        self.snp.guest.entry
    }

    fn stopper(&self) -> Arc<dyn Stopper> {
        self.stop.clone()
    }

    fn start(&mut self) -> Result<(), RunError> {
        Ok(())
    }

    fn program_pid(&self) -> u32 {
        std::process::id()
    }

    fn cpu_clock(&self) -> CpuClock {
        CpuClock::RunThread
    }

    fn run(&self) -> Result<DomainEnd, RunError> {
        let shared = &self.stop.shared;
        shared.enter_vcpu(0);
        let end = self.run_loop(&mut RingGate::new(self.snp.guest.ring, shared.clone(), 0));
        shared.leave_vcpu(0);
        end
    }

    fn fixed_bytes(&self) -> u64 {
        let g = &self.snp.guest;
        self.mem_size.saturating_sub(g.brk_len.saturating_add(g.arena_len))
    }

    fn stats(&self, _worker: &WorkerStats) -> Vec<(&'static str, serde_json::Value)> {
        vec![("snp_grants", (self.snp.grants.len() as u64).into())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_says_why_not() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        std::fs::create_dir_all(r.join("proc")).expect("mkdir");
        std::fs::create_dir_all(r.join("dev")).expect("mkdir");
        std::fs::write(r.join("proc/cpuinfo"), "flags\t\t: fpu sse2 svm\n").expect("write");
        assert_eq!(available_in(r), Err(Unavailable::NoSnp));
        std::fs::write(r.join("proc/cpuinfo"), "flags\t\t: fpu sev sev_es sev_snp\n").expect("write");
        assert_eq!(available_in(r), Err(Unavailable::NoDevice));
        std::fs::write(r.join("dev/cabin-vmpl"), "").expect("write");
        assert_eq!(available_in(r), Ok(()));
        std::fs::write(r.join("proc/cpuinfo"), "").expect("write");
        std::fs::write(r.join("dev/sev-guest"), "").expect("write");
        assert_eq!(available_in(r), Ok(()), "/dev/sev-guest alone says SNP guest");
        // Each message is one line with a help.
        for e in [Unavailable::NoSnp, Unavailable::NoDevice] {
            let m = e.to_string();
            assert!(!m.contains('\n') && m.contains("help:"), "{m}");
        }
    }
}
