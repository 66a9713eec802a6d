//! Helpers shared by the vmm binary's system tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub fn vmm() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmm"));
    c.stdin(Stdio::null());
    c
}

pub fn run(args: &[&str]) -> Output {
    vmm().args(args).output().expect("spawn vmm")
}

pub fn tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// KVM tests need /dev/kvm; CI has it. Set VMM_SKIP_KVM_TESTS=1 to skip them elsewhere.
pub fn kvm_available() -> bool {
    if std::env::var_os("VMM_SKIP_KVM_TESTS").is_some() {
        eprintln!("VMM_SKIP_KVM_TESTS set: skipping");
        return false;
    }
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing (set VMM_SKIP_KVM_TESTS=1 to skip)"
    );
    true
}
