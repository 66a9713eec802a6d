//! The API thread (`vmm-api`): HTTP/1.1 on the API's unix socket. It accepts connections,
//! reads requests (with the fds a client passes, SCM_RIGHTS), writes responses and hands
//! each parsed request to the control loop over a channel. Installed before it serves its
//! first connection; the socket, its epoll and the kill switch exist by then.

use super::allowlist::{ioctl, send_connected, Allowlist};
use super::common;

pub fn allowlist() -> Allowlist {
    let mut a = common::runtime();
    // micro_http's event loop: the listener, every connection and the kill switch.
    a.allow(libc::SYS_epoll_ctl);
    a.allow(libc::SYS_epoll_wait);
    // New connections (std's accept is accept4 with SOCK_CLOEXEC), made non-blocking.
    a.allow(libc::SYS_accept4);
    // FIONBIO is a c_ulong on glibc and a c_int on musl.
    #[allow(clippy::unnecessary_cast)]
    let fionbio = libc::FIONBIO as u64;
    a.allow_if(libc::SYS_ioctl, ioctl(fionbio));
    // Requests, with the fds a client may pass along (recvmsg, SCM_RIGHTS).
    a.allow(libc::SYS_recvmsg);
    a.allow(libc::SYS_read);
    // Responses: std writes to a unix stream with send(2) and MSG_NOSIGNAL (a peer that has
    // gone is an EPIPE, not a SIGPIPE), which glibc issues as sendto without an address.
    // No other socket call: the thread never connects, binds or opens anything.
    // The rule also requires no destination address.
    a.allow_if(libc::SYS_sendto, send_connected(libc::MSG_NOSIGNAL as u64));
    a
}
