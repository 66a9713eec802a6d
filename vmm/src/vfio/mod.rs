//! VFIO PCI passthrough: preflight checks, the VFIO container and devices, DMA mapping of
//! guest RAM, and BARs mapped straight into the guest.

pub mod preflight;
