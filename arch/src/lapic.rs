//! Local APIC set-up: LINT0 as ExtINT (the PIC's virtual wire) and LINT1 as NMI.

use hypervisor::{HypervisorError, LapicState, VcpuX86_64};

/// LVT LINT0 register offset.
pub const APIC_LVT0: usize = 0x350;
/// LVT LINT1 register offset.
pub const APIC_LVT1: usize = 0x360;
/// LVT delivery mode field (bits 8..=10).
const APIC_DELIVERY_MODE_MASK: u32 = 0x700;
/// Delivery mode: NMI.
pub const APIC_MODE_NMI: u32 = 0x4;
/// Delivery mode: ExtINT.
pub const APIC_MODE_EXTINT: u32 = 0x7;

/// Why the local APIC could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LapicError {
    #[error("reading the local APIC of vCPU {vcpu_id} failed: {source}")]
    Get {
        vcpu_id: u32,
        source: HypervisorError,
    },
    #[error("writing the local APIC of vCPU {vcpu_id} failed: {source}")]
    Set {
        vcpu_id: u32,
        source: HypervisorError,
    },
}

/// Replaces the delivery mode of an LVT register value.
pub fn set_delivery_mode(reg: u32, mode: u32) -> u32 {
    (reg & !APIC_DELIVERY_MODE_MASK) | ((mode << 8) & APIC_DELIVERY_MODE_MASK)
}

/// Returns `lapic` with LINT0 = ExtINT and LINT1 = NMI, other bits untouched.
pub fn with_virtual_wire(mut lapic: LapicState) -> LapicState {
    let lvt0 = lapic.get_reg(APIC_LVT0);
    lapic.set_reg(APIC_LVT0, set_delivery_mode(lvt0, APIC_MODE_EXTINT));
    let lvt1 = lapic.get_reg(APIC_LVT1);
    lapic.set_reg(APIC_LVT1, set_delivery_mode(lvt1, APIC_MODE_NMI));
    lapic
}

/// Reads, patches and writes back the vCPU's local APIC.
pub fn setup_lapic(vcpu: &dyn VcpuX86_64, vcpu_id: u32) -> Result<(), LapicError> {
    let lapic = vcpu
        .get_lapic()
        .map_err(|source| LapicError::Get { vcpu_id, source })?;
    vcpu.set_lapic(&with_virtual_wire(lapic))
        .map_err(|source| LapicError::Set { vcpu_id, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lint0_becomes_extint_and_lint1_nmi_keeping_other_bits() {
        let mut l = LapicState::default();
        // Reset value: masked (bit 16), fixed delivery.
        l.set_reg(APIC_LVT0, 0x1_0000);
        l.set_reg(APIC_LVT1, 0x1_0400 | 0x200);
        let l = with_virtual_wire(l);
        assert_eq!(l.get_reg(APIC_LVT0), 0x1_0700);
        assert_eq!(l.get_reg(APIC_LVT1), 0x1_0400);
        assert_eq!(l.get_reg(0x340), 0, "neighbours untouched");
    }

    #[test]
    fn delivery_mode_only_touches_bits_8_to_10() {
        assert_eq!(set_delivery_mode(0xffff_ffff, 0), 0xffff_f8ff);
        assert_eq!(set_delivery_mode(0, 0xff), 0x700);
    }
}
