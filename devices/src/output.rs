//! A cloneable in-memory `Write` sink, handy for capturing what a guest
//! prints on a console (tests, "first light" checks, log scraping).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// A `Write` implementation appending to a shared `Vec<u8>`; clones share
/// the same buffer, so one clone can be handed to a device and another kept
/// to inspect the bytes.
#[derive(Clone, Debug, Default)]
pub struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.lock().clone()
    }

    /// Everything written so far, lossily decoded as UTF-8.
    pub fn contents_lossy(&self) -> String {
        String::from_utf8_lossy(&self.lock()).into_owned()
    }

    /// Takes (and clears) everything written so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lock())
    }
}

impl io::Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn clones_share_the_written_bytes() {
        let buf = SharedBuffer::new();
        let mut writer = buf.clone();
        writer.write_all(b"hello").unwrap();
        assert_eq!(buf.contents(), b"hello");
        assert_eq!(buf.contents_lossy(), "hello");
    }

    #[test]
    fn take_empties_the_buffer() {
        let buf = SharedBuffer::new();
        buf.clone().write_all(b"ab").unwrap();
        assert_eq!(buf.take(), b"ab");
        assert!(buf.contents().is_empty());
    }
}
