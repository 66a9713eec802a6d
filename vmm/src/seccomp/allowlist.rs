//! A thread kind's allowed syscalls, with argument conditions where they matter, and the
//! condition helpers the filter modules use.

use std::collections::BTreeMap;

use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};

/// A syscall is allowed either outright (`None`) or when any one of its rules matches.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    syscalls: BTreeMap<i64, Option<Vec<SeccompRule>>>,
}

impl Allowlist {
    /// Allow `nr` whatever its arguments.
    pub fn allow(&mut self, nr: i64) -> &mut Self {
        self.syscalls.insert(nr, None);
        self
    }

    /// Allow `nr` when `rule` matches (added to the rules already there; an outright allow
    /// stays outright).
    pub fn allow_if(&mut self, nr: i64, rule: SeccompRule) -> &mut Self {
        if let Some(rules) = self.syscalls.entry(nr).or_insert_with(|| Some(Vec::new())) {
            rules.push(rule);
        }
        self
    }

    /// Add every syscall and rule of `other`.
    pub fn extend(&mut self, other: &Allowlist) -> &mut Self {
        for (&nr, rules) in &other.syscalls {
            match rules {
                None => {
                    self.allow(nr);
                }
                Some(rs) => {
                    for r in rs {
                        let present =
                            matches!(self.syscalls.get(&nr), Some(Some(have)) if have.contains(r));
                        if !present {
                            self.allow_if(nr, r.clone());
                        }
                    }
                }
            }
        }
        self
    }

    /// The allowed syscall numbers, ascending.
    pub fn syscalls(&self) -> impl Iterator<Item = i64> + '_ {
        self.syscalls.keys().copied()
    }

    pub fn contains(&self, nr: i64) -> bool {
        self.syscalls.contains_key(&nr)
    }

    pub fn len(&self) -> usize {
        self.syscalls.len()
    }

    /// Rules counted the way Firecracker's JSON lists them: one per argument variant, one for
    /// an outright allow.
    pub fn rule_entries(&self) -> usize {
        self.syscalls
            .values()
            .map(|r| r.as_ref().map_or(1, Vec::len))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.syscalls.is_empty()
    }

    /// seccompiler's form: an empty rule list matches on the syscall number alone.
    pub fn into_rules(self) -> BTreeMap<i64, Vec<SeccompRule>> {
        self.syscalls
            .into_iter()
            .map(|(nr, rules)| (nr, rules.unwrap_or_default()))
            .collect()
    }
}

/// A rule of one condition on argument `arg` (0..=5).
fn one_condition(arg: u8, op: SeccompCmpOp, value: u64) -> SeccompRule {
    assert!(arg <= 5, "syscalls have six arguments");
    // Every argument we test (ioctl request, fcntl command, prot, advice, signal) is a C
    // `int`/`unsigned int`, which the kernel truncates to 32 bits: compare the low dword only.
    // seccompiler rejects only argument indices above 5 and rules without conditions, which
    // the assert and the one condition here rule out.
    SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .and_then(|c| SeccompRule::new(vec![c]))
        .expect("a one-condition rule on arguments 0..=5 is valid")
}

/// Argument `arg` equals `value`.
pub fn arg_eq(arg: u8, value: u64) -> SeccompRule {
    one_condition(arg, SeccompCmpOp::Eq, value)
}

/// None of the bits of `mask` are set in argument `arg`.
pub fn arg_lacks(arg: u8, mask: u64) -> SeccompRule {
    one_condition(arg, SeccompCmpOp::MaskedEq(mask), 0)
}

/// Argument `arg` with `mask` applied equals `value` (an ioctl's type byte, say).
pub fn arg_masked_eq(arg: u8, mask: u64, value: u64) -> SeccompRule {
    one_condition(arg, SeccompCmpOp::MaskedEq(mask), value)
}

/// `sendto(fd, buf, len, flags, NULL, 0)` with `flags` exactly: a send on a connected socket
/// (std's `write` on a unix stream), never a datagram to an address of the caller's choosing.
pub fn send_connected(flags: u64) -> SeccompRule {
    let conditions = [
        SeccompCondition::new(3, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, flags),
        SeccompCondition::new(4, SeccompCmpArgLen::Qword, SeccompCmpOp::Eq, 0),
    ];
    conditions
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .and_then(SeccompRule::new)
        .expect("two conditions on arguments 3 and 4 are valid")
}

/// An ioctl with request number `request` (argument 1).
pub fn ioctl(request: u64) -> SeccompRule {
    arg_eq(1, request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outright_allow_is_not_narrowed_by_a_later_rule() {
        let mut a = Allowlist::default();
        a.allow(libc::SYS_read)
            .allow_if(libc::SYS_read, arg_eq(0, 0));
        a.allow_if(libc::SYS_ioctl, ioctl(1))
            .allow_if(libc::SYS_ioctl, ioctl(2));
        assert_eq!(a.rule_entries(), 1 + 2);
        let rules = a.into_rules();
        assert!(rules[&libc::SYS_read].is_empty());
        assert_eq!(rules[&libc::SYS_ioctl].len(), 2);
    }

    #[test]
    fn extend_merges_rules_and_counts_syscalls_once() {
        let mut a = Allowlist::default();
        a.allow_if(libc::SYS_ioctl, ioctl(1));
        let mut b = Allowlist::default();
        b.allow_if(libc::SYS_ioctl, ioctl(2)).allow(libc::SYS_write);
        a.extend(&b);
        assert_eq!(a.len(), 2);
        assert!(a.contains(libc::SYS_write));
        assert_eq!(a.into_rules()[&libc::SYS_ioctl].len(), 2);
    }
}
