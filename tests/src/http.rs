//! A minimal HTTP/1.1 client for the vmm's API socket, shared by the API tests and the
//! first-light benchmark: one request per connection, the response read by Content-Length.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The request bytes for `method /api/v1/endpoint`, with a JSON body when given.
pub fn request_bytes(method: &str, endpoint: &str, body: Option<&str>) -> Vec<u8> {
    let mut req = format!("{method} /api/v1/{endpoint} HTTP/1.1\r\nHost: localhost\r\n");
    match body {
        Some(b) => {
            req += &format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )
        }
        None => req += "\r\n",
    }
    req.into_bytes()
}

/// Read one response: (status, body). Status 0 when no status line arrived.
pub fn read_response(s: &mut impl Read) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Send `bytes` on a new connection to `sock` and read the response.
pub fn exchange(sock: &Path, bytes: &[u8], timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(bytes)?;
    read_response(&mut s)
}

/// One request on a new connection: (status, body).
pub fn call(
    sock: &Path,
    method: &str,
    endpoint: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    exchange(
        sock,
        &request_bytes(method, endpoint, body),
        Duration::from_secs(20),
    )
}
