//! `cabinc inspect` and `cabinc measure`.

use std::process::ExitCode;

use anyhow::{Context, Result};
use cabin_abi::note::{ForbiddenFix, ForbiddenKind, Tactic};
use cabin_abi::pkru::{unchecked_xrstor, PkruWriter};
use cabin_image::elf::{ElfKind, PF_X};
use cabin_image::image::Image;
use serde_json::json;

use crate::{Format, InspectArgs, MeasureArgs};

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The inspect report as JSON.
pub fn report(img: &Image<'_>) -> serde_json::Value {
    let h = &img.manifest.header;
    let sites: Vec<_> = img.manifest.sites().collect();
    let rewritten = sites.iter().filter(|s| s.tactic == Tactic::Rewritten).count();
    let list: Vec<_> = sites
        .iter()
        .map(|s| {
            json!({
                "addr": format!("{:#x}", s.addr),
                "kind": format!("{:?}", s.kind).to_lowercase(),
                "tactic": match s.tactic { Tactic::Rewritten => "rewritten", Tactic::Trap => "trap" },
                "reason": s.reason.as_str(),
                "trampoline": (s.trampoline != 0).then(|| format!("{:#x}", s.trampoline)),
            })
        })
        .collect();
    let forbidden: Vec<_> = img
        .manifest
        .forbidden()
        .map(|f| {
            json!({
                "addr": format!("{:#x}", f.addr),
                "insn": f.kind.as_str(),
                "fix": match f.fix { ForbiddenFix::Left => "left", ForbiddenFix::Masked => "masked", ForbiddenFix::Privileged => "privileged" },
                "explanation": explain_forbidden(f.kind, f.fix),
            })
        })
        .collect();
    // The run-time check the process backend makes (every byte offset of
    // the code, whatever the manifest says): the first instruction that
    // could change PKRU unchecked.
    let pkru_writer =
        img.elf.exec_segments().find_map(|s| unchecked_xrstor(img.elf.bytes(s), s.vaddr)).map(|w| match w {
            PkruWriter::Wrpkru(a) => format!("wrpkru at {a:#x}"),
            PkruWriter::UncheckedXrstor(a) => format!("xrstor without the PKRU check at {a:#x}"),
        });
    let segments: Vec<_> = img
        .elf
        .loads()
        .map(|s| {
            json!({
                "vaddr": format!("{:#x}", s.vaddr),
                "memsz": s.memsz,
                "filesz": s.filesz,
                "perms": s.perms(),
                "cabin": s.vaddr >= h.cabin_vaddr && s.vaddr < h.cabin_vaddr + h.cabin_size,
            })
        })
        .collect();
    let computed = img.compute_measurement().ok();
    json!({
        "format_version": h.format_version,
        "libos_version": h.libos_version,
        "measurement": hex::encode(img.measurement),
        "measurement_valid": computed.map(|c| c == img.measurement),
        "input_sha256": img.manifest.input_digest.map(hex::encode),
        "kind": match img.elf.kind { ElfKind::Exec => "exec", ElfKind::StaticPie => "static-pie" },
        "entry": format!("{:#x}", h.entry),
        "original_entry": format!("{:#x}", h.original_entry),
        "execute_only": img.execute_only(),
        "code_segments_execute_only": img.elf.exec_segments().all(|s| s.flags == PF_X),
        "sites": {
            "total": sites.len(),
            "rewritten": rewritten,
            "trap": sites.len() - rewritten,
            "list": list,
        },
        "forbidden": forbidden,
        "unchecked_pkru_writer": pkru_writer,
        "segments": segments,
    })
}

