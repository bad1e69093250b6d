//! A loopback HTTP server that answers with raw bytes chosen per request
//! path, or hangs up, or never answers: the faulty servers of the hub and
//! synthesis cases.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// What the server does with one request.
pub enum Raw {
    /// Writes these bytes, then closes the connection.
    Bytes(Vec<u8>),
    /// Closes the connection without a word.
    HangUp,
    /// Keeps the connection open and never answers.
    Silent,
}

/// A whole HTTP/1.1 response with `Connection: close`.
pub fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Raw {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    Raw::Bytes(bytes)
}

/// Starts a server answering each request (its path) with `reply`; returns
/// its base URL (`http://127.0.0.1:PORT`).
pub fn start(reply: impl Fn(&str) -> Raw + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reply = std::sync::Arc::new(reply);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let reply = reply.clone();
            std::thread::spawn(move || serve(stream, &*reply));
        }
    });
    url
}

fn serve(mut stream: TcpStream, reply: &dyn Fn(&str) -> Raw) {
    let Some(path) = read_head(&stream) else {
        return;
    };
    match reply(&path) {
        Raw::Bytes(bytes) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
        }
        Raw::HangUp => {}
        Raw::Silent => std::thread::sleep(Duration::from_secs(600)),
    }
}

/// Reads a request's head and body; returns its path.
fn read_head(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        if header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(path)
}
