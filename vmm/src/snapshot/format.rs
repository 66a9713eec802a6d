//! The snapshot directory: `state.json` (the VM's configuration and the state of its vCPUs,
//! VM and devices), `config.json` (the configuration alone, a `vm.create` body, where Cloud
//! Hypervisor keeps it: tools that move a snapshot edit its paths there, and a restore reads
//! it when it is present) and `memory-ranges` (guest RAM, regions back to back, a sparse file:
//! pages that read as zero are holes; Cloud Hypervisor's name, so tools that look for its three
//! files find them; `memory`, this VMM's earlier name, is still read). `state.json` has a format version and the VMM's version; a
//! snapshot written by another format, or damaged, is refused before anything is built.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use hypervisor::SavedState;
use serde::{Deserialize, Serialize};

/// The format of `state.json`; bumped whenever what it holds changes meaning.
pub const FORMAT_VERSION: u32 = 1;
pub const STATE_FILE: &str = "state.json";
/// The largest `state.json` read: about 40 KiB per vCPU, for hundreds of vCPUs.
pub const MAX_STATE_BYTES: u64 = 64 << 20;
pub const MEMORY_FILE: &str = "memory-ranges";
/// What [`MEMORY_FILE`] was called before 2026-12-07 (read when it is all there is).
pub const LEGACY_MEMORY_FILE: &str = "memory";
/// Where a snapshot is written before it replaces the directory's current one.
pub const STATE_TMP: &str = "state.json.tmp";
/// The VM's configuration (Cloud Hypervisor's name and content: a `vm.create` body).
pub const CONFIG_FILE: &str = "config.json";
pub const CONFIG_TMP: &str = "config.json.tmp";
/// The largest `config.json` read (a configuration is a few KiB).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
pub const MEMORY_TMP: &str = "memory-ranges.tmp";

/// A new file only its owner can read: guest RAM and CPU state are the guest's secrets.
fn create_private(path: &Path) -> Result<File, SnapshotError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}
const PAGE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{url}: not a snapshot URL: use file:///absolute/dir")]
    Url { url: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a snapshot this VMM can read: {reason}")]
    Invalid { path: String, reason: String },
    #[error("the VM cannot be snapshotted: {0}")]
    Unsupported(String),
    #[error("saving the VM's state: {0}")]
    Save(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SnapshotError + '_ {
    move |source| SnapshotError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `file:///dir` (Cloud Hypervisor's spelling) → `/dir`.
pub fn dir_of_url(url: &str) -> Result<PathBuf, SnapshotError> {
    match url.strip_prefix("file://") {
        Some(p) if p.starts_with('/') && p.len() > 1 => Ok(PathBuf::from(p)),
        _ => Err(SnapshotError::Url { url: url.into() }),
    }
}

/// One backend state, as `[name, hex bytes]` pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts(pub Vec<(String, String)>);

impl From<&SavedState> for Parts {
    fn from(s: &SavedState) -> Self {
        Parts(
            s.parts
                .iter()
                .map(|(n, b)| {
                    let hex = b.iter().map(|x| format!("{x:02x}")).collect();
                    (n.clone(), hex)
                })
                .collect(),
        )
    }
}

impl Parts {
    pub fn to_state(&self) -> Result<SavedState, String> {
        let mut s = SavedState::default();
        for (name, hex) in &self.0 {
            if hex.len() % 2 != 0 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("'{name}' is not hex"));
            }
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
                .collect();
            s.push(name, bytes);
        }
        Ok(s)
    }
}

/// The 16550's registers and receive FIFO.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialRegs {
    pub dll: u8,
    pub dlm: u8,
    pub ier: u8,
    pub iir: u8,
    pub lcr: u8,
    pub lsr: u8,
    pub mcr: u8,
    pub msr: u8,
    pub scr: u8,
    pub fifo: Vec<u8>,
}

impl From<&devices::legacy::serial::SerialState> for SerialRegs {
    fn from(s: &devices::legacy::serial::SerialState) -> Self {
        SerialRegs {
            dll: s.baud_divisor_low,
            dlm: s.baud_divisor_high,
            ier: s.interrupt_enable,
            iir: s.interrupt_identification,
            lcr: s.line_control,
            lsr: s.line_status,
            mcr: s.modem_control,
            msr: s.modem_status,
            scr: s.scratch,
            fifo: s.in_buffer.clone(),
        }
    }
}

impl SerialRegs {
    pub fn to_state(&self) -> devices::legacy::serial::SerialState {
        devices::legacy::serial::SerialState {
            baud_divisor_low: self.dll,
            baud_divisor_high: self.dlm,
            interrupt_enable: self.ier,
            interrupt_identification: self.iir,
            line_control: self.lcr,
            line_status: self.lsr,
            modem_control: self.mcr,
            modem_status: self.msr,
            scratch: self.scr,
            in_buffer: self.fifo.clone(),
        }
    }
}

