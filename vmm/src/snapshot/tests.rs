//! The snapshot format: every state structure round-trips to the same bytes, and a snapshot
//! from another format, a damaged one or one whose memory file is short is refused.

use super::format::*;
use hypervisor::SavedState;
use std::os::unix::fs::MetadataExt;

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vmm-snap-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Two pages of `byte` at guest address 0, written as a memory file.
fn two_pages_of(dir: &std::path::Path, byte: u8) -> Vec<MemoryRange> {
    let bytes = [byte; 8192];
    let region = Region {
        gpa: 0,
        bytes: &bytes,
        touched: None,
    };
    write_memory(dir, &[region]).unwrap()
}

fn saved() -> SavedState {
    let mut s = SavedState::default();
    s.push("regs", (0..=255u8).collect());
    s.push("empty", Vec::new());
    s.push_pod("tsc_khz", &2_500_000u32);
    s
}

fn state(memory: Vec<MemoryRange>) -> State {
    State {
        format_version: FORMAT_VERSION,
        vmm_version: "test".into(),
        config: serde_json::json!({"memory": {"size": 8192}}),
        vm: Parts::from(&saved()),
        vcpus: vec![Parts::from(&saved()), Parts::from(&saved())],
        serial: Some(SerialRegs {
            ier: 0x0f,
            lcr: 0x03,
            fifo: b"abc".to_vec(),
            ..Default::default()
        }),
        cmos: Some(CmosRegs {
            index: 0x0b,
            data: (0..128).collect(),
        }),
        virtio: vec![crate::virtio_pci::state::VirtioPciState {
            device_type: 2,
            config: (0..64).collect(),
            msix_table: vec![[0xfee0_0000, 0, 0x31, 0]; 2],
            msix_pba: vec![0],
            status: 0x0f,
            queues: vec![crate::virtio_pci::state::SavedQueue {
                size: 128,
                enabled: true,
                next_avail: 7,
                next_used: 6,
                ..Default::default()
            }],
            device_config: vec![1, 2, 3],
            ..Default::default()
        }],
        memory,
    }
}

#[test]
fn saved_state_round_trips_through_parts_to_the_same_bytes() {
    let s = saved();
    let back = Parts::from(&s).to_state().unwrap();
    assert_eq!(back, s);
    assert_eq!(Parts::from(&back), Parts::from(&s));
    let bad = Parts(vec![("regs".into(), "0g".into())]);
    assert!(bad.to_state().unwrap_err().contains("'regs' is not hex"));
}

#[test]
fn serial_registers_round_trip() {
    let regs = state(vec![]).serial.unwrap();
    assert_eq!(SerialRegs::from(&regs.to_state()), regs);
}

