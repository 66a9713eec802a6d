//! Readers for the tables under test.

/// Sum of `bytes` modulo 256: 0 for a table with a correct checksum.
pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b))
}

pub fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

pub fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

pub fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Offset of the first occurrence of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How many times `needle` occurs in `hay`.
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Checks the common 36-byte header: signature, length = `table.len()`, checksum.
pub fn assert_header(table: &[u8], signature: &[u8; 4], revision: u8) {
    assert!(table.len() >= 36, "{} bytes", table.len());
    assert_eq!(&table[..4], signature);
    assert_eq!(u32_at(table, 4) as usize, table.len(), "length field");
    assert_eq!(table[8], revision, "revision");
    assert_eq!(
        sum(table),
        0,
        "checksum of {}",
        String::from_utf8_lossy(signature)
    );
    assert_eq!(&table[10..16], b"RUSTVM", "OEM ID");
    assert_eq!(&table[16..24], b"RUSTVMM ", "OEM table ID");
}

/// Decodes an AML PkgLength at the start of `b`: (value, bytes it occupies).
pub fn pkg_length(b: &[u8]) -> (usize, usize) {
    let lead = b[0];
    let follow = usize::from(lead >> 6);
    if follow == 0 {
        return (usize::from(lead & 0x3f), 1);
    }
    let mut value = usize::from(lead & 0x0f);
    for i in 0..follow {
        value |= usize::from(b[1 + i]) << (4 + 8 * i);
    }
    (value, 1 + follow)
}
