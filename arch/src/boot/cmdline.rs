//! The kernel command line, written NUL-terminated at [`CMDLINE_START`].

use vm_memory::{Bytes, GuestAddress, GuestMemoryError, GuestMemoryMmap};

use crate::layout::CMDLINE_START;

/// Why the command line cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CmdlineError {
    #[error("the command line contains a NUL byte at position {position}")]
    ContainsNul { position: usize },
    #[error(
        "the command line is {len} bytes, longer than the kernel's limit of {max} bytes \
         (without the terminating NUL)"
    )]
    TooLong { len: usize, max: u64 },
    #[error("cannot write the command line at guest address {addr:#x}: {source}")]
    Write { addr: u64, source: GuestMemoryError },
}

/// Checks `cmdline` against `max_len` (bytes, NUL excluded) and writes it with its NUL.
pub fn write_cmdline(
    mem: &GuestMemoryMmap,
    cmdline: &str,
    max_len: u64,
) -> Result<(), CmdlineError> {
    if let Some(position) = cmdline.bytes().position(|b| b == 0) {
        return Err(CmdlineError::ContainsNul { position });
    }
    if cmdline.len() as u64 > max_len {
        return Err(CmdlineError::TooLong {
            len: cmdline.len(),
            max: max_len,
        });
    }
    let mut bytes = Vec::with_capacity(cmdline.len() + 1);
    bytes.extend_from_slice(cmdline.as_bytes());
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_START))
        .map_err(|source| CmdlineError::Write {
            addr: CMDLINE_START,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap()
    }

    #[test]
    fn writes_nul_terminated() {
        let m = mem();
        m.write_slice(&[0xff; 8], GuestAddress(CMDLINE_START))
            .unwrap();
        write_cmdline(&m, "ro", 10).unwrap();
        let mut buf = [0u8; 4];
        m.read_slice(&mut buf, GuestAddress(CMDLINE_START)).unwrap();
        assert_eq!(&buf, b"ro\0\xff");
    }

    #[test]
    fn limit_excludes_the_nul() {
        let m = mem();
        assert!(write_cmdline(&m, "abcd", 4).is_ok());
        let err = write_cmdline(&m, "abcde", 4).unwrap_err();
        assert!(matches!(err, CmdlineError::TooLong { len: 5, max: 4 }));
        assert!(err.to_string().contains("limit of 4 bytes"));
    }

    #[test]
    fn embedded_nul_is_rejected() {
        let err = write_cmdline(&mem(), "a\0b", 100).unwrap_err();
        assert!(matches!(err, CmdlineError::ContainsNul { position: 1 }));
    }
}