pub fn inspect(a: &InspectArgs) -> Result<ExitCode> {
    let data = read(&a.image)?;
    let img =
        Image::parse(&data).with_context(|| format!("{} is not a valid Cabin image", a.image.display()))?;
    let r = report(&img);
    match a.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Text => print_text(&a.image, &r),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(path: &std::path::Path, r: &serde_json::Value) {
    println!("image:           {}", path.display());
    println!("format version:  {}", r["format_version"]);
    println!("kind:            {}", r["kind"].as_str().unwrap_or("?"));
    println!(
        "entry:           {} (original {})",
        r["entry"].as_str().unwrap_or("?"),
        r["original_entry"].as_str().unwrap_or("?")
    );
    println!("execute-only:    {}", if r["execute_only"] == true { "yes" } else { "no (readable code)" });
    let valid = match r["measurement_valid"].as_bool() {
        Some(true) => "matches the image",
        Some(false) => "DOES NOT match the image (modified after build)",
        None => "could not be recomputed",
    };
    println!("measurement:     {} ({valid})", r["measurement"].as_str().unwrap_or("?"));
    println!("built from:      sha256 {}", r["input_sha256"].as_str().unwrap_or("(not recorded)"));
    let s = &r["sites"];
    println!("sites:           {} total, {} rewritten, {} trap", s["total"], s["rewritten"], s["trap"]);
    for site in s["list"].as_array().into_iter().flatten().filter(|x| x["tactic"] == "trap") {
        println!(
            "  trap {}  {}",
            site["addr"].as_str().unwrap_or("?"),
            site["reason"].as_str().unwrap_or("?")
        );
    }
    let forb = r["forbidden"].as_array().map(Vec::len).unwrap_or(0);
    println!("forbidden:       {forb}");
    for f in r["forbidden"].as_array().into_iter().flatten() {
        println!(
            "  {}  {}: {}",
            f["addr"].as_str().unwrap_or("?"),
            f["insn"].as_str().unwrap_or("?"),
            f["explanation"].as_str().unwrap_or("?")
        );
    }
    match r["unchecked_pkru_writer"].as_str() {
        None => println!("PKRU writers:    none unchecked (execute-only can be enforced where the CPU has protection keys)"),
        Some(w) => println!(
            "PKRU writers:    {w}: the process backend will not claim execute-only for this image \
             on a CPU with protection keys"
        ),
    }
    println!("segments:");
    for seg in r["segments"].as_array().into_iter().flatten() {
        println!(
            "  {:>18}  {:>10}  {}{}",
            seg["vaddr"].as_str().unwrap_or("?"),
            seg["memsz"],
            seg["perms"].as_str().unwrap_or("?"),
            if seg["cabin"] == true { "  (cabin)" } else { "" }
        );
    }
}

pub fn measure(a: &MeasureArgs) -> Result<ExitCode> {
    let data = read(&a.image)?;
    let img =
        Image::parse(&data).with_context(|| format!("{} is not a valid Cabin image", a.image.display()))?;
    let computed = img.verify_measurement().with_context(|| a.image.display().to_string())?;
    match a.format {
        Format::Text => println!("{}", hex::encode(computed)),
        Format::Json => println!("{}", json!({ "image": a.image, "measurement": hex::encode(computed) })),
    }
    Ok(ExitCode::SUCCESS)
}

/// What a forbidden-instruction line means, in words (`cabinc inspect`).
fn explain_forbidden(kind: ForbiddenKind, fix: ForbiddenFix) -> &'static str {
    match (kind, fix) {
        (ForbiddenKind::Xrstors, _) => {
            "supervisor-only XSAVE restore: it faults (#GP) in ring 3 whatever it asks for, so it \
             cannot change PKRU; left as it is, execute-only is not affected"
        }
        (_, ForbiddenFix::Masked) => {
            "XSAVE restore that could load PKRU (the register that keeps code unreadable): rewritten \
             to a trampoline that never requests PKRU and ends the program if PKRU changed anyway; \
             execute-only is not affected"
        }
        (ForbiddenKind::Wrpkru, _) => "writes PKRU: images with it are refused at build",
        _ => {
            "XSAVE restore that could load PKRU, left in place (inside another instruction, or no \
             room for a jump): where XCR0 enables PKRU (process backend on a CPU with protection \
             keys) execute-only is not claimed for this image; the kvm backend's XCR0 has no PKRU, \
             so there it cannot load it"
        }
    }
}
