//! Sample program for `cargo cabin`: prints a greeting (from $GREETING when set), its arguments
//! and, with `--file PATH`, the length of that file; `--argv0` prints argv[0]; `--exit N` ends
//! with status N.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greeting = std::env::var("GREETING").unwrap_or_else(|_| "hi".to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{greeting} from rust-cargo-cabin: {} argument(s): {:?}", args.len(), args);
    let mut code = 0;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next()) {
            ("--file", Some(p)) => {
                match std::fs::read(p) {
                    Ok(b) => {
                        let _ = writeln!(out, "{p}: {} bytes", b.len());
                    }
                    Err(e) => {
                        eprintln!("cannot read {p}: {e}");
                        code = 1;
                    }
                }
                it.next();
            }
            ("--argv0", _) => {
                let _ = writeln!(out, "argv[0]: {}", std::env::args().next().unwrap_or_default());
            }
            ("--exit", Some(n)) => {
                code = n.parse().unwrap_or(2);
                it.next();
            }
            _ => {}
        }
    }
    let _ = out.flush();
    std::process::exit(code);
}
