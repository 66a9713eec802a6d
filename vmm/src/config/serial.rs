//! `--serial tty|off|null|file=PATH` and `--console off|tty`.

use std::path::PathBuf;

use super::ConfigError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialConfig {
    /// Guest output to stdout, stdin to the guest.
    Tty,
    /// Guest output to a file (created or truncated).
    File(PathBuf),
    /// The UART exists but its output is dropped.
    Null,
    /// No UART at all.
    Off,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleConfig {
    Off,
    Tty,
}

fn invalid(option: &'static str, s: &str, accepted: &str) -> ConfigError {
    ConfigError::InvalidValue {
        option,
        param: "mode",
        value: s.into(),
        reason: format!("expected one of {accepted}"),
    }
}

impl SerialConfig {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "tty" => Ok(SerialConfig::Tty),
            "off" => Ok(SerialConfig::Off),
            "null" => Ok(SerialConfig::Null),
            _ => match s.strip_prefix("file=") {
                Some(p) if !p.is_empty() => Ok(SerialConfig::File(PathBuf::from(p))),
                _ => Err(invalid("serial", s, "tty, off, null, file=PATH")),
            },
        }
    }
}

impl ConsoleConfig {
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s {
            "off" | "null" => Ok(ConsoleConfig::Off),
            "tty" => Ok(ConsoleConfig::Tty),
            _ => Err(invalid("console", s, "off, tty")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_modes() {
        assert_eq!(SerialConfig::parse("tty").unwrap(), SerialConfig::Tty);
        assert_eq!(
            SerialConfig::parse("file=/tmp/x").unwrap(),
            SerialConfig::File("/tmp/x".into())
        );
        assert!(SerialConfig::parse("file=").is_err());
        assert!(SerialConfig::parse("pty").is_err());
        assert_eq!(ConsoleConfig::parse("off").unwrap(), ConsoleConfig::Off);
        assert!(ConsoleConfig::parse("socket").is_err());
    }
}
