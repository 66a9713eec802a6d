//! `--seccomp true|false|log`: what a syscall outside a thread's filter does.

use crate::config::ConfigError;

/// How the per-thread filters treat a syscall they do not list (Cloud Hypervisor's values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SeccompMode {
    /// `true`: the syscall traps (SIGSYS); the VMM prints which syscall in which thread and
    /// exits with [`super::VIOLATION_EXIT_CODE`].
    #[default]
    Enforce,
    /// `log`: the syscall runs and the kernel audit-logs it (`SECCOMP_RET_LOG`), for finding
    /// what a new code path needs.
    Log,
    /// `false`: no filter is installed.
    Off,
}

impl SeccompMode {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "true" => Ok(SeccompMode::Enforce),
            "log" => Ok(SeccompMode::Log),
            "false" => Ok(SeccompMode::Off),
            _ => Err(ConfigError::InvalidValue {
                option: "seccomp",
                param: "mode",
                value: s.into(),
                reason: "expected one of true|false|log".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloud_hypervisor_values_parse_and_others_are_rejected() {
        assert_eq!(SeccompMode::parse("true"), Ok(SeccompMode::Enforce));
        assert_eq!(SeccompMode::parse("log"), Ok(SeccompMode::Log));
        assert_eq!(SeccompMode::parse("false"), Ok(SeccompMode::Off));
        assert_eq!(SeccompMode::default(), SeccompMode::Enforce);
        let e = SeccompMode::parse("on").unwrap_err().to_string();
        assert!(
            e.contains("--seccomp") && e.contains("true|false|log"),
            "{e}"
        );
    }
}
