//! `http-client URL`: fetches `http://HOST:PORT/PATH` with one plain HTTP/1.1
//! GET over `std::net` (`Connection: close`) and writes the body to stdout,
//! nothing else. The body is read by `Content-Length`, by chunked transfer
//! coding, or to the end of the stream. Exit status: 0 for a 2xx answer, 1 for
//! any other status (printed on stderr), 2 for a usage error, 3 for a
//! connection or protocol error (printed on stderr).

use std::io::{Read, Write};
use std::net::TcpStream;

/// At most this much of an answer is read (headers and body).
const MAX_RESPONSE: u64 = 64 << 20;

fn fail(code: i32, msg: &str) -> ! {
    eprintln!("http-client: {msg}");
    std::process::exit(code);
}

/// Splits `http://HOST[:PORT][/PATH]` into the authority and the path.
fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (auth, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if auth.is_empty() {
        return None;
    }
    let auth = if auth.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !auth.ends_with(']')
    {
        auth.to_string()
    } else {
        format!("{auth}:80")
    };
    Some((auth, path.to_string()))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes a chunked body; `None` when it is malformed or cut short.
fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = find(b, b"\r\n")?;
        let line = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        if b.len() < size + 2 || &b[size..size + 2] != b"\r\n" {
            return None;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 2 {
        fail(2, "usage: http-client http://HOST:PORT/PATH");
    }
    let Some((auth, path)) = parse_url(&args[1]) else {
        fail(2, &format!("`{}` is not an http:// URL", args[1]));
    };
    let mut s =
        TcpStream::connect(auth.as_str()).unwrap_or_else(|e| fail(3, &format!("connect {auth}: {e}")));
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {auth}\r\nUser-Agent: cabin-http-client\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap_or_else(|e| fail(3, &format!("send: {e}")));
    let mut resp = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut resp).unwrap_or_else(|e| fail(3, &format!("receive: {e}")));
    let Some(end) = find(&resp, b"\r\n\r\n") else {
        fail(3, "the answer has no end of headers");
    };
    let head = String::from_utf8_lossy(&resp[..end]).into_owned();
    let body = &resp[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| fail(3, &format!("bad status line `{status_line}`")));
    let mut length = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        if k == "content-length" {
            length = Some(v.parse::<usize>().unwrap_or_else(|_| fail(3, "bad Content-Length")));
        } else if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body: Vec<u8> = if chunked {
        dechunk(body).unwrap_or_else(|| fail(3, "bad chunked body"))
    } else if let Some(n) = length {
        if body.len() < n {
            fail(3, &format!("body cut short: {} of {n} bytes", body.len()));
        }
        body[..n].to_vec()
    } else {
        body.to_vec()
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&body).and_then(|()| out.flush()).unwrap_or_else(|e| fail(3, &format!("stdout: {e}")));
    if !(200..300).contains(&status) {
        eprintln!("http-client: {status_line}");
        std::process::exit(1);
    }
}
