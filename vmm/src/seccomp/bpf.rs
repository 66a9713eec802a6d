//! The layout of our seccomp programs: a binary search on the syscall number.
//!
//! seccompiler lays a filter out as one linear chain, a compare per allowed syscall, so a
//! syscall at the end of the list (or not in it) runs through every compare. The kernel pays
//! that too when a filter is installed: it runs the program for every syscall number of every
//! architecture to build its per-filter cache of always-allowed syscalls, which made
//! installing one of our filters cost 0.15–0.35 ms on the first-light path. Here the allowed
//! numbers are searched as a balanced tree (about log2(n) compares), and each leaf holds the
//! rules seccompiler builds for that syscall, unchanged. The result is the same decision for
//! every syscall and argument (tests.rs interprets both programs and compares them).
//!
//! Layout:
//! ```text
//!   ld arch; jeq AUDIT_ARCH_X86_64 ? +1 : 0; ret KILL_PROCESS
//!   ld nr
//!   node:  jge k ? right : left          (through a `ja` when `left` is too far for 8 bits)
//!   leaf:  jeq nr ? body : mismatch
//!          body = ret match  |  rule; ret match; rule; ret match; ...
//!          mismatch: ret mismatch
//! ```

use std::collections::BTreeMap;

#[cfg(not(target_arch = "x86_64"))]
compile_error!("the seccomp programs check for AUDIT_ARCH_X86_64 only");

use seccompiler::{sock_filter, BpfProgram, SeccompAction, SeccompRule};

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// Offsets in `struct seccomp_data`.
const NR_OFFSET: u32 = 0;
const ARCH_OFFSET: u32 = 4;

/// `AUDIT_ARCH_X86_64`: EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// The kernel's limit on a classic BPF program (BPF_MAXINSNS).
pub const MAX_LEN: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BpfError {
    #[error("syscall number {0} is out of range")]
    BadSyscall(i64),
    #[error("the filter has {0} instructions, more than the kernel's {MAX_LEN}")]
    TooLong(usize),
    #[error("instruction {0} jumps out of the filter")]
    JumpOut(usize),
    #[error("the filter does not end with a return")]
    NoReturn,
}

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Build the filter: a syscall in `rules` with no rules is allowed outright (`matched`), one
/// with rules when any of them matches; anything else gets `mismatch`. A syscall of another
/// architecture kills the process.
pub fn build(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, BpfError> {
    debug_assert!(
        mismatch != matched,
        "a filter whose two outcomes are the same"
    );
    let mut syscalls = Vec::with_capacity(rules.len());
    for (nr, chain) in rules {
        let nr32 = u32::try_from(nr).map_err(|_| BpfError::BadSyscall(nr))?;
        syscalls.push((nr32, chain));
    }
    let mismatch = u32::from(mismatch);
    let matched = u32::from(matched);
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, ARCH_OFFSET),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, NR_OFFSET),
    ];
    if !syscalls.is_empty() {
        prog.extend(tree(syscalls, mismatch, matched));
    }
    // Every path ends in a `ret` before this one. It is here because seccompiler's rule code
    // carries a jump that our layout never takes (to the next rule's "skip" jump, which a
    // linear chain uses): in the last leaf it points one past the leaf, and the kernel
    // refuses any jump out of the program, taken or not.
    prog.push(stmt(BPF_RET_K, mismatch));
    if prog.len() > MAX_LEN {
        return Err(BpfError::TooLong(prog.len()));
    }
    check(&prog)?;
    Ok(prog)
}

/// The kernel's structural checks of a classic BPF program (bpf_check_classic): every jump
/// lands inside the program, and the last instruction returns.
fn check(prog: &[sock_filter]) -> Result<(), BpfError> {
    let len = prog.len();
    for (pc, ins) in prog.iter().enumerate() {
        let room = len - pc - 1;
        let ok = match ins.code {
            BPF_JMP_JA => (ins.k as usize) < room,
            c if c & 0x07 == 0x05 => usize::from(ins.jt) < room && usize::from(ins.jf) < room,
            _ => true,
        };
        if !ok {
            return Err(BpfError::JumpOut(pc));
        }
    }
    match prog.last() {
        Some(i) if i.code == BPF_RET_K => Ok(()),
        _ => Err(BpfError::NoReturn),
    }
}

