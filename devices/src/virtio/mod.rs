//! Virtio device backends, independent of the transport (virtio-pci lives in
//! the `pci` crate and drives them through [`VirtioDevice`]).
//!
//! * [`device`]: the [`VirtioDevice`] trait, [`ActivateContext`] and the
//!   [`VirtioInterrupt`] the transport implements;
//! * [`worker`]: the per-device worker thread (and why it is per device);
//! * [`queue`] / [`chain`]: queue handling and descriptor-chain checks shared
//!   by the devices, written for a hostile driver;
//! * the devices: [`block`], [`net`], [`rng`], [`console`], [`vsock`], [`fs`] (a vhost-user
//!   frontend).

pub mod block;
pub mod chain;
pub mod console;
pub mod counters;
pub mod device;
pub mod fs;
pub mod net;
pub mod queue;
pub mod rng;
pub mod vsock;
pub mod worker;

#[cfg(test)]
pub(crate) mod test_utils;

/// `O_NONBLOCK` on `fd` with fcntl (std's `set_nonblocking` is an ioctl, which the device
/// threads' seccomp filters do not allow).
pub fn set_nonblocking(fd: std::os::unix::io::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd the caller owns; no pointers.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub use device::{
    ActivateContext, ActivateError, ActivatedQueue, QueuePosition, VirtioDevice, VirtioInterrupt,
    VirtioInterruptType, WorkerInit, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_RING_INDIRECT_DESC,
    VIRTIO_F_VERSION_1,
};

pub use block::{Block, BlockError, DiskConfig};
pub use console::{Console, ConsoleError, ConsoleInput};
pub use fs::{Fs, FsConfig, FsError};
pub use net::{MacAddr, Net, NetConfig, NetError};
pub use rng::{Rng, RngConfig, RngError};
pub use vsock::{Vsock, VsockConfig, VsockError};
