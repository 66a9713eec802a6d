//! The virtio activator thread (virtio_pci/activator.rs): when a driver sets DRIVER_OK it
//! duplicates the queue eventfds, registers them as ioeventfds, gives a tap the negotiated
//! offloads, hands a vhost-user backend its rings (virtio-fs: sendmsg/recvmsg on its socket, in
//! the fs device's list) and creates the device's worker thread. It is the only thread allowed to create
//! threads; its one input is activation jobs queued by the virtio-pci transports.

use super::allowlist::{arg_eq, ioctl, Allowlist};
use super::ioctls::{KVM_IOEVENTFD, TUNSETOFFLOAD};
use super::{common, device, DeviceKind};

pub fn allowlist() -> Allowlist {
    let mut a = common::runtime();
    // Waiting for jobs: the job eventfd.
    a.allow(libc::SYS_read);
    // ioeventfds on the notify addresses (added at DRIVER_OK, removed on reset) and the
    // tap's offloads; no other ioctl.
    a.allow_if(libc::SYS_ioctl, ioctl(KVM_IOEVENTFD));
    a.allow_if(libc::SYS_ioctl, ioctl(TUNSETOFFLOAD));
    // Queue eventfds are duplicated for the worker and the ioeventfd; the worker's own kill
    // eventfd and epoll are created before it starts.
    a.allow(libc::SYS_dup);
    a.allow_if(libc::SYS_fcntl, arg_eq(1, libc::F_DUPFD_CLOEXEC as u64));
    a.allow(libc::SYS_eventfd2);
    a.allow(libc::SYS_epoll_create1);
    // Creating the worker: clone3 (clone on older libcs), its robust futex list, rseq, its
    // name (prctl PR_SET_NAME only) and the runtime's CPU set query.
    a.allow(libc::SYS_clone3);
    a.allow(libc::SYS_clone);
    a.allow(libc::SYS_set_robust_list);
    a.allow(libc::SYS_rseq);
    a.allow_if(libc::SYS_prctl, arg_eq(0, libc::PR_SET_NAME as u64));
    a.allow(libc::SYS_sched_getaffinity);
    // The worker installs its own, narrower filter first thing: no_new_privs (already set,
    // seccompiler sets it again) and seccomp(SET_MODE_FILTER). A filter can only narrow.
    a.allow_if(libc::SYS_prctl, arg_eq(0, libc::PR_SET_NO_NEW_PRIVS as u64));
    a.allow_if(
        libc::SYS_seccomp,
        arg_eq(0, libc::SECCOMP_SET_MODE_FILTER as u64),
    );
    // A worker starts under this filter as well as its own (filters stack), so everything a
    // worker does must pass here too; each worker then narrows to its device's list.
    for kind in [
        DeviceKind::Block,
        DeviceKind::Net,
        DeviceKind::Rng,
        DeviceKind::Console,
        DeviceKind::Vsock,
        DeviceKind::Fs,
    ] {
        a.extend(&device::allowlist(kind));
    }
    a
}