/// The search over `syscalls` (sorted, not empty), with the syscall number in A.
fn tree(mut syscalls: Vec<(u32, Vec<SeccompRule>)>, mismatch: u32, matched: u32) -> BpfProgram {
    if syscalls.len() == 1 {
        let (nr, chain) = syscalls.pop().expect("one syscall");
        return leaf(nr, chain, mismatch, matched);
    }
    let right_half = syscalls.split_off(syscalls.len() / 2);
    let pivot = right_half[0].0;
    let left = tree(syscalls, mismatch, matched);
    let right = tree(right_half, mismatch, matched);
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // A >= pivot: jump over the left subtree.
        Ok(skip) => out.push(jump(BPF_JMP_JGE_K, pivot, skip, 0)),
        // Too far for a conditional jump: A < pivot skips a `ja` that leaps over `left`.
        Err(_) => {
            out.push(jump(BPF_JMP_JGE_K, pivot, 0, 1));
            out.push(stmt(BPF_JMP_JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// One syscall: its number checked, then its rules (or an outright allow), then mismatch.
fn leaf(nr: u32, chain: Vec<SeccompRule>, mismatch: u32, matched: u32) -> BpfProgram {
    let mut body = Vec::new();
    if chain.is_empty() {
        body.push(stmt(BPF_RET_K, matched));
    }
    for rule in chain {
        // seccompiler's rule code: entered at its first instruction, it falls through its
        // end when every condition holds and otherwise jumps to one past the instruction
        // that follows it, where the next rule (or the mismatch) starts.
        let code: BpfProgram = rule.into();
        body.extend(code);
        body.push(stmt(BPF_RET_K, matched));
    }
    let mut out = Vec::with_capacity(body.len() + 3);
    match u8::try_from(body.len()) {
        Ok(skip) => out.push(jump(BPF_JMP_JEQ_K, nr, 0, skip)),
        Err(_) => {
            out.push(jump(BPF_JMP_JEQ_K, nr, 1, 0));
            out.push(stmt(BPF_JMP_JA, body.len() as u32));
        }
    }
    out.extend(body);
    out.push(stmt(BPF_RET_K, mismatch));
    out
}

/// A classic BPF interpreter for the instructions seccomp programs here (ours and
/// seccompiler's) use, over a `struct seccomp_data`. For tests: it returns the action and
/// the number of instructions run. Panics on anything else (a backward or out-of-range jump
/// included), as the kernel's verifier would refuse it.
#[cfg(test)]
pub fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    let mut steps = 0;
    loop {
        let ins = &prog[pc];
        steps += 1;
        let k = ins.k;
        let next = pc + 1;
        pc = match ins.code {
            BPF_LD_W_ABS => {
                let o = k as usize;
                acc = u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
                next
            }
            0x54 => {
                // ALU AND K
                acc &= k;
                next
            }
            BPF_JMP_JA => next + k as usize,
            BPF_JMP_JEQ_K | 0x25 | BPF_JMP_JGE_K => {
                let taken = match ins.code {
                    BPF_JMP_JEQ_K => acc == k,
                    0x25 => acc > k,
                    _ => acc >= k,
                };
                next + usize::from(if taken { ins.jt } else { ins.jf })
            }
            BPF_RET_K => return (k, steps),
            c => panic!("instruction {c:#x} at {pc} is not one a seccomp program here uses"),
        };
        assert!(pc < prog.len(), "jump out of the program");
    }
}

/// seccompiler's own layout of the same rules (Trap on mismatch, Allow on match): the
/// reference the tests compare ours with.
#[cfg(test)]
pub fn linear(rules: BTreeMap<i64, Vec<SeccompRule>>) -> BpfProgram {
    seccompiler::SeccompFilter::new(
        rules,
        SeccompAction::Trap,
        SeccompAction::Allow,
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap()
    .try_into()
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seccomp::allowlist::{arg_eq, arg_lacks, ioctl, Allowlist};

    fn sample() -> Allowlist {
        let mut a = Allowlist::default();
        for nr in [0, 1, 3, 9, 11, 60, 202, 231, 318] {
            a.allow(nr);
        }
        a.allow_if(libc::SYS_ioctl, ioctl(0xae80))
            .allow_if(libc::SYS_ioctl, ioctl(0x4020_ae46));
        a.allow_if(libc::SYS_mprotect, arg_lacks(2, libc::PROT_EXEC as u64));
        a.allow_if(libc::SYS_fcntl, arg_eq(1, libc::F_GETFL as u64));
        a
    }

    #[test]
    fn every_syscall_and_argument_gets_the_linear_filters_decision() {
        let rules = sample().into_rules();
        let (ours, theirs) = (
            build(rules.clone(), SeccompAction::Trap, SeccompAction::Allow).unwrap(),
            linear(rules),
        );
        let values = [0u64, 1, 2, 4, 3, 0xae80, 0x4020_ae46, 0xffff_ffff, u64::MAX];
        // Beyond the table: x32 numbers (bit 30 set, same audit arch), -1, the top.
        let high = [
            0x4000_0000u32,
            0x4000_0010,
            0x4000_0000 | 16,
            0x7fff_ffff,
            u32::MAX,
        ];
        for nr in (0..600u32).chain(high) {
            for arg in 0..6 {
                for v in values {
                    let mut args = [0u64; 6];
                    args[arg] = v;
                    assert_eq!(
                        run(&ours, AUDIT_ARCH_X86_64, nr, args).0,
                        run(&theirs, AUDIT_ARCH_X86_64, nr, args).0,
                        "nr {nr} arg{arg}={v:#x}"
                    );
                }
            }
        }
        // Spot checks of the decisions themselves.
        let ret = |nr: i64, args| run(&ours, AUDIT_ARCH_X86_64, nr as u32, args).0;
        assert_eq!(ret(libc::SYS_read, [0; 6]), libc::SECCOMP_RET_ALLOW);
        assert_eq!(ret(libc::SYS_execve, [0; 6]), libc::SECCOMP_RET_TRAP);
        assert_eq!(
            ret(libc::SYS_ioctl, [3, 0xae80, 0, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            ret(libc::SYS_ioctl, [3, 0xae81, 0, 0, 0, 0]),
            libc::SECCOMP_RET_TRAP
        );
        let rwx = (libc::PROT_READ | libc::PROT_EXEC) as u64;
        assert_eq!(
            ret(libc::SYS_mprotect, [0, 4096, rwx, 0, 0, 0]),
            libc::SECCOMP_RET_TRAP
        );
        assert_eq!(
            ret(libc::SYS_mprotect, [0, 4096, 3, 0, 0, 0]),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            ret(0x4000_0000 | libc::SYS_read, [0; 6]),
            libc::SECCOMP_RET_TRAP
        );
        // Another architecture's syscall ends the process.
        assert_eq!(
            run(&ours, 0x4000_0003, 0, [0; 6]).0,
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn the_search_runs_a_handful_of_instructions_where_the_chain_runs_them_all() {
        let mut a = sample();
        for nr in 100..180 {
            a.allow(nr);
        }
        let rules = a.into_rules();
        let n = rules.len();
        let ours = build(rules.clone(), SeccompAction::Trap, SeccompAction::Allow).unwrap();
        let theirs = linear(rules);
        let worst = |p: &[sock_filter]| {
            (0..600u32)
                .map(|nr| run(p, AUDIT_ARCH_X86_64, nr, [0; 6]).1)
                .max()
                .unwrap()
        };
        let depth = (usize::BITS - n.leading_zeros()) as usize; // ceil(log2 n) + 1 at most
                                                                // Arch check (3), load (1), two instructions per level, the leaf's compare and an
                                                                // ioctl rule's few: bounded by the tree's depth, not the list's length.
        assert!(
            worst(&ours) <= 4 + 2 * depth + 12,
            "{} for {n}",
            worst(&ours)
        );
        assert!(worst(&theirs) > 2 * n, "{}", worst(&theirs));
    }

    #[test]
    fn long_subtrees_and_long_rule_lists_are_reached_through_unconditional_jumps() {
        // 300 ioctl requests on one syscall: a leaf body far beyond an 8-bit jump; with more
        // syscalls above ioctl (16) than below it, that leaf sits in the root's left half,
        // which is then too long for the root's conditional jump as well.
        let mut a = Allowlist::default();
        for r in 0..300u64 {
            a.allow_if(libc::SYS_ioctl, ioctl(0x1000 + r));
        }
        for nr in (0..16).chain(17..60) {
            a.allow(nr);
        }
        let rules = a.into_rules();
        let ours = build(rules.clone(), SeccompAction::Trap, SeccompAction::Allow).unwrap();
        let theirs = linear(rules);
        // Both kinds of trampoline are there: `jge k, 0, 1; ja far` and `jeq nr, 1, 0; ja far`.
        let has = |code: u16, jt: u8, jf: u8| {
            ours.windows(2).any(|w| {
                w[0].code == code
                    && (w[0].jt, w[0].jf) == (jt, jf)
                    && w[1].code == BPF_JMP_JA
                    && w[1].k > 255
            })
        };
        assert!(has(BPF_JMP_JGE_K, 0, 1), "no subtree trampoline");
        assert!(has(BPF_JMP_JEQ_K, 1, 0), "no leaf trampoline");
        for req in [0x0fffu64, 0x1000, 0x1001, 0x1000 + 299, 0x1000 + 300] {
            let args = [0, req, 0, 0, 0, 0];
            let nr = libc::SYS_ioctl as u32;
            assert_eq!(
                run(&ours, AUDIT_ARCH_X86_64, nr, args).0,
                run(&theirs, AUDIT_ARCH_X86_64, nr, args).0,
                "{req:#x}"
            );
        }
        for nr in (0..70u32).chain([0x4000_0010, u32::MAX]) {
            assert_eq!(
                run(&ours, AUDIT_ARCH_X86_64, nr, [0; 6]).0,
                run(&theirs, AUDIT_ARCH_X86_64, nr, [0; 6]).0,
                "nr {nr}"
            );
        }
    }

    #[test]
    fn a_jump_out_of_the_program_or_a_missing_return_is_refused_as_the_kernel_would() {
        let ret = stmt(BPF_RET_K, 0);
        assert_eq!(
            check(&[stmt(BPF_JMP_JA, 1), ret.clone()]),
            Err(BpfError::JumpOut(0))
        );
        assert_eq!(
            check(&[jump(BPF_JMP_JEQ_K, 0, 0, 1), ret.clone()]),
            Err(BpfError::JumpOut(0))
        );
        assert_eq!(
            check(&[ret.clone(), stmt(BPF_LD_W_ABS, 0)]),
            Err(BpfError::NoReturn)
        );
        assert_eq!(check(&[stmt(BPF_JMP_JA, 0), ret]), Ok(()));
    }

    #[test]
    fn an_empty_list_denies_everything_and_bad_numbers_are_refused() {
        let p = build(BTreeMap::new(), SeccompAction::Trap, SeccompAction::Allow).unwrap();
        assert_eq!(
            run(&p, AUDIT_ARCH_X86_64, 0, [0; 6]).0,
            libc::SECCOMP_RET_TRAP
        );
        let mut bad = BTreeMap::new();
        bad.insert(-1i64, Vec::new());
        assert_eq!(
            build(bad, SeccompAction::Trap, SeccompAction::Allow),
            Err(BpfError::BadSyscall(-1))
        );
    }
}
