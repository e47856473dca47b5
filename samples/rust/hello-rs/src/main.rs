//! A Cabin sample in Rust: reads all of standard input, reports line, word
//! and byte counts on stdout, echoes the lines reversed and upper-cased,
//! writes a note to stderr and exits with the status given as the first
//! argument (default 3). With the argument `panic` it panics in a thread and
//! in place and recovers (unwinding). Used by the passthrough tests.

use std::io::{self, Read, Write};
use std::process::ExitCode;

/// Unwinding through the program's own code (eh_frame must stay valid in an
/// image): a panic in a thread, seen by `join`, and one caught in place.
fn panics() -> ExitCode {
    // The default hook prints thread ids, which differ from run to run.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        eprintln!("hello-rs: panic: {msg}");
    }));
    let worker = std::thread::spawn(|| -> u32 { panic!("worker thread gives up") });
    let joined = worker.join();
    println!("worker thread panicked: {}", joined.is_err());
    let caught = std::panic::catch_unwind(|| {
        let v: Vec<u32> = Vec::new();
        v[std::hint::black_box(3)]
    });
    println!("index panic caught: {}", caught.is_err());
    let handles: Vec<_> =
        (0..4u64).map(|i| std::thread::spawn(move || (0..100_000u64).map(|x| x * i).sum::<u64>())).collect();
    let sums: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap_or(0)).collect();
    println!("thread sums: {sums:?}");
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("panic") {
        return panics();
    }
    let code: u8 = match std::env::args().nth(1) {
        Some(arg) => match arg.parse() {
            Ok(code) => code,
            Err(_) => {
                eprintln!("hello-rs: exit status must be 0..=255, got {arg:?}");
                return ExitCode::from(2);
            }
        },
        None => 3,
    };
    let mut input = Vec::new();
    if let Err(err) = io::stdin().read_to_end(&mut input) {
        eprintln!("hello-rs: reading stdin: {err}");
        return ExitCode::from(1);
    }
    let text = String::from_utf8_lossy(&input);
    let lines = text.lines().count();
    let words = text.split_whitespace().count();
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = (|| -> io::Result<()> {
        writeln!(out, "hello from Rust: {lines} lines, {words} words, {} bytes", input.len())?;
        for line in text.lines().rev() {
            writeln!(out, "{}", line.to_uppercase())?;
        }
        out.flush()
    })();
    if let Err(err) = result {
        eprintln!("hello-rs: writing stdout: {err}");
        return ExitCode::from(1);
    }
    eprintln!("hello-rs: exiting with status {code}");
    ExitCode::from(code)
}
