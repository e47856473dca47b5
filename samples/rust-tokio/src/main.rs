//! A tokio multi-thread runtime: tasks on several worker threads sleep on
//! timers, an interval ticks, a channel carries results, then the program
//! waits for Ctrl-C (`tokio::signal::ctrl_c`, whose driver is a Unix
//! socket pair under epoll) and shuts down gracefully: the workers still
//! running are told to stop through a watch channel and report back.
//! Everything printed is deterministic, so a confined run can be compared
//! with the native one.

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{interval, sleep, timeout};

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // Timers on the worker threads: the results come back in any order,
    // the summary is order-free.
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        tasks.push(tokio::spawn(async move {
            sleep(Duration::from_millis(5 * (8 - i))).await;
            i * i
        }));
    }
    let mut sum = 0;
    for t in tasks {
        sum += t.await.expect("task");
    }
    println!("8 timer tasks done, sum of squares {sum}");

    let mut tick = interval(Duration::from_millis(3));
    for _ in 0..5 {
        tick.tick().await;
    }
    println!("interval ticked 5 times");

    // Long-running workers that stop when told to; each says when it has
    // run its first round, so every one has run before Ctrl-C is awaited.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<(usize, u64)>(4);
    let (ready_tx, mut ready_rx) = mpsc::channel::<usize>(4);
    for w in 0..3usize {
        let mut stop = stop_rx.clone();
        let done = done_tx.clone();
        let ready = ready_tx.clone();
        tokio::spawn(async move {
            sleep(Duration::from_millis(2)).await;
            let mut rounds = 1u64;
            ready.send(w).await.expect("ready");
            drop(ready);
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    _ = sleep(Duration::from_millis(2)) => rounds += 1,
                }
            }
            // Rounds depend on timing: report only that some ran.
            done.send((w, rounds.min(1))).await.expect("report");
        });
    }
    drop(done_tx);
    drop(ready_tx);
    let mut running = 0;
    while running < 3 && ready_rx.recv().await.is_some() {
        running += 1;
    }
    println!("{running} workers running");

    // Register the Ctrl-C handler before saying that we wait for it: the
    // first poll of ctrl_c() installs the signal handler.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    tokio::select! {
        biased;
        r = &mut ctrl_c => panic!("ctrl_c before it was sent: {r:?}"),
        _ = std::future::ready(()) => {}
    }
    println!("waiting for ctrl-c");
    match timeout(Duration::from_secs(60), ctrl_c).await {
        Ok(Ok(())) => println!("got ctrl-c, shutting down"),
        Ok(Err(e)) => {
            println!("ctrl_c failed: {e}");
            std::process::exit(2);
        }
        Err(_) => {
            println!("no ctrl-c within 60 s");
            std::process::exit(3);
        }
    }

    stop_tx.send(true).expect("stop");
    let mut stopped = Vec::new();
    while let Some((w, ran)) = done_rx.recv().await {
        stopped.push((w, ran));
    }
    stopped.sort();
    for (w, ran) in stopped {
        println!("worker {w} stopped (ran: {})", ran == 1);
    }
    println!("shutdown complete");
    std::process::exit(7);
}
