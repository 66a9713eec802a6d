//! A vCPU's or a VM's saved state (snapshots): named parts, each the raw bytes of one backend
//! structure (KVM: `kvm_regs`, `kvm_sregs`, `kvm_xsave`, the MSRs, ...). The VMM stores them
//! without looking inside; the backend that restores them checks each part's name and size, so
//! a snapshot from a build whose structures differ, or a damaged one, is refused before
//! anything is set.

use crate::error::{HypervisorError, Result};

/// Saved state: `(name, bytes)` in the order the backend saved them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SavedState {
    pub parts: Vec<(String, Vec<u8>)>,
}

impl SavedState {
    pub fn push(&mut self, name: &str, bytes: Vec<u8>) {
        self.parts.push((name.to_string(), bytes));
    }

    /// The part called `name`.
    pub fn get(&self, name: &str) -> Result<&[u8]> {
        self.parts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| HypervisorError::State(format!("no '{name}' in the saved state")))
    }

    pub fn has(&self, name: &str) -> bool {
        self.parts.iter().any(|(n, _)| n == name)
    }

    /// Part `name` as a `T`, which must have exactly its size.
    pub fn get_pod<T: Pod>(&self, name: &str) -> Result<T> {
        from_bytes(name, self.get(name)?)
    }

    pub fn push_pod<T: Pod>(&mut self, name: &str, v: &T) {
        self.push(name, to_bytes(v));
    }
}

/// Plain C structures: every byte pattern is a valid value, no pointers, no padding that
/// matters (the kernel's `kvm_*` structs, integers).
///
/// # Safety
/// Implement only for `repr(C)` types whose every bit pattern is a valid value.
pub unsafe trait Pod: Default {}

/// The bytes of `v`.
pub fn to_bytes<T: Pod>(v: &T) -> Vec<u8> {
    // SAFETY: T is Pod: reading its size_of bytes is reading plain data it owns.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>()) }
        .to_vec()
}

/// A `T` from exactly `size_of::<T>()` bytes; `what` names it in the error.
pub fn from_bytes<T: Pod>(what: &str, b: &[u8]) -> Result<T> {
    if b.len() != std::mem::size_of::<T>() {
        return Err(HypervisorError::State(format!(
            "'{what}' holds {} bytes, this build's structure has {}: a snapshot from another \
             build or a damaged one",
            b.len(),
            std::mem::size_of::<T>()
        )));
    }
    let mut v = T::default();
    // SAFETY: T is Pod (any bytes are a valid T) and b has exactly its size.
    unsafe {
        std::ptr::copy_nonoverlapping(b.as_ptr(), (&mut v as *mut T).cast::<u8>(), b.len());
    }
    Ok(v)
}

// SAFETY: integers: any bit pattern is valid.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_a_wrong_size_is_refused_with_its_name() {
        let mut s = SavedState::default();
        s.push_pod("tsc_khz", &2_000_000u32);
        s.push_pod("clock", &0x1234_5678_9abc_def0u64);
        assert_eq!(s.get_pod::<u32>("tsc_khz").unwrap(), 2_000_000);
        assert_eq!(s.get_pod::<u64>("clock").unwrap(), 0x1234_5678_9abc_def0);
        let e = s.get_pod::<u64>("tsc_khz").unwrap_err().to_string();
        assert!(e.contains("'tsc_khz' holds 4 bytes"), "{e}");
        let e = s.get("lapic").unwrap_err().to_string();
        assert!(e.contains("no 'lapic'"), "{e}");
    }
}
