//! Builds the bare-KVM floor of the first-light benchmark (floor/floor.c) with the system C
//! compiler, into OUT_DIR; `first_light` carries it and writes it out when it runs.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=floor/floor.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let bin = out.join("floor");
    let status = Command::new(&cc)
        .args(["-O2", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&bin)
        .arg("floor/floor.c")
        .status()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{cc}` (install gcc): {e}"));
    assert!(status.success(), "{cc} failed to build floor/floor.c");
}
