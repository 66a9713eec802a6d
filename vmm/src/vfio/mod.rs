//! VFIO PCI passthrough: preflight checks, the VFIO container and devices, DMA mapping of
//! guest RAM, and BARs mapped straight into the guest.

pub(crate) mod aligned_mmap;
mod attach;
mod bar_map;
pub mod dma;
mod host;
mod iova;
mod passthrough;
pub mod prefault;
pub mod preflight;
mod relocator;
mod reset;
pub mod seccomp;

pub use attach::{attach, AttachError, AttachParams, Attached};
pub use bar_map::{BarMapper, DirectArea};
pub use host::{ContainerDma, HostDevice, HostError, VfioHost};
pub use passthrough::{Passthrough, PassthroughError, VfioThreadContext};
pub use relocator::SegmentRelocator;
