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

/// The virtio-console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConsoleConfig {
    /// No virtio-console device.
    Off,
    /// Guest output to stdout (and stdin to the guest when the serial port does not take it).
    Tty,
    /// The device exists, its output is dropped.
    Null,
    /// Guest output to a file.
    File(PathBuf),
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
            "off" => Ok(ConsoleConfig::Off),
            "null" => Ok(ConsoleConfig::Null),
            "tty" => Ok(ConsoleConfig::Tty),
            _ => match s.strip_prefix("file=") {
                Some(p) if !p.is_empty() => Ok(ConsoleConfig::File(PathBuf::from(p))),
                _ => Err(invalid("console", s, "off, null, tty, file=PATH")),
            },
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
