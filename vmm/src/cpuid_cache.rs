//! A per-boot cache of KVM_GET_SUPPORTED_CPUID.
//!
//! That ioctl runs the host's CPUID instruction for every leaf KVM knows; where CPUID traps to a
//! hypervisor below (a nested or PVM host) it costs 0.3–0.4 ms, as much as the rest of the VM's
//! setup after memory registration. Its answer depends only on the host CPU, the kernel and
//! the KVM modules' load-time parameters, so it is the same for every VM until the host reboots
//! or a KVM module is reloaded. The cache file is keyed by exactly that: the kernel's boot id
//! and the sysfs inode of each loaded KVM module (a reloaded module gets a new one).
//!
//! Where: `/run/vmm/` for root, `$XDG_RUNTIME_DIR/vmm/` for other users (no cache when neither
//! applies). The directory must be ours and not writable by others, and so must the file, or
//! it is ignored; any mismatch or damage (size, magic, key) means a fresh query. `VMM_CPUID_CACHE=off`
//! disables it. The file is written atomically (a temporary file renamed into place).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hypervisor::CpuidEntry;

const MAGIC: &[u8; 8] = b"VMMCPUID";
/// Bump when the layout, or what the hypervisor adds to KVM's answer, changes (2: leaf 1
/// carries the TSC-deadline bit where KVM emulates it; 3: the host's brand string where KVM
/// gives none).
const FORMAT: u32 = 3;
/// KVM_MAX_CPUID_ENTRIES.
const MAX_ENTRIES: usize = 256;
const ENTRY_WORDS: usize = 7;
const KVM_MODULES: [&str; 3] = ["kvm", "kvm_amd", "kvm_intel"];

/// What the cached answer is valid for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    boot_id: [u8; 36],
    modules: [u64; KVM_MODULES.len()],
}

impl CacheKey {
    /// This host's key now, or None where it cannot be known.
    pub fn current() -> Option<Self> {
        let mut boot_id = [0u8; 36];
        File::open("/proc/sys/kernel/random/boot_id")
            .ok()?
            .read_exact(&mut boot_id)
            .ok()?;
        let mut modules = [0u64; KVM_MODULES.len()];
        for (ino, m) in modules.iter_mut().zip(KVM_MODULES) {
            *ino = std::fs::metadata(format!("/sys/module/{m}"))
                .map(|md| md.ino())
                .unwrap_or(0);
        }
        if modules[0] == 0 && modules[1] == 0 && modules[2] == 0 {
            return None;
        }
        Some(CacheKey { boot_id, modules })
    }
}

/// The cache directory for this user, if there is one.
pub fn default_dir() -> Option<PathBuf> {
    if std::env::var_os("VMM_CPUID_CACHE").is_some_and(|v| v == "off") {
        return None;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/run/vmm"));
    }
    std::env::var_os("XDG_RUNTIME_DIR").map(|d| PathBuf::from(d).join("vmm"))
}

fn file_name(key: &CacheKey) -> String {
    format!("cpuid-{}", String::from_utf8_lossy(&key.boot_id))
}

/// Owned by us and writable by nobody else.
fn trusted(md: &std::fs::Metadata) -> bool {
    // SAFETY: geteuid has no preconditions.
    md.uid() == unsafe { libc::geteuid() } && md.mode() & 0o022 == 0
}

fn encode(key: &CacheKey, entries: &[CpuidEntry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + entries.len() * ENTRY_WORDS * 4);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&FORMAT.to_le_bytes());
    v.extend_from_slice(&key.boot_id);
    for ino in key.modules {
        v.extend_from_slice(&ino.to_le_bytes());
    }
    v.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        for w in [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx] {
            v.extend_from_slice(&w.to_le_bytes());
        }
    }
    v
}

