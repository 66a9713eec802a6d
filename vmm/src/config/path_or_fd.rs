//! Options that name a file or take an open descriptor, as Cloud Hypervisor's do
//! (`--api-socket`, `--event-monitor`): `path=PATH`, `fd=N`, or a bare path.

use std::path::PathBuf;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathOrFd {
    Path(PathBuf),
    Fd(i32),
}

impl PathOrFd {
    /// Parse the value of `--option`; the error names the option.
    pub fn parse(option: &str, s: &str) -> Result<Self, String> {
        if let Some(fd) = s.strip_prefix("fd=") {
            let fd: i32 =
                fd.parse().ok().filter(|n| *n >= 0).ok_or_else(|| {
                    format!("--{option}: fd='{fd}': not a file descriptor number")
                })?;
            return Ok(PathOrFd::Fd(fd));
        }
        let path = s.strip_prefix("path=").unwrap_or(s);
        // ',' separates parameters in Cloud Hypervisor's syntax.
        if path.is_empty() || path.contains(',') {
            return Err(format!("--{option}: '{s}': expected path=PATH or fd=N"));
        }
        Ok(PathOrFd::Path(path.into()))
    }
}
