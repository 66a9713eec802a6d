//! VFIO PCI passthrough: preflight checks, the VFIO container and devices, DMA mapping of
//! guest RAM, and BARs mapped straight into the guest.

mod bar_map;
pub mod dma;
pub mod preflight;
mod relocator;

pub use bar_map::{BarMapper, DirectArea};
pub use relocator::SegmentRelocator;
