//! `http-server ADDR:PORT [WORKERS]`: an HTTP/1.1 server on hyper and tokio's
//! multi-thread runtime (WORKERS worker threads, default 2) with fixed routes,
//! for Cabin's networking tests and the `http` catalog benchmark (issue 19):
//!
//! - `GET /` answers `Hello, world!` (13 bytes);
//! - `GET /bytes/N` answers N bytes (N <= 16 MiB) of a fixed pattern;
//! - anything else is `404` with `not found\n`.
//!
//! It prints `listening on ADDR:PORT` (the bound address, so port 0 shows the
//! port chosen) once the socket listens, and on SIGTERM or SIGINT stops
//! accepting, prints `served N requests` and exits 0. Exit status 2 is a usage
//! error, 1 a failure to bind or listen (the error is printed).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

/// The largest `/bytes/N` body.
const MAX_BYTES: usize = 16 << 20;

fn usage(msg: &str) -> ! {
    eprintln!("http-server: {msg}\nusage: http-server ADDR:PORT [WORKERS]");
    std::process::exit(2);
}

/// The body of `/bytes/N`: `0123456789` repeated and cut at N.
fn pattern(n: usize) -> Bytes {
    Bytes::from((0..n).map(|i| b'0' + (i % 10) as u8).collect::<Vec<u8>>())
}

fn answer(req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: Bytes| {
        let mut r = Response::new(Full::new(body));
        *r.status_mut() = status;
        r
    };
    let not_found = || reply(StatusCode::NOT_FOUND, Bytes::from_static(b"not found\n"));
    if req.method() != Method::GET {
        return reply(StatusCode::METHOD_NOT_ALLOWED, Bytes::from_static(b"method not allowed\n"));
    }
    match req.uri().path() {
        "/" => reply(StatusCode::OK, Bytes::from_static(b"Hello, world!")),
        p => match p.strip_prefix("/bytes/").map(str::parse::<usize>) {
            Some(Ok(n)) if n <= MAX_BYTES => reply(StatusCode::OK, pattern(n)),
            _ => not_found(),
        },
    }
}

async fn serve(listener: TcpListener, served: Arc<AtomicU64>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: say so and go on (a load generator may
                // briefly hold many connections).
                eprintln!("http-server: accept: {e}");
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let served = served.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                served.fetch_add(1, Ordering::Relaxed);
                let resp = answer(&req);
                async move { Ok::<_, Infallible>(resp) }
            });
            // A client that goes away mid-request is not an error of the server.
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 2 || args.len() > 3 {
        usage("expected an address and optionally a worker count");
    }
    let addr: SocketAddr =
        args[1].parse().unwrap_or_else(|_| usage(&format!("`{}` is not an ADDR:PORT", args[1])));
    let workers: usize = match args.get(2) {
        None => 2,
        Some(w) => match w.parse() {
            Ok(n) if (1..=256).contains(&n) => n,
            _ => usage(&format!("`{w}` is not a worker count (1-256)")),
        },
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("http-server: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        let listener = match TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("http-server: cannot listen on {addr}: {e}");
                return 1;
            }
        };
        let (mut term, mut int) = match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("http-server: cannot watch SIGTERM/SIGINT: {e}");
                return 1;
            }
        };
        let bound = listener.local_addr().unwrap_or(addr);
        println!("listening on {bound}");
        let _ = std::io::stdout().flush();
        let served = Arc::new(AtomicU64::new(0));
        tokio::select! {
            _ = serve(listener, served.clone()) => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        println!("served {} requests", served.load(Ordering::Relaxed));
        0
    });
    let _ = std::io::stdout().flush();
    // Connections still open are not waited for.
    std::process::exit(code);
}
