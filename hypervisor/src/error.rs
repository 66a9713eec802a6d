use std::io;

/// Errors from any hypervisor backend; the failing operation is named.
#[derive(Debug, thiserror::Error)]
pub enum HypervisorError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("KVM API version {0} is not supported (need 12)")]
    ApiVersion(i32),
    #[error("required KVM capability missing: {0}")]
    MissingCap(&'static str),
    #[error("{op} failed: {source}")]
    Ioctl { op: &'static str, source: io::Error },
    /// A saved state (snapshot) this backend cannot restore.
    #[error("saved state: {0}")]
    State(String),
}

impl HypervisorError {
    pub(crate) fn ioctl(op: &'static str, e: impl Into<io::Error>) -> Self {
        HypervisorError::Ioctl {
            op,
            source: e.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, HypervisorError>;
