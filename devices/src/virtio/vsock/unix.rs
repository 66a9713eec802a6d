//! Unix stream sockets made non-blocking without an ioctl: std's `set_nonblocking` is
//! `ioctl(FIONBIO)`, which the device threads' seccomp filters do not allow, so the flags
//! come with the socket (accept4, socket) or from fcntl.

use std::io;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::os::unix::net::{UnixListener, UnixStream};

pub use crate::virtio::set_nonblocking;

/// The next connection on `listener`, non-blocking from the start (accept4).
pub(crate) fn accept_nonblocking(listener: &UnixListener) -> io::Result<UnixStream> {
    // SAFETY: accept4 with null address pointers; the fd returned is owned below.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd this function owns.
    Ok(unsafe { UnixStream::from_raw_fd(fd) })
}

/// A non-blocking connection to the unix socket at `path` (refused when its backlog is full).
pub(crate) fn connect_nonblocking(path: &str) -> io::Result<UnixStream> {
    // SAFETY: zeroed sockaddr_un is a valid value; filled below within its bounds.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "socket path too long",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd this function owns.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: addr is a valid sockaddr_un of at least `len` bytes.
    let r = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            len as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stream)
}
