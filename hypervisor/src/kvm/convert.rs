//! Conversions between this crate's x86 types and kvm-bindings'.

use kvm_bindings::{kvm_cpuid_entry2, kvm_dtable, kvm_fpu, kvm_regs, kvm_segment, kvm_sregs};

use crate::x86::{
    CpuidEntry, DescriptorTable, FpuState, Segment, SpecialRegisters, StandardRegisters,
};

pub fn cpuid_from_kvm(e: &kvm_cpuid_entry2) -> CpuidEntry {
    CpuidEntry {
        function: e.function,
        index: e.index,
        flags: e.flags,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
    }
}

pub fn cpuid_to_kvm(e: &CpuidEntry) -> kvm_cpuid_entry2 {
    kvm_cpuid_entry2 {
        function: e.function,
        index: e.index,
        flags: e.flags,
        eax: e.eax,
        ebx: e.ebx,
        ecx: e.ecx,
        edx: e.edx,
        ..Default::default()
    }
}

macro_rules! copy_regs {
    ($from:expr, $to:ident, $($f:ident),*) => { $to { $($f: $from.$f),* } };
}

pub fn regs_from_kvm(r: &kvm_regs) -> StandardRegisters {
    copy_regs!(
        r,
        StandardRegisters,
        rax,
        rbx,
        rcx,
        rdx,
        rsi,
        rdi,
        rsp,
        rbp,
        r8,
        r9,
        r10,
        r11,
        r12,
        r13,
        r14,
        r15,
        rip,
        rflags
    )
}

pub fn regs_to_kvm(r: &StandardRegisters) -> kvm_regs {
    copy_regs!(
        r, kvm_regs, rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp, r8, r9, r10, r11, r12, r13, r14, r15,
        rip, rflags
    )
}

fn seg_from_kvm(s: &kvm_segment) -> Segment {
    Segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: s.unusable,
    }
}

fn seg_to_kvm(s: &Segment) -> kvm_segment {
    kvm_segment {
        base: s.base,
        limit: s.limit,
        selector: s.selector,
        type_: s.type_,
        present: s.present,
        dpl: s.dpl,
        db: s.db,
        s: s.s,
        l: s.l,
        g: s.g,
        avl: s.avl,
        unusable: s.unusable,
        padding: 0,
    }
}

fn dt_from_kvm(d: &kvm_dtable) -> DescriptorTable {
    DescriptorTable {
        base: d.base,
        limit: d.limit,
    }
}

fn dt_to_kvm(d: &DescriptorTable) -> kvm_dtable {
    kvm_dtable {
        base: d.base,
        limit: d.limit,
        ..Default::default()
    }
}

pub fn sregs_from_kvm(s: &kvm_sregs) -> SpecialRegisters {
    SpecialRegisters {
        cs: seg_from_kvm(&s.cs),
        ds: seg_from_kvm(&s.ds),
        es: seg_from_kvm(&s.es),
        fs: seg_from_kvm(&s.fs),
        gs: seg_from_kvm(&s.gs),
        ss: seg_from_kvm(&s.ss),
        tr: seg_from_kvm(&s.tr),
        ldt: seg_from_kvm(&s.ldt),
        gdt: dt_from_kvm(&s.gdt),
        idt: dt_from_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
    }
}

/// `base` carries fields we don't model (the pending-interrupt bitmap), taken from a KVM_GET_SREGS.
pub fn sregs_to_kvm(s: &SpecialRegisters, base: &kvm_sregs) -> kvm_sregs {
    kvm_sregs {
        cs: seg_to_kvm(&s.cs),
        ds: seg_to_kvm(&s.ds),
        es: seg_to_kvm(&s.es),
        fs: seg_to_kvm(&s.fs),
        gs: seg_to_kvm(&s.gs),
        ss: seg_to_kvm(&s.ss),
        tr: seg_to_kvm(&s.tr),
        ldt: seg_to_kvm(&s.ldt),
        gdt: dt_to_kvm(&s.gdt),
        idt: dt_to_kvm(&s.idt),
        cr0: s.cr0,
        cr2: s.cr2,
        cr3: s.cr3,
        cr4: s.cr4,
        cr8: s.cr8,
        efer: s.efer,
        apic_base: s.apic_base,
        interrupt_bitmap: base.interrupt_bitmap,
    }
}

pub fn fpu_to_kvm(f: &FpuState) -> kvm_fpu {
    kvm_fpu {
        fcw: f.fcw,
        fsw: f.fsw,
        ftwx: f.ftwx,
        mxcsr: f.mxcsr,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sregs_round_trip_keeps_every_field() {
        let mut s = SpecialRegisters::default();
        s.cs = Segment {
            base: 1,
            limit: 0xffff_ffff,
            selector: 8,
            type_: 0xb,
            present: 1,
            db: 1,
            s: 1,
            g: 1,
            ..Default::default()
        };
        s.gdt = DescriptorTable {
            base: 0x500,
            limit: 31,
        };
        s.cr0 = 0x8000_0011;
        s.efer = 0x500;
        let mut base = kvm_sregs::default();
        base.interrupt_bitmap[1] = 7;
        let k = sregs_to_kvm(&s, &base);
        assert_eq!(k.interrupt_bitmap[1], 7);
        assert_eq!(sregs_from_kvm(&k), s);
    }

    #[test]
    fn regs_and_cpuid_round_trip() {
        let r = StandardRegisters {
            rip: 0x100000,
            rbx: 0x6000,
            rflags: 2,
            r15: 9,
            ..Default::default()
        };
        assert_eq!(regs_from_kvm(&regs_to_kvm(&r)), r);
        let c = CpuidEntry {
            function: 0xb,
            index: 1,
            flags: 1,
            eax: 1,
            ebx: 2,
            ecx: 3,
            edx: 4,
        };
        assert_eq!(cpuid_from_kvm(&cpuid_to_kvm(&c)), c);
    }
}