fn decode(key: &CacheKey, bytes: &[u8]) -> Option<Vec<CpuidEntry>> {
    let empty = encode(key, &[]);
    let header = empty.len() - 4;
    if bytes.len() < empty.len() || bytes[..header] != empty[..header] {
        return None;
    }
    let n = u32::from_le_bytes(bytes[header..header + 4].try_into().ok()?) as usize;
    if n == 0 || n > MAX_ENTRIES || bytes.len() != empty.len() + n * ENTRY_WORDS * 4 {
        return None;
    }
    let words: Vec<u32> = bytes[header + 4..]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Some(
        words
            .chunks_exact(ENTRY_WORDS)
            .map(|w| CpuidEntry {
                function: w[0],
                index: w[1],
                flags: w[2],
                eax: w[3],
                ebx: w[4],
                ecx: w[5],
                edx: w[6],
            })
            .collect(),
    )
}

/// The cached entries for `key` in `dir`, if a trusted, intact cache file holds them.
pub fn load(dir: &Path, key: &CacheKey) -> Option<Vec<CpuidEntry>> {
    let mut f = File::open(dir.join(file_name(key))).ok()?;
    let md = f.metadata().ok()?;
    if !md.is_file() || !trusted(&md) || md.len() > 64 + (MAX_ENTRIES * ENTRY_WORDS * 4) as u64 {
        return None;
    }
    let mut bytes = Vec::with_capacity(md.len() as usize);
    f.read_to_end(&mut bytes).ok()?;
    decode(key, &bytes)
}

/// Store `entries` for `key` in `dir` (created 0700 if missing). Best effort: a failure only
/// means the next VM asks KVM again.
pub fn store(dir: &Path, key: &CacheKey, entries: &[CpuidEntry]) -> std::io::Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let md = std::fs::symlink_metadata(dir)?;
    if !md.is_dir() || !trusted(&md) {
        return Err(std::io::Error::other("cache directory not ours"));
    }
    let tmp = dir.join(format!(".{}.{}", file_name(key), std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let r = f
        .write_all(&encode(key, entries))
        .and_then(|()| std::fs::rename(&tmp, dir.join(file_name(key))));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey {
            boot_id: *b"0123abcd-0000-1111-2222-333344445555",
            modules: [7, 0, 9],
        }
    }

    fn entries() -> Vec<CpuidEntry> {
        (0..3)
            .map(|i| CpuidEntry {
                function: i,
                index: i * 2,
                flags: 1,
                eax: 0xaaaa_0000 | i,
                ebx: 2,
                ecx: 3,
                edx: 0xdead_beef,
            })
            .collect()
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vmm-cpuid-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn what_is_stored_loads_back_for_the_same_key_only() {
        let d = dir("roundtrip");
        assert_eq!(load(&d, &key()), None, "nothing cached yet");
        store(&d, &key(), &entries()).unwrap();
        assert_eq!(load(&d, &key()), Some(entries()));
        let mut reloaded = key();
        reloaded.modules[0] = 8;
        assert_eq!(load(&d, &reloaded), None, "a reloaded kvm module misses");
        let mode = std::fs::metadata(&d).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn damaged_or_foreign_files_are_ignored() {
        let d = dir("damaged");
        store(&d, &key(), &entries()).unwrap();
        let path = d.join(file_name(&key()));
        let good = std::fs::read(&path).unwrap();
        for bad in [
            good[..good.len() - 1].to_vec(),  // truncated
            [good.clone(), vec![0]].concat(), // trailing byte
            {
                let mut b = good.clone();
                b[0] ^= 1; // magic
                b
            },
            {
                let mut b = good.clone();
                b[8] = 99; // format
                b
            },
            Vec::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            assert_eq!(load(&d, &key()), None);
        }
        // Writable by others: not trusted, whatever it holds.
        std::fs::write(&path, &good).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(load(&d, &key()), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn the_current_key_names_this_boot() {
        // Every Linux host has a boot id; /sys/module/kvm exists where KVM does.
        if let Some(k) = CacheKey::current() {
            assert_eq!(k.boot_id[8], b'-');
            assert!(k.modules.iter().any(|&i| i != 0));
        } else {
            assert!(!Path::new("/sys/module/kvm").exists());
        }
    }
}
