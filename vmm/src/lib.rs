//! The vmm library: everything but `main`, so system tests and fuzz targets can reach the
//! parsers and the VM builder.

pub mod api;
pub mod cli;
pub mod config;
pub mod control;
pub mod cpuid_cache;
pub mod handoff;
pub mod hotplug;
pub mod interrupts;
pub mod legacy;
pub mod logger;
pub mod memory;
pub mod pci_setup;
pub mod runloop;
pub mod seccomp;
pub mod signals;
pub mod snapshot;
pub mod timing;
pub mod vcpu;
pub mod vfio;
pub mod virtio_pci;
pub mod virtio_setup;
pub mod vm;
