//! Threads the way Rust programs write them: a pool of workers fed over an
//! mpsc channel, results sent back on another, a shared counter under a
//! Mutex, and a Condvar handshake. The output is the same every run.

use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

fn main() {
    // Workers: square the numbers they receive, send them back.
    let (jobs_tx, jobs_rx) = mpsc::channel::<u64>();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    let (done_tx, done_rx) = mpsc::channel::<(usize, u64)>();
    let counter = Arc::new(Mutex::new(0u64));
    let mut workers = Vec::new();
    for id in 0..4 {
        let rx = Arc::clone(&jobs_rx);
        let tx = done_tx.clone();
        let counter = Arc::clone(&counter);
        workers.push(thread::spawn(move || loop {
            let job = rx.lock().expect("jobs lock").recv();
            match job {
                Ok(n) => {
                    *counter.lock().expect("counter") += 1;
                    tx.send((id, n * n)).expect("send result");
                }
                Err(_) => break,
            }
        }));
    }
    drop(done_tx);
    for n in 1..=1000 {
        jobs_tx.send(n).expect("send job");
    }
    drop(jobs_tx);
    let sum: u64 = done_rx.iter().map(|(_, sq)| sq).sum();
    for w in workers {
        w.join().expect("worker");
    }
    println!("sum of squares 1..=1000: {sum}");
    println!("jobs counted: {}", *counter.lock().expect("counter"));

    // A Condvar handshake: the main thread waits until a thread flips the flag.
    let pair = Arc::new((Mutex::new(false), Condvar::new()));
    let pair2 = Arc::clone(&pair);
    let t = thread::Builder::new()
        .name("flipper".into())
        .spawn(move || {
            let (lock, cvar) = &*pair2;
            *lock.lock().expect("flag") = true;
            cvar.notify_one();
            thread::current().name().map(str::to_owned)
        })
        .expect("spawn");
    let (lock, cvar) = &*pair;
    let mut ready = lock.lock().expect("flag");
    while !*ready {
        ready = cvar.wait(ready).expect("wait");
    }
    drop(ready);
    println!("condvar handshake from {:?}", t.join().expect("join"));

    // Scoped threads borrowing the stack.
    let data: Vec<u64> = (1..=100).collect();
    let halves: Vec<u64> = thread::scope(|s| {
        let hs: Vec<_> = data.chunks(50).map(|c| s.spawn(move || c.iter().sum::<u64>())).collect();
        hs.into_iter().map(|h| h.join().expect("scoped")).collect()
    });
    println!("scoped sums {halves:?}");
    println!("available parallelism ok: {}", thread::available_parallelism().map(|n| n.get() >= 1).unwrap_or(false));
}
