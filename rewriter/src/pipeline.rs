//! The whole build, from input bytes to image bytes.

use std::time::{Duration, Instant};

use cabin_image::elf::{ElfError, ElfFile, ElfKind};
use cabin_image::measure::DIGEST_LEN;
use thiserror::Error;

use crate::analysis::{self, AnalysisError};
use crate::emit::{self, CabinLayout, EmitError, EmitRequest};
use crate::libos_blob::{self, BlobError};
use crate::plan::{PatchPlan, Tactic, TrapReason};
use crate::trampoline::{self, TrampolineError};

/// Choices the user makes.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Keep code readable when the program reads its own code.
    pub allow_readable_code: bool,
    /// Leave every site as a trap site (exercises the slow path).
    pub trap_all_sites: bool,
}

/// Where the build is, for progress display.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// Bytes of code disassembled so far, of the total.
    Disassembling(usize, usize),
    /// Choosing patch windows.
    Planning,
    /// Encoding trampolines.
    Trampolines,
    /// Writing the ELF.
    Emitting,
    /// Computing the launch digest.
    Measuring,
}

/// Why a build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The input is not a usable static executable.
    #[error(transparent)]
    Elf(#[from] ElfError),
    /// The input is already a Cabin image.
    #[error("the input is already a Cabin image; help: build from the original executable")]
    AlreadyImage,
    /// The analysis refused the input.
    #[error(transparent)]
    Analysis(#[from] AnalysisError),
    /// The program reads its own code.
    #[error("the program reads its own code as data at {}, so its code cannot be execute-only; help: pass --allow-readable-code to keep code readable (the image records that execute-only is off)", list(.0))]
    ReadsCode(Vec<(u64, u64)>),
    /// Trampoline encoding failed.
    #[error(transparent)]
    Trampoline(#[from] TrampolineError),
    /// Writing the image failed.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The embedded libos is unusable (a broken build of cabinc).
    #[error("embedded libos is unusable: {0}")]
    Libos(#[from] BlobError),
}

fn list(reads: &[(u64, u64)]) -> String {
    let mut s: Vec<String> =
        reads.iter().take(8).map(|(at, target)| format!("{at:#x} (reads {target:#x})")).collect();
    if reads.len() > 8 {
        s.push(format!("and {} more", reads.len() - 8));
    }
    s.join(", ")
}

/// Counters for the build report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    /// Input kind.
    pub kind: ElfKind,
    /// Sites found.
    pub sites_total: usize,
    /// Sites rewritten.
    pub rewritten: usize,
    /// Trap sites.
    pub trap: usize,
    /// xrstor-family instructions noted.
    pub forbidden: usize,
    /// Code segments are execute-only.
    pub execute_only: bool,
    /// Time spent in analysis.
    pub analysis_time: Duration,
    /// Time of the whole build.
    pub total_time: Duration,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image file.
    pub image: Vec<u8>,
    /// The plan, as decided (after any demotions), as JSON.
    pub plan_json: String,
    /// The plan itself.
    pub plan: PatchPlan,
    /// Launch measurement.
    pub measurement: [u8; DIGEST_LEN],
    /// Counters.
    pub summary: Summary,
}

/// The SHA-256 of an input executable: what its image records and what
/// the image cache is keyed by.
pub fn input_sha256(input: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(input).into()
}

/// Builds an image from input bytes.
pub fn build_image(
    input: &[u8],
    opts: &BuildOptions,
    progress: &mut dyn FnMut(Stage),
) -> Result<BuildOutput, BuildError> {
    let t0 = Instant::now();
    let elf = ElfFile::parse(input)?;
    if cabin_image::image::has_cabin_note(&elf) {
        return Err(BuildError::AlreadyImage);
    }
    let code: usize = elf.exec_segments().map(|s| s.filesz as usize).sum();
    progress(Stage::Disassembling(0, code));
    let mut plan = analysis::analyze(&elf)?;
    let analysis_time = t0.elapsed();
    progress(Stage::Planning);
    if !plan.code_reads.is_empty() && !opts.allow_readable_code {
        return Err(BuildError::ReadsCode(plan.code_reads.iter().map(|r| (r.addr, r.target)).collect()));
    }
    let execute_only = plan.code_reads.is_empty();
    if opts.trap_all_sites {
        for site in plan.sites.iter_mut().filter(|s| s.tactic == Tactic::Rewritten) {
            site.demote(TrapReason::Requested);
        }
        plan.recount();
    }
    let libos = libos_blob::libos()?;
    let layout = CabinLayout::new(&elf, &libos);
    progress(Stage::Trampolines);
    let tramps =
        trampoline::build(&mut plan, &elf, layout.tramp_base, layout.libos_base + libos.syscall_entry)?;
    plan.recount();
    progress(Stage::Emitting);
    let sites = plan.site_records(&tramps.site_trampolines);
    let forbidden = plan.forbidden_records();
    let patches: Vec<(u64, Vec<u8>)> = tramps.patches.iter().map(|p| (p.addr, p.bytes.clone())).collect();
    let req = EmitRequest {
        elf: &elf,
        libos: &libos,
        layout,
        patches: &patches,
        trampolines: &tramps.code,
        sites: &sites,
        forbidden: &forbidden,
        execute_only,
        input_digest: Some(input_sha256(input)),
    };
    progress(Stage::Measuring);
    let out = emit::emit(&req)?;
    let rewritten = plan.sites.iter().filter(|s| s.tactic == Tactic::Rewritten).count();
    let summary = Summary {
        kind: elf.kind,
        sites_total: plan.sites.len(),
        rewritten,
        trap: plan.sites.len() - rewritten,
        forbidden: plan.forbidden.len(),
        execute_only,
        analysis_time,
        total_time: t0.elapsed(),
    };
    Ok(BuildOutput {
        image: out.bytes,
        plan_json: plan.to_json(),
        plan,
        measurement: out.measurement,
        summary,
    })
}
