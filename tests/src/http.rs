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

/// One request on a new connection, with `fds` passed along (SCM_RIGHTS, in the same
/// message as the request's first bytes, as Cloud Hypervisor's clients send tap fds).
pub fn call_with_fds(
    sock: &Path,
    method: &str,
    endpoint: &str,
    body: Option<&str>,
    fds: &[std::os::fd::RawFd],
) -> std::io::Result<(u16, String)> {
    use std::os::fd::AsRawFd;
    let s = UnixStream::connect(sock)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let bytes = request_bytes(method, endpoint, body);
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: a zeroed msghdr is valid; every pointer set below outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer has room for one header with `fds` (CMSG_SPACE above).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c) as *mut i32, fds.len());
    }
    // SAFETY: msg describes valid buffers.
    let n = unsafe { libc::sendmsg(s.as_raw_fd(), &msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut s = s;
    if (n as usize) < bytes.len() {
        s.write_all(&bytes[n as usize..])?;
    }
    read_response(&mut s)
}