/// Where a RAM region's bytes are in the memory file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRange {
    pub gpa: u64,
    pub size: u64,
    pub offset: u64,
}

/// `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format_version: u32,
    pub vmm_version: String,
    /// The VM's configuration, as `vm.create` took it (and `vm.info` shows it).
    pub config: serde_json::Value,
    pub vm: Parts,
    /// In vCPU order.
    pub vcpus: Vec<Parts>,
    pub serial: Option<SerialRegs>,
    /// The RTC/CMOS: its index register and 128 bytes.
    #[serde(default)]
    pub cmos: Option<CmosRegs>,
    /// The virtio devices' transports and queues, in the order their configuration lists
    /// them (disks, nets, rng, console).
    #[serde(default)]
    pub virtio: Vec<crate::virtio_pci::state::VirtioPciState>,
    pub memory: Vec<MemoryRange>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CmosRegs {
    pub index: u8,
    pub data: Vec<u8>,
}

impl State {
    /// Write `state.json` and `config.json` next to the memory file [`write_memory`] wrote,
    /// and make them the directory's snapshot. All are written under temporary names and
    /// renamed into place, `state.json` last, with the old `state.json` out of the way
    /// meanwhile: a crash leaves the old snapshot, or none (refused at restore), never a new
    /// memory file or configuration under an old state. A VM restored from the old snapshot keeps mapping its memory file's inode,
    /// which the rename leaves intact.
    pub fn write(&self, dir: &Path) -> Result<(), SnapshotError> {
        let tmp = dir.join(STATE_TMP);
        let json = serde_json::to_vec(self).map_err(|e| SnapshotError::Save(e.to_string()))?;
        let mut f = create_private(&tmp)?;
        f.write_all(&json).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        let config_tmp = dir.join(CONFIG_TMP);
        let config = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| SnapshotError::Save(e.to_string()))?;
        let mut f = create_private(&config_tmp)?;
        f.write_all(&config).map_err(io(&config_tmp))?;
        f.sync_all().map_err(io(&config_tmp))?;
        let state = dir.join(STATE_FILE);
        let old = dir.join("state.json.old");
        if state.exists() {
            std::fs::rename(&state, &old).map_err(io(&state))?;
        }
        let mem = dir.join(MEMORY_FILE);
        if dir.join(MEMORY_TMP).exists() {
            std::fs::rename(dir.join(MEMORY_TMP), &mem).map_err(io(&mem))?;
        }
        let config = dir.join(CONFIG_FILE);
        std::fs::rename(&config_tmp, &config).map_err(io(&config))?;
        std::fs::rename(&tmp, &state).map_err(io(&state))?;
        let _ = std::fs::remove_file(old);
        File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
    }

    /// `dir`'s `config.json`, if it has one: the VM's configuration to restore, which may have
    /// been edited since the snapshot was taken (a moved snapshot's paths).
    pub fn read_config(dir: &Path) -> Result<Option<serde_json::Value>, SnapshotError> {
        let path = dir.join(CONFIG_FILE);
        let size = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let invalid = |reason: String| SnapshotError::Invalid {
            path: path.display().to_string(),
            reason,
        };
        if size > MAX_CONFIG_BYTES {
            return Err(invalid(format!(
                "{size} bytes, more than a configuration holds ({MAX_CONFIG_BYTES})"
            )));
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("truncated or damaged ({e})")))?;
        if !v.is_object() {
            return Err(invalid("not a VM configuration (a JSON object)".into()));
        }
        Ok(Some(v))
    }

    /// Read and check `dir`'s snapshot: its format, and that the memory file holds every range.
    pub fn read(dir: &Path) -> Result<State, SnapshotError> {
        let path = dir.join(STATE_FILE);
        // A state of a few vCPUs is tens of KiB; a file far larger is not one (and is not
        // read into memory whole).
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        if size > MAX_STATE_BYTES {
            return Err(SnapshotError::Invalid {
                path: path.display().to_string(),
                reason: format!("{size} bytes, more than a state file holds ({MAX_STATE_BYTES})"),
            });
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let name = path.display().to_string();
        let mem = memory_file(dir);
        let len = match std::fs::metadata(&mem) {
            Ok(m) => m.len(),
            Err(e) => {
                // A damaged state.json is the first thing to say, if it is.
                Self::parse(&bytes, u64::MAX, &name)?;
                return Err(io(&mem)(e));
            }
        };
        Self::parse(&bytes, len, &name)
    }

    /// Check and parse `state.json`'s `bytes`, for a memory file of `memory_len` bytes;
    /// `path` names the snapshot in errors. Every part must be hex (its sizes are checked by
    /// the hypervisor backend that restores it).
    pub fn parse(bytes: &[u8], memory_len: u64, path: &str) -> Result<State, SnapshotError> {
        let invalid = |reason: String| SnapshotError::Invalid {
            path: path.to_string(),
            reason,
        };
        // The version first, so that another format says so rather than failing to parse.
        let v: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("truncated or damaged ({e})")))?;
        let version = v.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(invalid(format!(
                "format version {}, this VMM reads version {FORMAT_VERSION}",
                version.map_or("missing".into(), |v| v.to_string())
            )));
        }
        let state: State =
            serde_json::from_value(v).map_err(|e| invalid(format!("damaged ({e})")))?;
        if state.vcpus.is_empty() {
            return Err(invalid("no vCPU".into()));
        }
        for p in state.vcpus.iter().chain([&state.vm]) {
            p.to_state().map_err(invalid)?;
        }
        let page = PAGE as u64;
        let mut ranges: Vec<&MemoryRange> = state.memory.iter().collect();
        ranges.sort_by_key(|r| r.offset);
        for w in ranges.windows(2) {
            if w[0].offset.saturating_add(w[0].size) > w[1].offset {
                return Err(invalid(
                    "two memory ranges overlap in the memory file".into(),
                ));
            }
        }
        for r in &state.memory {
            if r.offset % page != 0 || r.size % page != 0 || r.gpa % page != 0 || r.size == 0 {
                return Err(invalid(format!(
                    "memory range at {:#x} ({} bytes at offset {}) is not page-aligned",
                    r.gpa, r.size, r.offset
                )));
            }
            if r.offset
                .checked_add(r.size)
                .is_none_or(|end| end > memory_len)
            {
                return Err(invalid(format!(
                    "its memory file has {memory_len} bytes, too short for RAM at {:#x} \
                     ({} bytes at offset {})",
                    r.gpa, r.size, r.offset
                )));
            }
        }
        Ok(state)
    }
}

