//! Runs a Cabin image under the process backend (a stand-in for
//! `cabinc run` while testing the monitor on its own).
//!
//! Usage: run_confined [--allow-read DIR] [--allow-write DIR] [--env K=V]
//!        [--stats FILE] IMAGE [ARGS...]

use cabin_monitor::{process, RunConfig};

fn main() {
    let mut cfg = RunConfig::default();
    let mut it = std::env::args().skip(1);
    let mut image = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--allow-read" => cfg.allow_read.push(it.next().unwrap_or_default().into()),
            "--allow-write" => cfg.allow_write.push(it.next().unwrap_or_default().into()),
            "--env" => cfg.env.push(it.next().unwrap_or_default()),
            "--stats" => cfg.stats = it.next().map(Into::into),
            "--quiet" => cfg.quiet = true,
            "--force-trap-path" => cfg.force_trap_path = true,
            _ => {
                image = Some(a);
                cfg.args = it.by_ref().collect();
                break;
            }
        }
    }
    let Some(image) = image else {
        eprintln!("usage: run_confined [options] IMAGE [ARGS...]");
        std::process::exit(125);
    };
    let bytes = match std::fs::read(&image) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("cabin: cannot read {image}: {e}");
            std::process::exit(127);
        }
    };
    cfg.args.insert(0, image);
    match process::run(&bytes, &cfg) {
        Ok(o) => std::process::exit(o.exit_code),
        Err(e) => {
            eprintln!("cabin: {e}");
            std::process::exit(125);
        }
    }
}
