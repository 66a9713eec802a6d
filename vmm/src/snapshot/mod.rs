//! Snapshots: `vm.snapshot` writes a paused VM to a directory, `vm.restore` / `--restore`
//! builds a VM from one.

pub mod format;
pub mod load;
pub mod seccomp;

pub use format::{dir_of_url, SnapshotError, State};
pub use load::{load, LoadError, Loaded};

#[cfg(test)]
mod tests;

pub mod cpu;