/// One RAM region to write: its guest address, its bytes and, when known, which of its 4 KiB
/// pages the guest may have written (pages it never touched are not even read).
pub struct Region<'a> {
    pub gpa: u64,
    pub bytes: &'a [u8],
    pub touched: Option<Vec<bool>>,
}

/// The snapshot's memory file in `dir`: `memory-ranges`, or `memory` in a snapshot written
/// before it was renamed.
pub fn memory_file(dir: &Path) -> PathBuf {
    let legacy = dir.join(LEGACY_MEMORY_FILE);
    if !dir.join(MEMORY_FILE).exists() && legacy.is_file() {
        return legacy;
    }
    dir.join(MEMORY_FILE)
}

/// Write guest RAM to `dir/memory-ranges.tmp`: each region at its offset, pages never touched or that
/// read as zero left as holes (a guest's untouched RAM costs no disk and no time). Returns
/// where each region went.
pub fn write_memory(dir: &Path, regions: &[Region<'_>]) -> Result<Vec<MemoryRange>, SnapshotError> {
    // Under its temporary name: [`State::write`] puts it in place.
    let path = dir.join(MEMORY_TMP);
    let f = create_private(&path)?;
    let mut ranges = Vec::new();
    let mut offset = 0u64;
    let zero = [0u8; PAGE];
    for r in regions {
        let bytes = r.bytes;
        let data = |i: usize| {
            let end = (i + PAGE).min(bytes.len());
            let touched = r
                .touched
                .as_ref()
                .is_none_or(|t| t.get(i / PAGE).copied().unwrap_or(true));
            touched && bytes[i..end] != zero[..end - i]
        };
        let mut i = 0;
        while i < bytes.len() {
            if !data(i) {
                i += PAGE;
                continue;
            }
            // Runs of pages with data are written in one call.
            let mut run_end = (i + PAGE).min(bytes.len());
            while run_end < bytes.len() && data(run_end) {
                run_end = (run_end + PAGE).min(bytes.len());
            }
            f.write_all_at(&bytes[i..run_end], offset + i as u64)
                .map_err(io(&path))?;
            i = run_end;
        }
        ranges.push(MemoryRange {
            gpa: r.gpa,
            size: bytes.len() as u64,
            offset,
        });
        offset += bytes.len() as u64;
    }
    f.set_len(offset).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    Ok(ranges)
}

/// Which pages of `[addr, addr + len)` in this process the kernel has ever backed: a page
/// neither present nor swapped out (/proc/self/pagemap bits 63 and 62) was never written and
/// reads as zero. `None` if pagemap cannot be read (then every page is read and checked).
pub fn touched_pages(addr: *const u8, len: usize) -> Option<Vec<bool>> {
    let pagemap = File::open("/proc/self/pagemap").ok()?;
    let pages = len.div_ceil(PAGE);
    let first = addr as u64 / PAGE as u64;
    let mut out = Vec::with_capacity(pages);
    let mut buf = vec![0u8; 8 * 4096];
    let mut done = 0usize;
    while done < pages {
        let n = (pages - done).min(4096);
        let b = &mut buf[..8 * n];
        pagemap.read_exact_at(b, (first + done as u64) * 8).ok()?;
        out.extend(b.chunks(8).map(|e| {
            let v = u64::from_le_bytes(e.try_into().unwrap_or([0xff; 8]));
            v & (3 << 62) != 0
        }));
        done += n;
    }
    Some(out)
}
