//! A virtio device's worker thread: wait on queue and backend fds, move descriptors between
//! guest memory and the backend (a disk image, a tap, the kernel's RNG), and signal the guest
//! through an irqfd. One list for every device for now; `DeviceKind` lets a device get a
//! narrower one (the RNG needs no pwritev, the disk no readv on a tap) without a new API.

use super::allowlist::{arg_eq, Allowlist};
use super::common;
use super::DeviceKind;

pub fn allowlist(kind: DeviceKind) -> Allowlist {
    let mut a = common::runtime();
    // The worker's event loop: queue-notify and kill eventfds, the backend fd; epoll_ctl to
    // pause/resume a backend under backpressure (a tap whose RX queue is full).
    a.allow(libc::SYS_epoll_wait);
    a.allow(libc::SYS_epoll_ctl);
    // Eventfd counters; tap frames; console input; /dev/urandom where getrandom is missing.
    a.allow(libc::SYS_read);
    // Tap frames with their virtio-net header are scatter/gather.
    a.allow(libc::SYS_readv);
    a.allow(libc::SYS_writev);
    // Block requests at a sector offset, single or scatter/gather.
    a.allow(libc::SYS_pread64);
    a.allow(libc::SYS_pwrite64);
    a.allow(libc::SYS_preadv);
    a.allow(libc::SYS_pwritev);
    // VIRTIO_BLK_T_FLUSH.
    a.allow(libc::SYS_fsync);
    a.allow(libc::SYS_fdatasync);
    // VIRTIO_BLK_T_DISCARD and WRITE_ZEROES (punch hole / zero range, keeping the size).
    a.allow(libc::SYS_fallocate);
    // virtio-rng fills guest buffers from the kernel's CSPRNG.
    a.allow(libc::SYS_getrandom);
    // No ioctl at all: tap offloads and queue setup happen at activation, on the VMM thread.
    if kind == DeviceKind::Vsock {
        // Unix stream sockets only: host clients accepted on the device's socket, guest
        // connections to PATH_<port> (non-blocking by their creation flags), half-closes.
        a.allow(libc::SYS_accept4);
        // std reads a socket with recv(2) and writes it with send(2) (MSG_NOSIGNAL): recvfrom
        // and sendto on x86_64, the latter with no address (a connected stream).
        a.allow(libc::SYS_recvfrom);
        a.allow_if(libc::SYS_sendto, arg_eq(4, 0));
        // A stream's buffer toward the host grows up to 256 KiB: glibc grows large blocks
        // with mremap (which cannot make memory executable).
        a.allow(libc::SYS_mremap);
        a.allow_if(libc::SYS_socket, arg_eq(0, libc::AF_UNIX as u64));
        a.allow(libc::SYS_connect);
        a.allow(libc::SYS_shutdown);
    }
    if kind == DeviceKind::Fs {
        // virtio-fs: the worker relays the backend's call eventfds (read, then the irqfd
        // write) and, when the driver resets the device, stops the backend's rings over the
        // vhost-user socket (messages with fds: sendmsg and recvmsg).
        a.allow(libc::SYS_sendmsg);
        a.allow(libc::SYS_recvmsg);
    }
    a
}