#[test]
fn state_and_memory_round_trip_and_zero_pages_are_holes() {
    let dir = tmpdir("roundtrip");
    let mut low = vec![0u8; 64 << 10];
    low[4096..4100].copy_from_slice(b"page");
    low[60 << 10] = 7;
    let high = vec![0u8; 1 << 20];
    let ranges = write_memory(
        &dir,
        &[
            Region {
                gpa: 0,
                bytes: &low,
                touched: None,
            },
            Region {
                gpa: 1 << 32,
                bytes: &high,
                touched: None,
            },
        ],
    )
    .unwrap();
    assert_eq!(
        ranges,
        [
            MemoryRange {
                gpa: 0,
                size: 64 << 10,
                offset: 0
            },
            MemoryRange {
                gpa: 1 << 32,
                size: 1 << 20,
                offset: 64 << 10
            }
        ]
    );
    let meta = std::fs::metadata(dir.join(MEMORY_TMP)).unwrap();
    assert_eq!(meta.len(), (64 << 10) + (1 << 20));
    // Two 4 KiB pages hold data; the rest (1 MiB of zeros too) are holes.
    assert!(meta.blocks() * 512 <= 64 << 10, "{} blocks", meta.blocks());
    let back = std::fs::read(dir.join(MEMORY_TMP)).unwrap();
    assert_eq!(&back[..64 << 10], &low[..]);
    assert!(back[64 << 10..].iter().all(|&b| b == 0));

    let s = state(ranges);
    s.write(&dir).unwrap();
    let read = State::read(&dir).unwrap();
    assert_eq!(read, s);
    // Saving what was read gives the same bytes.
    let first = std::fs::read(dir.join(STATE_FILE)).unwrap();
    read.write(&dir).unwrap();
    assert_eq!(std::fs::read(dir.join(STATE_FILE)).unwrap(), first);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn another_format_a_damaged_state_or_a_short_memory_file_is_refused() {
    let dir = tmpdir("refused");
    let ranges = two_pages_of(&dir, 1);
    let mut s = state(ranges);
    s.format_version = FORMAT_VERSION + 1;
    s.write(&dir).unwrap();
    let e = State::read(&dir).unwrap_err().to_string();
    assert!(
        e.contains(&format!("format version {}", FORMAT_VERSION + 1)),
        "{e}"
    );

    s.format_version = FORMAT_VERSION;
    s.write(&dir).unwrap();
    State::read(&dir).unwrap();
    let json = std::fs::read(dir.join(STATE_FILE)).unwrap();
    std::fs::write(dir.join(STATE_FILE), &json[..json.len() / 2]).unwrap();
    let e = State::read(&dir).unwrap_err().to_string();
    assert!(e.contains("truncated or damaged"), "{e}");

    // A state file far too large to be one is refused before it is read.
    std::fs::File::create(dir.join(STATE_FILE))
        .unwrap()
        .set_len(MAX_STATE_BYTES + 1)
        .unwrap();
    let e = State::read(&dir).unwrap_err().to_string();
    assert!(e.contains("more than a state file holds"), "{e}");

    s.write(&dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join(MEMORY_FILE))
        .unwrap();
    f.set_len(4096).unwrap();
    let e = State::read(&dir).unwrap_err().to_string();
    assert!(e.contains("too short for RAM at 0x0"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn urls_are_file_urls_with_absolute_paths() {
    assert_eq!(
        dir_of_url("file:///var/snap").unwrap(),
        std::path::PathBuf::from("/var/snap")
    );
    for bad in ["/var/snap", "file://rel", "http://x/y", "file:///"] {
        assert!(dir_of_url(bad).is_err(), "{bad}");
    }
}

#[test]
fn untouched_pages_are_skipped_unread_and_pagemap_tells_them_apart() {
    // A fresh anonymous mapping: only the pages written are backed.
    let len = 64 * 4096;
    // SAFETY: a private anonymous mapping this test owns and unmaps.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: within the mapping.
    let bytes = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    bytes[3 * 4096] = 1;
    bytes[40 * 4096 + 7] = 2;
    let touched = touched_pages(p.cast(), len).expect("/proc/self/pagemap");
    assert_eq!(touched.len(), 64);
    assert!(touched[3] && touched[40]);
    assert_eq!(touched.iter().filter(|&&t| t).count(), 2, "{touched:?}");
    let dir = tmpdir("touched");
    // A page marked untouched is not written even though it holds data (the map is trusted).
    let mut only3 = vec![false; 64];
    only3[3] = true;
    write_memory(
        &dir,
        &[Region {
            gpa: 0,
            bytes,
            touched: Some(only3),
        }],
    )
    .unwrap();
    let back = std::fs::read(dir.join(MEMORY_TMP)).unwrap();
    assert_eq!(back[3 * 4096], 1);
    assert_eq!(back[40 * 4096 + 7], 0);
    // SAFETY: unmapping what this test mapped.
    unsafe { libc::munmap(p, len) };
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_fuzz_seeds_are_what_they_say() {
    let seed = |name: &str| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/corpus/snapshot_state")
            .join(name);
        let b = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let len = u64::from_le_bytes(b[..8].try_into().unwrap()) >> 8;
        State::parse(&b[8..], len, "seed")
    };
    let s = seed("two-vcpus").unwrap();
    assert_eq!(s.vcpus.len(), 2);
    assert!(seed("memory-file-too-short")
        .unwrap_err()
        .to_string()
        .contains("too short"));
    assert!(seed("other-version")
        .unwrap_err()
        .to_string()
        .contains("format version 2"));
}

#[test]
fn a_new_snapshot_replaces_the_old_by_rename_and_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tmpdir("replace");
    let ranges = two_pages_of(&dir, 1);
    state(ranges.clone()).write(&dir).unwrap();
    let first = std::fs::metadata(dir.join(MEMORY_FILE)).unwrap().ino();
    // A VM restored from it keeps this file open (mapped): the next snapshot must not change
    // what it reads.
    let held = std::fs::File::open(dir.join(MEMORY_FILE)).unwrap();
    two_pages_of(&dir, 2);
    // Until the state is written, the directory's snapshot is the old one.
    assert_eq!(std::fs::read(dir.join(MEMORY_FILE)).unwrap()[0], 1);
    state(ranges).write(&dir).unwrap();
    assert_eq!(std::fs::read(dir.join(MEMORY_FILE)).unwrap()[0], 2);
    assert_ne!(
        std::fs::metadata(dir.join(MEMORY_FILE)).unwrap().ino(),
        first
    );
    let mut b = [0u8; 1];
    std::os::unix::fs::FileExt::read_exact_at(&held, &mut b, 0).unwrap();
    assert_eq!(b, [1], "the old memory file was changed under its reader");
    for f in [MEMORY_FILE, STATE_FILE] {
        let mode = std::fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    assert!(!dir.join(STATE_TMP).exists() && !dir.join(MEMORY_TMP).exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_configuration_is_also_config_json_which_a_restore_prefers() {
    let dir = tmpdir("config");
    let ranges = two_pages_of(&dir, 1);
    // Before any snapshot: none.
    assert!(State::read_config(&dir).unwrap().is_none());
    let st = state(ranges);
    st.write(&dir).unwrap();
    assert!(!dir.join(CONFIG_TMP).exists());
    assert_eq!(State::read_config(&dir).unwrap(), Some(st.config.clone()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.join(CONFIG_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "config.json is readable by others: {mode:o}"
    );
    // Edited (a moved snapshot's paths): the edit is what is read.
    std::fs::write(
        dir.join(CONFIG_FILE),
        br#"{"memory":{"size":8192},"serial":{"mode":"Null"}}"#,
    )
    .unwrap();
    let c = State::read_config(&dir).unwrap().unwrap();
    assert_eq!(c["serial"]["mode"], "Null");
    // Damaged, or not an object: refused, naming the file.
    for bad in [&b"{\"memory\":"[..], b"[1,2]"] {
        std::fs::write(dir.join(CONFIG_FILE), bad).unwrap();
        let e = State::read_config(&dir).unwrap_err().to_string();
        assert!(e.contains("config.json"), "{e}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_memory_file_has_cloud_hypervisors_name_and_the_old_one_is_still_read() {
    let dir = tmpdir("memname");
    let st = state(two_pages_of(&dir, 3));
    st.write(&dir).unwrap();
    // The three files Cloud Hypervisor's snapshot directory has (tools check for them).
    for f in ["config.json", "state.json", "memory-ranges"] {
        assert!(dir.join(f).is_file(), "no {f}");
    }
    assert_eq!(memory_file(&dir), dir.join("memory-ranges"));
    // A snapshot written before the rename: its `memory` is read.
    std::fs::rename(dir.join("memory-ranges"), dir.join("memory")).unwrap();
    assert_eq!(memory_file(&dir), dir.join("memory"));
    assert_eq!(State::read(&dir).unwrap().memory, st.memory);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn memory_ranges_must_be_page_aligned_and_apart() {
    let json = |ranges: &str| {
        let mut s = state(vec![]);
        s.memory = serde_json::from_str(ranges).unwrap();
        serde_json::to_vec(&s).unwrap()
    };
    let parse = |ranges: &str| State::parse(&json(ranges), 1 << 30, "t").map(|_| ());
    parse(r#"[{"gpa":0,"size":8192,"offset":0},{"gpa":4294967296,"size":4096,"offset":8192}]"#)
        .unwrap();
    let e = parse(r#"[{"gpa":0,"size":8192,"offset":100}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not page-aligned"), "{e}");
    let e = parse(r#"[{"gpa":0,"size":8192,"offset":0},{"gpa":65536,"size":4096,"offset":4096}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overlap"), "{e}");
}
