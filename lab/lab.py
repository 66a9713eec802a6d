#!/usr/bin/env python3
"""Nested lab: run our `vmm` inside a QEMU/TCG L1 Linux with nested KVM (kvm_amd, nested SVM).

Subcommands (each builds what it needs and skips what is already up to date):
  fetch      host packages, Debian kernel + busybox .debs into lab/cache/, L2 payloads
             lab/out/l2/{vmlinux,bzImage}, the static labrun helper
  l2-initrd  lab/out/l2/initramfs.cpio.gz (busybox /init + lab/l2/scenarios/)
  l1-base    lab/out/l1/base.cpio (busybox, kvm/vfio modules, labrun, L2 payloads, L1 /init)
  run        everything above, then boot L1 under QEMU/TCG and run scenarios (see --help)
  bench      boot-to-init benchmark: several vmms (and kernel formats) side by side in one L1 boot;
             a vmm given a passed device must DMA through it in each run (time to first DMA)
  list       show the scenarios of lab/scenarios.txt (--names -s GLOB: just the names)
"""
import argparse
import fnmatch
import glob
import json
import gzip
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

LAB = Path(__file__).resolve().parent
ROOT = LAB.parent
CACHE = LAB / "cache"
OUT = LAB / "out"
L2OUT = OUT / "l2"
L1OUT = OUT / "l1"

# host command -> Debian package(s) that provide it
HOST_TOOLS = {
    "qemu-system-x86_64": ["qemu-system-x86"],
    "lz4": ["lz4"],
    "xz": ["xz-utils"],
    "gcc": ["gcc", "libc6-dev"],
    "dpkg-deb": ["dpkg"],
}
KERNEL_META = "linux-image-cloud-amd64"
# virtio_pci gives an L1 device a native driver (--device virtio-rng-pci,addr=0x6), for the
# VFIO preflight scenario that must refuse a device not bound to vfio-pci.
L1_MODULES = ["irqbypass", "kvm", "kvm-amd", "vfio", "vfio_virqfd", "vfio_iommu_type1",
              "vfio-pci-core", "vfio-pci", "tun", "virtio_pci"]
L1_APPEND = "console=ttyS0 panic=-1 quiet intel_iommu=on no_timer_check"


def log(msg):
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def newer(out, *inputs):
    """True when `out` exists and is at least as new as every input file."""
    out = Path(out)
    if not out.exists():
        return False
    t = out.stat().st_mtime
    return all(Path(i).stat().st_mtime <= t for i in inputs)


# ---------------------------------------------------------------- host packages / debs

def ensure_host_tools():
    missing = sorted({p for tool, pkgs in HOST_TOOLS.items() if not shutil.which(tool) for p in pkgs})
    if not missing:
        return
    log(f"installing host packages: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sh(["apt-get", "update", "-qq"], env=env)
    sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)


def cached_deb(pattern, pkg):
    """Path of lab/cache/debs/<pattern>, downloading `pkg` with apt-get download if absent."""
    debs = CACHE / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    hits = sorted(debs.glob(pattern))
    if hits:
        return hits[-1]
    log(f"downloading {pkg}")
    sh(["apt-get", "download", "-q", pkg], cwd=debs, stderr=subprocess.DEVNULL)
    hits = sorted(debs.glob(pattern))
    if not hits:
        sys.exit(f"lab: apt-get download {pkg} produced nothing matching {pattern}")
    return hits[-1]


def kernel_deb():
    pkg = os.environ.get("LAB_KERNEL_PKG")
    if not pkg:
        hits = sorted((CACHE / "debs").glob("linux-image-[0-9]*-cloud-amd64_*.deb"))
        if hits:
            return hits[-1]
        dep = subprocess.run(["apt-cache", "depends", KERNEL_META], capture_output=True, text=True).stdout
        m = re.search(r"Depends: (linux-image-[0-9][^\s]*)", dep)
        if not m:
            sys.exit(f"lab: cannot resolve {KERNEL_META} (run apt-get update?)")
        pkg = m.group(1)
    return cached_deb(f"{pkg}_*.deb", pkg)


def extract_deb(deb, dest):
    stamp = dest / ".extracted"
    if stamp.exists() and stamp.read_text() == deb.name:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    log(f"extracting {deb.name}")
    sh(["dpkg-deb", "-x", str(deb), str(dest)])
    stamp.write_text(deb.name)
    return dest


def kernel_tree():
    """(extracted kernel deb dir, kernel version)"""
    root = extract_deb(kernel_deb(), CACHE / "kernel")
    vers = sorted(p.name for p in (root / "lib/modules").iterdir())
    return root, vers[-1]


def busybox_bin():
    root = extract_deb(cached_deb("busybox-static_*.deb", "busybox-static"), CACHE / "busybox")
    return root / "bin/busybox"


# ---------------------------------------------------------------- ELF helpers

def elf_sections(data):
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError("not an ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    hdrs = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    strtab = hdrs[shstrndx]
    names = data[strtab[4]:strtab[4] + strtab[5]]
    out = {}
    for h in hdrs:
        name = names[h[0]:names.index(b"\0", h[0])].decode()
        out[name] = data[h[4]:h[4] + h[5]]
    return out


def elf_notes(data):
    """Yield (name, type, desc) for every note in the PT_NOTE program headers."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", data, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        off, end = p_offset, p_offset + p_filesz
        while off + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", data, off)
            off += 12
            name = data[off:off + namesz].rstrip(b"\0").decode(errors="replace")
            off += (namesz + 3) & ~3
            desc = data[off:off + descsz]
            off += (descsz + 3) & ~3
            yield name, ntype, desc


# ---------------------------------------------------------------- kernel payloads

DECOMPRESSORS = [  # (magic, command reading stdin, writing stdout)
    (b"\x02\x21\x4c\x18", ["lz4", "-dc"]),   # lz4 legacy frame
    (b"\x1f\x8b", ["gzip", "-dc"]),
    (b"\xfd7zXZ\x00", ["xz", "-dc"]),
    (b"\x28\xb5\x2f\xfd", ["zstd", "-dc"]),
]


def vmlinux_from_bzimage(bz):
    """Cut the compressed payload out of a bzImage and decompress it to the ELF vmlinux."""
    if bz[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS)")
    setup_sects = bz[0x1F1] or 4
    pm = (setup_sects + 1) * 512
    off, length = struct.unpack_from("<II", bz, 0x248)
    payload = bz[pm + off:pm + off + length]
    for magic, cmd in DECOMPRESSORS:
        if payload.startswith(magic):
            # The kernel appends the decompressed size (u32 LE); decompressors ignore or reject it.
            want, = struct.unpack_from("<I", payload, len(payload) - 4)
            res = subprocess.run(cmd, input=payload, capture_output=True)
            if not res.stdout.startswith(b"\x7fELF"):
                res = subprocess.run(cmd, input=payload[:-4], capture_output=True)
            elf = res.stdout
            if not elf.startswith(b"\x7fELF"):
                raise ValueError(f"{cmd[0]} failed: {res.stderr.decode(errors='replace')}")
            if len(elf) != want:
                log(f"note: decompressed {len(elf)} bytes, header says {want}")
            return elf
    raise ValueError(f"unknown payload compression {payload[:6].hex()}")


def pvh_entry(elf):
    for name, ntype, desc in elf_notes(elf):
        if name == "Xen" and ntype == 18:  # XEN_ELFNOTE_PHYS32_ENTRY
            return struct.unpack_from("<I" if len(desc) == 4 else "<Q", desc)[0]
    return None


def build_l2_payloads():
    root, ver = kernel_tree()
    vmlinuz = root / f"boot/vmlinuz-{ver}"
    L2OUT.mkdir(parents=True, exist_ok=True)
    bz, vml = L2OUT / "bzImage", L2OUT / "vmlinux"
    if not newer(bz, vmlinuz):
        shutil.copyfile(vmlinuz, bz)
    if not newer(vml, vmlinuz):
        elf = vmlinux_from_bzimage(vmlinuz.read_bytes())
        entry = pvh_entry(elf)
        if entry is None:
            sys.exit("lab: extracted vmlinux has no PVH note (Xen ELFNOTE 18)")
        vml.write_bytes(elf)
        log(f"vmlinux: {len(elf)} bytes, PVH entry {entry:#x}")
    (L2OUT / "kernel.version").write_text(ver + "\n")
    return ver


def build_labrun():
    src, exe = LAB / "tools/labrun.c", OUT / "tools/labrun"
    if not newer(exe, src):
        exe.parent.mkdir(parents=True, exist_ok=True)
        sh(["gcc", "-O2", "-Wall", "-static", "-o", str(exe), str(src)])
    return exe


def build_static_tool(name):
    """lab/out/tools/NAME from lab/tools/NAME.c, static (for the L1/L2 initramfs)."""
    src, exe = LAB / f"tools/{name}.c", OUT / f"tools/{name}"
    if not newer(exe, src, *sorted((LAB / "tools").glob("*.h"))):
        exe.parent.mkdir(parents=True, exist_ok=True)
        sh(["gcc", "-O2", "-Wall", "-static", "-o", str(exe), str(src)])
    return exe


# ---------------------------------------------------------------- out-of-tree L2 modules

# Built against the L2 kernel's Debian headers (linux-headers-<ver>, its -common package and
# linux-kbuild-<major>, extracted together into cache/headers so their relative symlinks
# resolve). Carried in the L2 initramfs like L2_AVAILABLE_MODULES, not loaded at boot.
L2_LOCAL_MODULES = {"edu_test": LAB / "l2/edu"}  # module name -> source dir (Kbuild + .c)
KMOD_TOOLS = {"make": ["make"], "gcc-12": ["gcc-12"]}  # the headers' .kernelvariables say CC=gcc-12


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", str(deb), field], capture_output=True, text=True,
                          check=True).stdout.strip()


def cached_deb_version(name, version):
    """cached_deb for NAME, preferring exactly VERSION (the L2 kernel's); any version as fallback."""
    debs = CACHE / "debs"
    hits = sorted(debs.glob(f"{name}_*.deb"))
    exact = [h for h in hits if deb_field(h, "Version") == version]
    if exact or hits:
        return (exact or hits)[-1]
    debs.mkdir(parents=True, exist_ok=True)
    for spec in (f"{name}={version}", name):
        log(f"downloading {spec}")
        if subprocess.run(["apt-get", "download", "-q", spec], cwd=debs, stderr=subprocess.DEVNULL).returncode == 0:
            break
    return cached_deb(f"{name}_*.deb", name)


def kernel_headers():
    """The build directory (Kbuild's -C) for out-of-tree modules of the L2 kernel."""
    _, ver = kernel_tree()
    version = deb_field(kernel_deb(), "Version")
    hdr = cached_deb_version(f"linux-headers-{ver}", version)
    debs = [hdr]
    for dep in deb_field(hdr, "Depends").split(","):
        name = dep.split()[0] if dep.strip() else ""
        if name.startswith(("linux-headers-", "linux-kbuild-")):
            debs.append(cached_deb_version(name, version) if name.startswith("linux-headers-")
                        else cached_deb(f"{name}_*.deb", name))
    dest = CACHE / "headers"
    stamp = dest / ".extracted"
    names = "\n".join(d.name for d in debs)
    if not (stamp.exists() and stamp.read_text() == names):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for d in debs:
            log(f"extracting {d.name}")
            sh(["dpkg-deb", "-x", str(d), str(dest)])
        stamp.write_text(names)
    build = dest / f"usr/src/linux-headers-{ver}"
    # Its Makefile is "include /usr/src/linux-headers-<abi>-common/Makefile": point it here.
    mk = build / "Makefile"
    text = mk.read_text()
    fixed = re.sub(r"include /usr/src/", f"include {dest}/usr/src/", text)
    if fixed != text:
        mk.write_text(fixed)
    return build, ver


def build_l2_kmod(name):
    """lab/out/l2/NAME.ko built from L2_LOCAL_MODULES[name] (cached); None (with a warning) when
    it cannot be built, so that the rest of the lab still works."""
    src = L2_LOCAL_MODULES[name]
    out = L2OUT / f"{name}.ko"
    inputs = sorted(p for p in src.iterdir() if p.is_file())
    if newer(out, *inputs):
        return out
    try:
        missing = sorted({p for t, pkgs in KMOD_TOOLS.items() if not shutil.which(t) for p in pkgs})
        if missing:
            log(f"installing host packages: {' '.join(missing)}")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
        build, ver = kernel_headers()
        bdir = OUT / "build" / name
        if bdir.exists():
            shutil.rmtree(bdir)
        shutil.copytree(src, bdir)
        log(f"building {name}.ko against {build.name}")
        sh(["make", "-s", "-C", str(build), f"M={bdir}", "modules"], stdout=subprocess.DEVNULL)
        sh(["strip", "--strip-debug", str(bdir / f"{name}.ko")])  # 370 KB -> ~20 KB
        data = (bdir / f"{name}.ko").read_bytes()
        magic = [i for i in elf_sections(data).get(".modinfo", b"").split(b"\0") if i.startswith(b"vermagic=")]
        if not magic or not magic[0][9:].decode().startswith(ver + " "):
            raise RuntimeError(f"{name}.ko vermagic {magic} does not match {ver}")
        L2OUT.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
        log(f"{out}: {len(data)} bytes")
        return out
    except (subprocess.CalledProcessError, OSError, RuntimeError, SystemExit) as e:
        log(f"warning: cannot build {name}.ko ({e}); the L2 initramfs goes without it")
        return None


def cmd_fetch(_args=None):
    ensure_host_tools()
    ver = build_l2_payloads()
    busybox_bin()
    build_labrun()
    log(f"kernel {ver}: {L2OUT}/vmlinux, {L2OUT}/bzImage")


# ---------------------------------------------------------------- modules

def modinfo_depends(data):
    info = elf_sections(data).get(".modinfo", b"")
    for item in info.split(b"\0"):
        if item.startswith(b"depends="):
            return [d for d in item[8:].decode().split(",") if d]
    return []


def read_module(path):
    if path.suffix == ".xz":
        return subprocess.run(["xz", "-dc", str(path)], check=True, capture_output=True).stdout
    if path.suffix == ".zst":
        return subprocess.run(["zstd", "-dc", str(path)], check=True, capture_output=True).stdout
    return path.read_bytes()


def resolve_modules(names):
    """[(name, uncompressed .ko bytes)] for `names` and their dependencies, load order."""
    root, ver = kernel_tree()
    index = {}
    for p in (root / "lib/modules" / ver / "kernel").rglob("*.ko*"):
        index[re.sub(r"\.ko(\.xz|\.zst|\.gz)?$", "", p.name).replace("-", "_")] = p
    order, seen = [], set()

    def visit(name):
        key = name.replace("-", "_")
        if key in seen:
            return
        seen.add(key)
        if key not in index and key in L2_LOCAL_MODULES:  # built here (lab/l2/edu/ ...)
            built = build_l2_kmod(key)
            if built is None:
                return
            index[key] = built
        if key not in index:
            sys.exit(f"lab: module {name} not found in {ver}")
        data = read_module(index[key])
        for dep in modinfo_depends(data):
            visit(dep)
        order.append((key, data))

    for n in names:
        visit(n)
    return order


# ---------------------------------------------------------------- cpio (newc) writer

class Cpio:
    def __init__(self):
        self.buf = bytearray()
        self.ino = 1
        self.dirs = set()

    def _entry(self, name, mode, data=b"", rmaj=0, rmin=0):
        name = name.strip("/")
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0]
        self.ino += 1
        self.buf += b"070701" + "".join(f"{v:08x}" for v in fields).encode() + nb
        self.buf += b"\0" * (-len(self.buf) % 4)
        self.buf += data
        self.buf += b"\0" * (-len(self.buf) % 4)

    def _parents(self, path):
        parts = path.strip("/").split("/")[:-1]
        for i in range(len(parts)):
            self.dir("/".join(parts[:i + 1]))

    def dir(self, path):
        path = path.strip("/")
        if path and path not in self.dirs:
            self._parents(path)
            self.dirs.add(path)
            self._entry(path, 0o040755)

    def file(self, path, data, mode=0o644):
        if isinstance(data, Path):
            data = data.read_bytes()
        elif isinstance(data, str):
            data = data.encode()
        self._parents(path)
        self._entry(path, 0o100000 | mode, data)

    def symlink(self, path, target):
        self._parents(path)
        self._entry(path, 0o120777, target.encode())

    def chardev(self, path, major, minor):
        self._parents(path)
        self._entry(path, 0o020600, rmaj=major, rmin=minor)

    def bytes(self):
        out = Cpio()
        out.buf, out.ino = bytearray(self.buf), self.ino
        out._entry("TRAILER!!!", 0)
        out.buf += b"\0" * (-len(out.buf) % 512)
        return bytes(out.buf)


def busybox_skeleton(cpio, init_path):
    bb = busybox_bin()
    cpio.file("bin/busybox", bb, 0o755)
    applets = subprocess.run([str(bb), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            cpio.symlink(f"bin/{a}", "busybox")
    for d in ("proc", "sys", "dev", "tmp", "run", "root", "etc"):
        cpio.dir(d)
    cpio.symlink("sbin", "bin")
    cpio.symlink("usr/bin", "../bin")
    cpio.symlink("usr/sbin", "../bin")
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("init", Path(init_path), 0o755)


def add_modules(cpio, names, autoload=True):
    mods = resolve_modules(names)
    for name, data in mods:
        cpio.file(f"lib/modules/{name}.ko", data)
    order = "".join(f"{n}.ko\n" for n, _ in mods)
    cpio.file("lab/modules.order" if autoload else "lab/modules.avail", order)
    return [n for n, _ in mods]


# Modules every L2 initramfs carries but does not load: scenarios insmod what they need
# (loading costs boot time, so the plain boot scenarios load nothing).
L2_AVAILABLE_MODULES = ["button", "evdev", "virtio_pci", "virtio_blk", "virtio_net", "virtio_rng", "virtio_console",
                        "vmw_vsock_virtio_transport", "virtiofs"]


# ---------------------------------------------------------------- L2 initramfs

def build_l2_initrd(modules=()):
    out = L2OUT / "initramfs.cpio.gz"
    barpoke = build_static_tool("bar-poke")
    hostile = build_static_tool("hostile")
    vsockg = build_static_tool("vsock-guest")
    fsx = build_static_tool("fsx-lite")
    kmods = [k for k in (build_l2_kmod(n) for n in L2_LOCAL_MODULES) if k]
    inputs = [LAB / "l2/init", *sorted((LAB / "l2/scenarios").glob("*")), LAB / "lab.py", barpoke, hostile,
              vsockg, fsx, *kmods]
    if modules:
        out = L2OUT / f"initramfs-{'-'.join(modules)}.cpio.gz"
    if newer(out, *inputs) and (CACHE / "busybox/.extracted").exists():
        return out
    cpio = Cpio()
    busybox_skeleton(cpio, LAB / "l2/init")
    for p in sorted((LAB / "l2/scenarios").glob("*")):
        cpio.file(f"lab/scenarios/{p.name}", p)
    cpio.file("bin/bar-poke", barpoke, 0o755)
    cpio.file("bin/hostile", hostile, 0o755)
    cpio.file("bin/vsock-guest", vsockg, 0o755)
    cpio.file("bin/fsx-lite", fsx, 0o755)
    if modules:
        add_modules(cpio, list(modules))
    else:
        add_modules(cpio, L2_AVAILABLE_MODULES + list(L2_LOCAL_MODULES), autoload=False)
    L2OUT.mkdir(parents=True, exist_ok=True)
    raw = cpio.bytes()
    out.with_suffix("").write_bytes(raw)  # the same, uncompressed (initramfs.cpio)
    out.write_bytes(gzip.compress(raw, 6))
    log(f"L2 initramfs: {out} ({out.stat().st_size} bytes; uncompressed {len(raw)})")
    return out


def cmd_l2_initrd(args):
    cmd_fetch()
    build_l2_initrd(args.modules.split(",") if args.modules else ())


# ---------------------------------------------------------------- an L1 kernel with iommufd

# No Debian kernel enables CONFIG_IOMMUFD (checked: bookworm's 6.1, bookworm-backports' 6.12,
# trixie's 6.12, trixie-backports' 7.3, cloud and generic flavours), so the iommufd scenarios
# boot L1 on this one: Debian's linux-source-6.12 with Debian's cloud configuration, iommufd
# and VFIO device cdevs on, and everything L1 needs built in (no modules to load). It also has
# the kernel's mtty sample (SAMPLE_VFIO_MDEV_MTTY): a mediated device parent, whose mdevs (a
# two-port 16550 PCI card that loops back what is written) the mdev scenarios pass to L2.
L1_KERNEL_BUILTIN = ["irqbypass", "kvm", "kvm_amd", "vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci",
                     "iommufd", "tun", "igb", "igbvf", "virtio_pci", "mdev", "mtty"]
L1_KERNEL_CONFIG = ["-m", "IOMMUFD", "-e", "VFIO_DEVICE_CDEV", "-m", "IGB", "-m", "IGBVF",
                    "-e", "SAMPLES", "-m", "SAMPLE_VFIO_MDEV_MTTY",
                    "-d", "DEBUG_INFO_BTF", "-d", "DEBUG_INFO_DWARF5", "-d", "DEBUG_INFO_DWARF4",
                    "-d", "DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT", "-e", "DEBUG_INFO_NONE",
                    "-d", "MODULE_SIG", "-d", "MODULE_SIG_ALL", "-d", "MODULE_SIG_FORCE",
                    "--set-str", "SYSTEM_TRUSTED_KEYS", "", "--set-str", "SYSTEM_REVOCATION_KEYS", "",
                    "--set-str", "MODULE_SIG_KEY", "", "-d", "SECURITY_LOCKDOWN_LSM",
                    "--set-str", "LOCALVERSION", "-lab-iommufd"]
L1_KERNEL_BUILD_DEPS = ["bc", "bison", "flex", "libelf-dev", "libssl-dev", "xz-utils", "cpio"]


def build_l1_kernel():
    """lab/cache/l1-kernel/bzImage, built once (about 25 min on 2 cores)."""
    base = CACHE / "l1-kernel"
    out = base / "bzImage"
    # What it was built with: another configuration builds it again.
    key = base / "key"
    want_key = json.dumps([L1_KERNEL_BUILTIN, L1_KERNEL_CONFIG])
    if out.exists() and key.exists() and key.read_text() == want_key:
        return out
    missing = [p for p in L1_KERNEL_BUILD_DEPS
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        sh(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=env)
    src_deb = cached_deb("linux-source-6.12_*.deb", "linux-source-6.12")
    cfg_deb = cached_deb("linux-config-6.12_*.deb", "linux-config-6.12")
    debs = base / "debs"
    if debs.exists():
        shutil.rmtree(debs)
    debs.mkdir(parents=True)
    for d in (src_deb, cfg_deb):
        sh(["dpkg-deb", "-x", str(d), str(debs)])
    tree = base / "src"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir()
    tarball = next((debs / "usr/src").glob("linux-source-6.12.tar.*"))
    log(f"extracting {tarball.name}")
    sh(["tar", "xf", str(tarball), "-C", str(tree), "--strip-components=1"])
    cfg = next((debs / "usr/src").glob("linux-config-6.12/config.amd64_none_cloud-amd64.xz"))
    (tree / ".config").write_bytes(subprocess.run(["xz", "-dc", str(cfg)], check=True,
                                                  capture_output=True).stdout)
    sh(["scripts/config", *L1_KERNEL_CONFIG], cwd=tree)
    sh(["make", "olddefconfig"], cwd=tree, stdout=subprocess.DEVNULL)
    lsmod = base / "lsmod"
    lsmod.write_text("Module Size Used by\n" + "".join(f"{m} 16384 0\n" for m in L1_KERNEL_BUILTIN))
    sh(["make", f"LSMOD={lsmod}", "localyesconfig"], cwd=tree, stdout=subprocess.DEVNULL)
    conf = (tree / ".config").read_text()
    for want in ("CONFIG_IOMMUFD=y", "CONFIG_VFIO_DEVICE_CDEV=y", "CONFIG_VFIO_PCI=y", "CONFIG_KVM_AMD=y",
                 "CONFIG_SAMPLE_VFIO_MDEV_MTTY=y"):
        if want not in conf.splitlines():
            sys.exit(f"lab: the L1 kernel configuration lacks {want}")
    log("building the L1 kernel (make bzImage; about 25 min on 2 cores)")
    sh(["make", f"-j{os.cpu_count() or 2}", "bzImage"], cwd=tree, stdout=subprocess.DEVNULL)
    shutil.copyfile(tree / "arch/x86/boot/bzImage", out)
    shutil.copyfile(tree / ".config", base / "config")
    key.write_text(want_key)
    shutil.rmtree(tree)
    shutil.rmtree(debs)
    log(f"L1 kernel: {out}")
    return out


# ---------------------------------------------------------------- another QEMU for L1

# QEMU 10 from bookworm-backports (the host's 7.2 has no igb, whose SR-IOV VFs the VF scenario
# passes), extracted under lab/cache/qemu-bpo with a private apt state; it runs with its own
# firmware directory and modules.
QEMU_BPO_PACKAGES = ["qemu-system-x86", "qemu-system-common", "qemu-system-data"]


def l0_qemu(which):
    """The QEMU command (argv prefix) that runs L1: the host's, 'bpo' (see above), or a path."""
    if not which:
        return ["qemu-system-x86_64"]
    if which != "bpo":
        return [which]
    base = CACHE / "qemu-bpo"
    root, debs, state = base / "root", base / "debs", base / "apt"
    binary = root / "usr/bin/qemu-system-x86_64"
    if not binary.exists():
        opts = private_apt(state, "bookworm-backports", "for QEMU 10")
        debs.mkdir(parents=True, exist_ok=True)
        for pkg in QEMU_BPO_PACKAGES:
            if not sorted(debs.glob(f"{pkg}_*.deb")):
                sh(["apt-get", *opts, "download", "-q", f"{pkg}/bookworm-backports"], cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            sh(["dpkg-deb", "-x", str(deb), str(root)])
        if not binary.exists():
            sys.exit("lab: bookworm-backports' qemu-system-x86 has no qemu-system-x86_64")
    os.environ["QEMU_MODULE_DIR"] = str(root / "usr/lib/x86_64-linux-gnu/qemu")
    return [str(binary), "-L", str(root / "usr/share/qemu"), "-L", "/usr/share/seabios"]


# ---------------------------------------------------------------- L1 initramfs

def build_l1_base():
    """Everything but the vmm and the scenario list; cached in lab/out/l1/base.cpio."""
    cmd_fetch()
    l2init = build_l2_initrd()
    labrun = build_labrun()
    api = build_static_tool("api")
    vsockh = build_static_tool("vsock-host")
    vfsd = trixie_virtiofsd()
    out = L1OUT / "base.cpio"
    inputs = [LAB / "l1/init", LAB / "lab.py", labrun, api, vsockh, l2init, L2OUT / "vmlinux", L2OUT / "bzImage",
              vfsd / ".extracted"]
    if newer(out, *inputs):
        return out
    cpio = Cpio()
    busybox_skeleton(cpio, LAB / "l1/init")
    cpio.file("bin/labrun", labrun, 0o755)
    # The REST API client for the api-* scenarios (lab/tools/api.c).
    cpio.file("bin/api", api, 0o755)
    # The host end of the vsock scenario (lab/tools/vsock-host.c).
    cpio.file("bin/vsock-host", vsockh, 0o755)
    # virtiofsd for the virtiofs scenario: Debian trixie's (bookworm has none), with the trixie
    # libraries it needs, run through their own loader by /bin/virtiofsd.
    for rel, dest in TRIXIE_VIRTIOFSD_FILES.items():
        cpio.file(f"lab/trixie/{dest}", vfsd / rel, 0o755)
    cpio.file("bin/virtiofsd", "#!/bin/sh\nexec /lab/trixie/ld-linux-x86-64.so.2 --library-path "
              "/lab/trixie /lab/trixie/virtiofsd \"$@\"\n", 0o755)
    mods = add_modules(cpio, L1_MODULES)
    for f in ("vmlinux", "bzImage", "initramfs.cpio.gz", "initramfs.cpio", "kernel.version"):
        cpio.file(f"lab/l2/{f}", L2OUT / f)
    L1OUT.mkdir(parents=True, exist_ok=True)
    # Uncompressed: gunzip inside L1 under TCG cost ~2.4 s of boot (measured), the larger file nothing.
    out.write_bytes(cpio.bytes())
    log(f"L1 base initramfs: {out} ({out.stat().st_size} bytes, modules: {' '.join(mods)})")
    return out


# Debian trixie's virtiofsd and the libraries it links (trixie's glibc: the host's bookworm one
# is too old for it), as (path in the extracted debs -> name under /lab/trixie in L1).
TRIXIE_PACKAGES = ["virtiofsd", "libc6", "libcap-ng0", "libseccomp2", "libgcc-s1"]
TRIXIE_VIRTIOFSD_FILES = {
    "usr/libexec/virtiofsd": "virtiofsd",
    "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2": "ld-linux-x86-64.so.2",
    "usr/lib/x86_64-linux-gnu/libc.so.6": "libc.so.6",
    "usr/lib/x86_64-linux-gnu/libm.so.6": "libm.so.6",
    "usr/lib/x86_64-linux-gnu/libcap-ng.so.0": "libcap-ng.so.0",
    "usr/lib/x86_64-linux-gnu/libseccomp.so.2": "libseccomp.so.2",
    "usr/lib/x86_64-linux-gnu/libgcc_s.so.1": "libgcc_s.so.1",
}


def private_apt(state, suite, why):
    """apt-get options for Debian `suite` with its own package lists under `state` (updated
    now), so the host's sources stay as they are."""
    (state / "lists/partial").mkdir(parents=True, exist_ok=True)
    (state / "sources.list").write_text(f"deb http://deb.debian.org/debian {suite} main\n")
    opts = ["-o", f"Dir::Etc::sourcelist={state / 'sources.list'}", "-o", "Dir::Etc::sourceparts=-",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", "APT::Get::List-Cleanup=0"]
    log(f"fetching Debian {suite}'s package lists ({why})")
    sh(["apt-get", *opts, "update", "-qq"])
    return opts


def trixie_virtiofsd():
    """lab/cache/trixie/root: virtiofsd and its libraries from Debian trixie, extracted. Uses
    a private apt state (lab/cache/trixie/apt) so the host's sources stay as they are."""
    base = CACHE / "trixie"
    root, debs, state = base / "root", base / "debs", base / "apt"
    stamp = root / ".extracted"
    if stamp.exists() and all((root / f).exists() for f in TRIXIE_VIRTIOFSD_FILES):
        return root
    opts = private_apt(state, "trixie", "for virtiofsd")
    debs.mkdir(parents=True, exist_ok=True)
    for pkg in TRIXIE_PACKAGES:
        if not sorted(debs.glob(f"{pkg}_*.deb")):
            log(f"downloading trixie's {pkg}")
            sh(["apt-get", *opts, "download", "-q", pkg], cwd=debs)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        sh(["dpkg-deb", "-x", str(deb), str(root)])
    missing = [f for f in TRIXIE_VIRTIOFSD_FILES if not (root / f).exists()]
    if missing:
        sys.exit(f"lab: trixie packages lack {missing}")
    stamp.write_text(" ".join(sorted(d.name for d in debs.glob("*.deb"))))
    return root


def shared_libs(binary):
    """Files a dynamically linked binary needs (per ldd), including the loader."""
    res = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    libs = []
    for line in res.stdout.splitlines():
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


REF_QEMU = "/usr/bin/qemu-system-x86_64"
REF_QEMU_DATA = ["/usr/share/qemu/bios-microvm.bin", "/usr/share/qemu/qboot.rom", "/usr/share/qemu/pvh.bin",
                 "/usr/share/qemu/linuxboot_dma.bin", "/usr/share/qemu/linuxboot.bin",
                 "/usr/share/qemu/kvmvapic.bin", "/usr/share/seabios/bios-256k.bin"]


def build_ref_qemu():
    """Cached cpio segment with the host's QEMU (+ libraries, x86 firmware) as a reference VMM in L1."""
    out = L1OUT / "ref-qemu.cpio"
    if newer(out, REF_QEMU):
        return out
    cpio = Cpio()
    cpio.file(REF_QEMU, Path(REF_QEMU), 0o755)
    for lib in shared_libs(REF_QEMU):
        cpio.file(lib, Path(os.path.realpath(lib)), 0o755)
    for f in REF_QEMU_DATA:
        if os.path.exists(f):
            cpio.file(f, Path(os.path.realpath(f)))
    L1OUT.mkdir(parents=True, exist_ok=True)
    out.write_bytes(cpio.bytes())
    log(f"reference QEMU segment: {out} ({out.stat().st_size} bytes)")
    return out


def build_run_cpio(bins, scenarios, vfio, env):
    """Small uncompressed cpio with the binaries ({L1 path: host path}, e.g. {"lab/vmm": vmm}),
    their libraries and the generated scenario list."""
    cpio = Cpio()
    libs = set()
    for dest, src in bins.items():
        cpio.file(dest, Path(src), 0o755)
        libs.update(shared_libs(src))
    for lib in sorted(libs):
        cpio.file(lib, Path(os.path.realpath(lib)), 0o755)
    lines = ["# generated by lab.py from scenarios.txt"]
    for sc in scenarios:
        marks = sc["marks"] + [m for m in FORBIDDEN_MARKS if m not in sc["marks"]]
        lines.append(" ".join(shlex.quote(x) for x in
                              ["run", sc["name"], sc["exit"], sc["timeout"], ",".join(sc.get("needs", [])) or "-",
                               sc["cmd"], *marks]))
    cpio.file("lab/scenarios.sh", "\n".join(lines) + "\n")
    # Longer scenario commands live in lab/l1/scenarios/NAME.sh, run in L1 as /lab/l1/NAME.sh.
    for p in sorted((LAB / "l1/scenarios").glob("*.sh")):
        cpio.file(f"lab/l1/{p.name}", p, 0o755)
    cpio.file("lab/vfio.list", "".join(f"{v}\n" for v in vfio))
    cpio.file("lab/env.sh", "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return cpio.bytes()


# ---------------------------------------------------------------- scenarios

# Markers no scenario may show (a '!' marker must be absent from the output): a guest kernel
# panic (with panic=-1 the guest then resets, which the vmm reports as a clean exit 0, so a
# broken ACPI poweroff or a guest that died after its last marker would otherwise pass) and
# the L2 /init's own error lines (a poweroff or reboot that did not take effect).
FORBIDDEN_MARKS = ["!Kernel panic", "!LAB-L2-ERROR"]


def load_scenarios(path):
    """name [optional] [needs=BDF[=DRIVER],...] | exit | timeout_s | marker; marker; ... | shell command
    (see scenarios.txt)"""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", 4)]
        if len(parts) != 5:
            sys.exit(f"lab: {path}:{n}: bad scenario line (want 5 '|'-separated fields)")
        name, code, tmo, marks, cmd = parts
        name, *flags = name.split()
        optional, needs = False, []
        for fl in flags:
            if fl == "optional":
                optional = True
            elif fl.startswith("needs="):
                for nd in fl[len("needs="):].split(","):
                    bdf, _, drv = nd.partition("=")
                    if not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", bdf):
                        sys.exit(f"lab: {path}:{n}: bad needs= entry {nd!r} (want BDF[=DRIVER])")
                    needs.append(f"{bdf}={drv or 'vfio-pci'}")
            else:
                sys.exit(f"lab: {path}:{n}: bad scenario name field (unknown flag {fl!r})")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            sys.exit(f"lab: {path}:{n}: bad scenario name field")
        out.append({"name": name, "exit": code, "timeout": tmo, "cmd": cmd, "optional": optional,
                    "needs": needs, "marks": [m.strip() for m in marks.split(";") if m.strip()]})
    return out


def cmd_list(args):
    scenarios = load_scenarios(args.scenario_file)
    if args.scenarios or args.names:
        scenarios = select_scenarios(scenarios, args.scenarios)
    if args.names:
        print("\n".join(sc["name"] for sc in scenarios))
        return
    for sc in scenarios:
        opt = " (optional)" if sc["optional"] else ""
        needs = f" needs {','.join(sc['needs'])}" if sc["needs"] else ""
        print(f"{sc['name']:16} exit={sc['exit']:3} timeout={sc['timeout']:>3}s{opt}{needs}  {sc['cmd']}")
        for m in sc["marks"] + FORBIDDEN_MARKS:
            print(f"{'':16}   {'absent' if m.startswith('!') else 'expect'}: {m.lstrip('!')}")


# ---------------------------------------------------------------- run

def select_scenarios(all_sc, patterns):
    if not patterns:
        return [s for s in all_sc if not s["optional"]]
    scenarios = []
    for w in patterns.split(","):
        hits = [s for s in all_sc if fnmatch.fnmatchcase(s["name"], w) and s not in scenarios]
        if not hits and not any(fnmatch.fnmatchcase(s["name"], w) for s in all_sc):
            sys.exit(f"lab: no scenario matches {w} (see lab/lab.py list)")
        scenarios += hits
    return scenarios


def prepare_l1(args, rundir, bins, scenarios, env, ref_qemu=False):
    """Write rundir/l1-initrd.img and rundir/qemu.cmd; return the QEMU command line for L1.
    Uses args.{vfio,device,qemu_arg,mem,smp,append,shell}."""
    base = build_l1_base()
    rundir.mkdir(parents=True, exist_ok=True)
    segments = [base]
    if ref_qemu or any("$QEMU" in s["cmd"] for s in scenarios):
        segments.append(build_ref_qemu())
        env.setdefault("QEMU", REF_QEMU)
    kernel = CACHE / "kernel/boot" / f"vmlinuz-{(L2OUT / 'kernel.version').read_text().strip()}"
    if getattr(args, "l1_kernel", ""):
        kernel = build_l1_kernel() if args.l1_kernel == "iommufd" else Path(args.l1_kernel).resolve()
        # Also for L2 (the VF scenario's guest needs its igbvf driver): $L1_KERNEL_IMAGE.
        bins = dict(bins, **{"lab/l2/bzImage-l1": str(kernel)})
        env.setdefault("L1_KERNEL_IMAGE", "/lab/l2/bzImage-l1")
    initrd = rundir / "l1-initrd.img"
    with open(initrd, "wb") as f:  # the kernel unpacks concatenated (compressed) cpio archives
        f.write(build_run_cpio(bins, scenarios, args.vfio, env))
        for seg in segments:
            with open(seg, "rb") as b:
                shutil.copyfileobj(b, f)

    append = L1_APPEND + (" lab.shell=1" if args.shell else "") + (" " + args.append if args.append else "")
    qemu = [*l0_qemu(getattr(args, "qemu", "")), "-accel", "tcg", "-M", "q35", "-cpu", "EPYC", "-m", str(args.mem),
            "-smp", str(args.smp), "-nographic", "-no-reboot",
            "-device", "intel-iommu,intremap=on",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append,
            # For boot_l1's kicks (see kick_if_stuck).
            "-monitor", f"unix:{rundir / 'monitor.sock'},server,nowait"]
    for o in getattr(args, "object", []):
        qemu += ["-object", o]
    for d in args.device:
        qemu += ["-device", d]
    qemu += args.qemu_arg
    (rundir / "qemu.cmd").write_text(shlex.join(qemu) + "\n")
    log(f"run dir {rundir}")
    log("qemu: " + shlex.join(qemu))
    return qemu


# QEMU 7.2's TCG (bookworm's, the lab's L0) sometimes leaves L1's pending LAPIC timer interrupt
# undelivered after L1's KVM ran a nested guest: L1 then sits in HLT with IF=1 and vector 0xec in
# its IRR for good (seen in snapshot-disk, 1 run in 5: `info lapic` and `info registers` in the
# monitor; an NMI runs and changes nothing; L1's kernel, once woken, reports "rcu_preempt kthread
# timer wakeup didn't happen ... Possible timer handling issue"). Any new interrupt at its APIC
# makes QEMU look at the IRR again and deliver it: a key press does. So when L1 has printed
# nothing for KICK_SILENCE_S seconds and QEMU has used under 10% of a CPU meanwhile (a busy L1
# keeps it at ~100%), boot_l1 presses Shift on L1's PS/2 keyboard (nothing reads it) and logs it.
KICK_SILENCE_S = 8


def qemu_cpu_seconds(pid):
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def kick_l1(rundir):
    """Press Shift on L1's keyboard through the QEMU monitor; whether it was sent."""
    import socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2)
            s.connect(str(rundir / "monitor.sock"))
            s.sendall(b"sendkey shift\n")
            time.sleep(0.2)
        return True
    except OSError:
        return False


def boot_l1(qemu, rundir, timeout, quiet):
    """Run L1 to completion, logging the console to rundir/console.log (and stdout unless quiet).
    Returns a dict: lines (console lines), marks ({L1 marker: s}), results ({scenario: (PASS|FAIL,
    details)}), total (s), timed_out."""
    console = open(rundir / "console.log", "w")
    t0 = time.monotonic()
    marks, results, seen = {}, {}, []
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    os.set_blocking(proc.stdout.fileno(), False)
    pending = b""
    timed_out = False
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    # L1 counts as stuck once it has printed nothing and QEMU has used under 10% of a CPU, both
    # for KICK_SILENCE_S seconds.
    last_output = idle_since = last_sample = time.monotonic()
    last_cpu, kicks = qemu_cpu_seconds(proc.pid), []
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            timed_out = True
            proc.kill()
            break
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                break
            now, cpu = time.monotonic(), qemu_cpu_seconds(proc.pid)
            if cpu is None or last_cpu is None or cpu - last_cpu > 0.1 * (now - last_sample):
                idle_since = now
            last_cpu, last_sample = cpu, now
            quiet_for = now - max(last_output, idle_since)
            if quiet_for >= KICK_SILENCE_S and kick_l1(rundir):
                t = now - t0
                kicks.append(t)
                note = (f"lab: L1 silent and QEMU idle for {quiet_for:.0f} s: pressed a key to wake L1 "
                        f"(QEMU TCG lost-interrupt workaround, lab.py KICK_SILENCE_S)")
                console.write(f"{t:8.3f} {note}\n")
                console.flush()
                log(note)
                idle_since = now
            continue
        chunk = proc.stdout.read()
        if not chunk:
            if proc.poll() is not None or chunk == b"":
                break
            continue
        pending += chunk
        last_output = time.monotonic()
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            t = time.monotonic() - t0
            seen.append(line)
            console.write(f"{t:8.3f} {line}\n")
            console.flush()
            if not quiet and "TCG doesn't support requested feature" not in line:
                print(line, flush=True)
            for key in ("LAB-L1-INIT-START", "LAB-L1-KVM-READY", "LAB-L1-KVM-MISSING", "LAB-L1-DONE"):
                if key in line and key not in marks:
                    marks[key] = t
            m = re.search(r"LAB-RESULT (\S+) (PASS|FAIL|SKIP) (.*)", line)
            if m:
                results[m.group(1)] = (m.group(2), m.group(3))
    proc.wait()
    if pending:
        console.write(pending.decode(errors="replace") + "\n")
        seen.append(pending.decode(errors="replace"))
    console.close()
    return {"lines": seen, "marks": marks, "results": results, "timed_out": timed_out,
            "total": time.monotonic() - t0, "kicks": kicks}


def host_summary(l1, rundir):
    """Print the host-side L1 marks; return 1 when L1 never finished (or timed out)."""
    for key, t in l1["marks"].items():
        print(f"  host: {key} at {t:.2f}s after QEMU start")
    print(f"  host: QEMU ran {l1['total']:.1f}s{' (TIMED OUT, killed)' if l1['timed_out'] else ''}, "
          f"console log {rundir / 'console.log'}")
    if l1.get("kicks"):
        print(f"  host: L1 was woken {len(l1['kicks'])} time(s) by a key press after it sat idle with a timer "
              f"interrupt pending (QEMU TCG; see KICK_SILENCE_S in lab.py), at "
              f"{', '.join(f'{k:.0f}' for k in l1['kicks'])} s")
    if "LAB-L1-DONE" not in l1["marks"]:
        print("  L1 never reported LAB-L1-DONE")
        return 1
    return 1 if l1["timed_out"] else 0


# ---------------------------------------------------------------- host-side checks

HOST_CHECKS = LAB / "host-checks.txt"


def parse_size(text):
    """64G, 1G, 4K, 0x40000000, 4096 -> bytes"""
    m = re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)([KMGT]?)", text.strip())
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1), 0) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2)]


def load_host_checks(path=HOST_CHECKS):
    """{scenario: [(file, size, [(offset, pattern, length), ...]), ...]} from host-checks.txt:
    scenario | host file | size | OFFSET:HEXPATTERN:LEN ..."""
    out = {}
    if not Path(path).exists():
        return out
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            name, fname, size, checks = [x.strip() for x in line.split("|", 3)]
            items = []
            for tok in checks.split():
                off, pat, ln = tok.split(":")
                items.append((parse_size(off), bytes.fromhex(pat), parse_size(ln)))
            out.setdefault(name, []).append((str(ROOT / fname), parse_size(size), items))
        except ValueError as e:
            sys.exit(f"lab: {path}:{n}: bad host check line ({e})")
    return out


def host_checks_prepare(scenarios):
    """The host checks of the selected scenarios; their files are recreated, sparse and empty,
    so that a pattern found after the run was written by this run."""
    checks = load_host_checks()
    sel = {sc["name"]: checks[sc["name"]] for sc in scenarios if sc["name"] in checks}
    made = set()
    for entries in sel.values():
        for fname, size, _ in entries:
            if fname in made:
                continue
            made.add(fname)
            Path(fname).unlink(missing_ok=True)
            with open(fname, "wb") as f:
                f.truncate(size)
            log(f"host check: fresh sparse file {fname} ({size} bytes)")
    return sel


def host_checks_run(sel):
    """Run the checks after L1 (QEMU) exited: {scenario: (ok, summary)}; prints LAB-HOST-CHECK lines."""
    out = {}
    for name, entries in sel.items():
        good = total = 0
        for fname, _, items in entries:
            for off, pat, ln in items:
                total += 1
                want = (pat * (ln // len(pat) + 1))[:ln]
                try:
                    with open(fname, "rb") as f:
                        f.seek(off)
                        got = f.read(ln)
                except OSError as e:
                    got = f"{e}".encode()
                ok = got == want
                good += ok
                print(f"LAB-HOST-CHECK {name} {fname} off={off:#x} len={ln} pattern={pat.hex()} "
                      + ("PASS" if ok else f"FAIL got={got[:16].hex()}"))
        out[name] = (good == total, f"host-check={good}/{total}")
    return out


def cmd_run(args):
    scenarios = select_scenarios(load_scenarios(args.scenario_file), args.scenarios)
    vmm = args.vmm
    if vmm and not Path(vmm).is_file():
        log(f"warning: vmm binary {vmm} not found; scenarios that use $VMM will fail")
        vmm = None

    name = args.name or time.strftime("run-%Y%m%d-%H%M%S")
    rundir = OUT / name
    env = dict(kv.split("=", 1) for kv in args.env)
    qemu = prepare_l1(args, rundir, {"lab/vmm": vmm} if vmm else {}, scenarios, env, args.ref_qemu)
    host_checks = host_checks_prepare(scenarios)

    if args.shell:
        return subprocess.call(qemu)

    timeout = args.timeout or (90 + sum(int(s["timeout"]) + 5 for s in scenarios))
    l1 = boot_l1(qemu, rundir, timeout, args.quiet)
    results = l1["results"]
    # Scenarios with host-side checks (host-checks.txt) pass only when those pass too (a
    # scenario L1 skipped stays SKIP: its file was never written).
    for name, (ok, summary) in host_checks_run(host_checks).items():
        res, detail = results.get(name, ("MISSING", "no LAB-RESULT line"))
        if res != "SKIP":
            results[name] = (res if ok else "FAIL", f"{detail} {summary}")

    print()
    print(f"{'scenario':18} {'result':7} details")
    fails = 0
    for sc in scenarios:
        res, detail = results.get(sc["name"], ("MISSING", "no LAB-RESULT line"))
        fails += res not in ("PASS", "SKIP")
        print(f"{sc['name']:18} {res:7} {detail}")
    fails += host_summary(l1, rundir)
    with open(rundir / "results.txt", "w") as f:
        for sc in scenarios:
            res, detail = results.get(sc["name"], ("MISSING", ""))
            f.write(f"{sc['name']} {res} {detail}\n")
    return 1 if fails else 0


# ---------------------------------------------------------------- bench

BENCH_KERNELS = {"pvh": "$VMLINUX", "bzimage": "$BZIMAGE"}
BENCH_MARKS = ["LAB-L2-INIT-START", "LAB-L2-DONE"]
# A vmm given a passed device (--vmm-args with --device) boots the L2 "edu" scenario instead of
# "boot": edu_test.ko's self-test DMAs RAM -> device -> RAM through it and compares. A VFIO boot
# figure counts only with a guest that DMAs through the device in the same run: a run of such a
# vmm without this line (no edu, a DMA that failed or never completed) fails the bench.
BENCH_DMA_MARK = "EDU-TEST dma-compare len=4095 mismatched=0 PASS"


def bench_passes_device(args):
    """True when vmm arguments (shell words) pass a device through (--device path=...)."""
    return re.search(r"(^|\s)--device[\s=]", args) is not None


def bench_vmms(specs):
    """[{label, path, ours, qemu}] from --vmm [LABEL=]PATH. `ours`: an ELF that logs boot-phase
    lines (gets -v); `qemu`: a script that runs $QEMU (needs the packed reference QEMU)."""
    vmms, labels = [], set()
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or "/" in label:
            label, path = "", spec
        path = str(Path(path).resolve()) if Path(path).exists() else path
        if not Path(path).is_file():
            sys.exit(f"lab: bench: vmm {path} not found")
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", label or re.sub(r"\.(sh|py)$", "", Path(path).name))
        base, n = label, 2
        while label in labels:
            label, n = f"{base}-{n}", n + 1
        labels.add(label)
        data = Path(path).read_bytes()
        vmms.append({"label": label, "path": path,
                     "ours": data.startswith(b"\x7fELF") and b"boot-phase " in data,
                     "qemu": data.startswith(b"#!") and (b"$QEMU" in data or b"${QEMU" in data)})
    return vmms


def bench_vmm_args(vmms, items):
    """--vmm-args ARGS goes to every vmm; --vmm-args LABEL=ARGS only to that one."""
    extra = {v["label"]: [] for v in vmms}
    for it in items:
        m = re.match(r"([A-Za-z0-9_.-]+)=(.*)$", it, re.S)
        if m and m.group(1) in extra:
            extra[m.group(1)].append(m.group(2))
        else:
            for v in extra.values():
                v.append(it)
    return {k: " ".join(v) for k, v in extra.items()}


def parse_bench_console(lines):
    """{scenario: record} from the L1 console: labrun's prefixed output and LABRUN lines."""
    runs, cur = {}, None
    for line in lines:
        m = re.search(r"LAB-SCENARIO-START (\S+):", line)
        if m:
            cur = m.group(1)
            runs[cur] = {"phases": {}, "marks": {}, "cmd": None}
            continue
        if cur is None:
            continue
        r = runs[cur]
        m = re.match(r"\[(\S+)\] +[\d.]+\| ?(.*)$", line)
        if m and m.group(1) == cur:
            out = m.group(2)
            u = re.search(r"LAB-L2-INIT-START uptime=([\d.]+)", out)
            if u and "uptime" not in r:
                r["uptime"] = float(u.group(1)) * 1e3
            u = re.search(r"LAB-EDU-FIRST-DMA uptime=([\d.]+)", out)
            if u and "k_dma" not in r:
                r["k_dma"] = float(u.group(1)) * 1e3
            ph = re.search(r"boot-phase (\S+) \+([\d.]+)ms", out)
            if ph:
                r["phases"].setdefault(ph.group(1), float(ph.group(2)))
            if out.startswith("+ exec ") and r["cmd"] is None:
                r["cmd"] = out[len("+ exec "):]
            continue
        m = re.match(r"LABRUN mark=(.*) ms=([\d.]+)$", line)
        if m:
            r["marks"][m.group(1)] = float(m.group(2))
            continue
        m = re.match(r"LABRUN exit=(\d+) ms=([\d.]+) timeout=(\S+)", line)
        if m:
            r["code"], r["ms"], r["tmo"] = int(m.group(1)), float(m.group(2)), m.group(3)
            continue
        if re.search(rf"LAB-RESULT {re.escape(cur)} ", line):
            cur = None
    for r in runs.values():
        r["init"] = r["marks"].get("LAB-L2-INIT-START")
        r["to_dma"] = r["marks"].get(BENCH_DMA_MARK)
        r["done"] = r["marks"].get("LAB-L2-DONE")
        r["kstart"] = r["init"] - r["uptime"] if r["init"] is not None and "uptime" in r else None
        tmo = r.get("tmo")
        r["exit"] = ("missing" if tmo is None else "timeout" if tmo == "grace"
                     else "run-timeout" if tmo == "1" else str(r["code"]))
        # Wall time only counts when the vmm exited by itself (not killed by labrun).
        r["wall"] = r["ms"] if tmo == "0" else None
    return runs


def stats(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    n = len(vals)
    med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
    return med, vals[0], vals[-1], n


def fmt_stat(vals, total):
    st = stats(vals)
    if not st:
        return "-"
    med, lo, hi, n = st
    return f"{med:.0f} [{lo:.0f}-{hi:.0f}]" + (f" n={n}" if n != total else "")


def file_id(path):
    import hashlib
    st = os.stat(path)
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    return f"{st.st_size} bytes, mtime {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}, sha256 {h}"


def cmd_bench(args):
    vmms = bench_vmms(args.vmm or [os.environ.get("VMM", str(ROOT / "target/release/vmm"))])
    kinds = ["pvh", "bzimage"] if args.kernel == "both" else [args.kernel]
    extra = bench_vmm_args(vmms, args.vmm_args)
    dma = {v["label"]: bench_passes_device(extra[v["label"]]) for v in vmms}
    bins, scenarios, plan = {}, [], []
    for v in vmms:
        bins[f"lab/bench/{v['label']}"] = v["path"]
    base_cmd = {}
    for v in vmms:
        for kind in kinds:
            base_cmd[v["label"], kind] = " ".join(x for x in [
                f"/lab/bench/{v['label']} --kernel {BENCH_KERNELS[kind]} --initramfs $INITRD",
                f'--cmdline "$CMDLINE quiet lab.scenario={"edu" if dma[v["label"]] else "boot"}"',
                f"--cpus boot={args.cpus} --memory size={args.memory} --serial tty --console off",
                "-v" if v["ours"] else "", extra[v["label"]]] if x)
    # Interleaved: run 1 of every vmm (and kernel kind), then run 2, ...; warm-up runs first.
    # --rotate starts each round one vmm later (A B C, B C A, ...), so that no vmm always runs
    # right after the same other one (whose exit, e.g. unpinning gigabytes of DMA-mapped RAM
    # in L1, may still be going on); --settle S sleeps S s in L1 before every run, uncounted.
    for n, i in enumerate(list(range(-args.warmup, 0)) + list(range(1, args.runs + 1))):
        order = vmms[n % len(vmms):] + vmms[:n % len(vmms)] if args.rotate else vmms
        for kind in kinds:
            for v in order:
                name = f"{'w%d' % -i if i < 0 else 'r%d' % i}-{v['label']}-{kind}"
                if args.settle > 0:
                    scenarios.append({"name": f"settle-{name}", "exit": "0", "timeout": str(int(args.settle) + 30),
                                      "optional": False, "marks": [],
                                      "cmd": f"sleep {args.settle}"})
                scenarios.append({"name": name, "exit": "0", "timeout": str(args.run_timeout),
                                  "optional": False,
                                  "marks": BENCH_MARKS + ([BENCH_DMA_MARK] if dma[v["label"]] else []),
                                  "cmd": "set -x; exec " + base_cmd[v["label"], kind]})
                plan.append((name, v["label"], kind, i))

    name = args.name or time.strftime("bench-%Y%m%d-%H%M%S")
    rundir = OUT / name
    env = dict(kv.split("=", 1) for kv in args.env)
    env.setdefault("LAB_GRACE", str(args.grace))
    invoked = shlex.join([os.environ.get("LAB_INVOKED_AS", "python3 lab/lab.py bench"), *sys.argv[2:]])
    vmm_ids = {v["label"]: file_id(v["path"]) for v in vmms}  # before packing: others may rebuild
    qemu = prepare_l1(args, rundir, bins, scenarios, env, args.ref_qemu or any(v["qemu"] for v in vmms))
    timeout = args.timeout or (90 + sum(int(s["timeout"]) + 5 for s in scenarios))
    l1 = boot_l1(qemu, rundir, timeout, args.quiet)
    runs = parse_bench_console(l1["lines"])

    head = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %cd", "--date=format:%Y-%m-%d %H:%M"],
                          capture_output=True, text=True).stdout.strip()
    out = [f"# boot benchmark: {name}",
           f"command:  {invoked}",
           f"tree:     {head or '?'}; L1 under QEMU/TCG; L2 {args.cpus} vCPU, {args.memory}, 'quiet', "
           f"scenario boot (edu for a vmm given --device: DMA through it required); {args.runs} runs each, interleaved" +
           (f", {args.warmup} warm-up run(s) not counted" if args.warmup else "") +
           f"; grace {args.grace} s after LAB-L2-DONE",
           ""]
    for v in vmms:
        out.append(f"{v['label']}: {v['path']} ({vmm_ids[v['label']]})"
                   + (" [ours: -v, boot-phase log]" if v["ours"] else "")
                   + (" [reference QEMU packed]" if v["qemu"] else "")
                   + (" [device passed: scenario edu, DMA required]" if dma[v["label"]] else ""))
        for kind in kinds:
            first = next((runs[n]["cmd"] for n, lb, k, _ in plan
                          if lb == v["label"] and k == kind and n in runs and runs[n]["cmd"]), None)
            out.append(f"  {kind:8} in L1: {first or base_cmd[v['label'], kind]}")
    out += ["",
            "Figures in ms: median [min-max] over the runs (n= where fewer runs had the figure).",
            "  to_init   vmm start -> LAB-L2-INIT-START on the serial console (labrun, CLOCK_MONOTONIC in L1)",
            "  k_uptime  guest kernel uptime at init (/proc/uptime, 10 ms resolution)",
            "  to_kernel to_init - k_uptime: roughly vmm start -> guest kernel start",
            "  wall      vmm start -> vmm exit (only runs where the vmm exited by itself)",
            "  kvm_run   the vmm's own boot-phase first_kvm_run (ms since its process start; ours only)",
            "  to_dma    vmm start -> L2 printed its verified DMA round trip through the passed device",
            f"            ('{BENCH_DMA_MARK}', labrun; vmms given --device only)",
            "  k_dma     guest kernel uptime when its first DMA (RAM -> device) completed (printk time)",
            "  exits     exit code: runs; timeout = still running --grace s after LAB-L2-DONE, killed", ""]
    any_dma = any(dma.values())
    hdr = (f"{'vmm':14} {'kernel':8} {'to_init':>20} {'k_uptime':>20} {'to_kernel':>20} {'wall':>20} {'kvm_run':>16}"
           + (f" {'to_dma':>20} {'k_dma':>20}" if any_dma else "") + "  exits")
    out += [hdr, "-" * len(hdr)]
    failed = []
    counted = [(n, lb, k) for n, lb, k, i in plan if i > 0]
    for v in vmms:
        for kind in kinds:
            rs = [runs.get(n, {"exit": "missing", "init": None, "uptime": None, "kstart": None,
                               "wall": None, "phases": {}})
                  for n, lb, k in counted if lb == v["label"] and k == kind]
            tot = len(rs)
            ex = {}
            for r in rs:
                ex[r["exit"]] = ex.get(r["exit"], 0) + 1
            kvm = [r["phases"].get("first_kvm_run") for r in rs]
            out.append(f"{v['label']:14} {kind:8} {fmt_stat([r['init'] for r in rs], tot):>20} "
                       f"{fmt_stat([r.get('uptime') for r in rs], tot):>20} "
                       f"{fmt_stat([r['kstart'] for r in rs], tot):>20} {fmt_stat([r['wall'] for r in rs], tot):>20} "
                       f"{(fmt_stat(kvm, tot) if v['ours'] else 'n/a'):>16}"
                       + ((f" {fmt_stat([r.get('to_dma') for r in rs], tot):>20} "
                           f"{fmt_stat([r.get('k_dma') for r in rs], tot):>20}" if dma[v['label']] else
                           f" {'n/a':>20} {'n/a':>20}") if any_dma else "")
                       + "  " + ", ".join(f"{k} {c}/{tot}" for k, c in sorted(ex.items())))
    for v in vmms:
        if not v["ours"]:
            continue
        for kind in kinds:
            rs = [runs[n] for n, lb, k in counted if lb == v["label"] and k == kind and n in runs]
            names = []
            for r in rs:
                names += [p for p in r["phases"] if p not in names]
            if names:
                out.append(f"  {v['label']} {kind} boot-phase medians (ms since vmm start): " + ", ".join(
                    f"{p} {stats([r['phases'].get(p) for r in rs])[0]:.2f}" for p in names))
    out += ["", "Per run (ms; in run order):",
            f"  {'run':28} {'to_init':>9} {'k_uptime':>9} {'to_kernel':>9} {'l2_done':>9} {'wall':>9} "
            f" {'kvm_run':>9}" + (f" {'to_dma':>9} {'k_dma':>9}" if any_dma else "") + "  exit"]
    no_dma = []
    f = lambda x: "-" if x is None else f"{x:.1f}"
    for n, lb, k, i in plan:
        r = runs.get(n)
        if not r:
            out.append(f"  {n:28} (no output)")
        else:
            wall = f(r["wall"]) + " " if r["wall"] is not None else f(r.get("ms")) + "*"
            out.append(f"  {n:28} {f(r['init']):>9} {f(r.get('uptime')):>9} {f(r['kstart']):>9} "
                       f"{f(r['done']):>9} {wall:>10}{f(r['phases'].get('first_kvm_run')):>9}"
                       + (f" {f(r.get('to_dma')):>9} {f(r.get('k_dma')):>9}" if any_dma else "")
                       + f"  {r['exit']}" + ("  NO-DMA" if dma[lb] and r.get("to_dma") is None else ""))
        if i > 0 and (not r or r["init"] is None):
            failed.append(n)
        elif i > 0 and dma[lb] and r.get("to_dma") is None:
            no_dma.append(n)
    if any(r.get("tmo") not in (None, "0") for r in runs.values()):
        out.append("  (* wall: time the vmm was killed, not an exit)")
    if failed:
        out.append(f"\nFAILED: never reached init: {' '.join(failed)}")
    if no_dma:
        out.append(f"\nFAILED: no verified DMA through the passed device (its figures do not count): "
                   f"{' '.join(no_dma)}")
    text = "\n".join(out) + "\n"
    (rundir / "bench.txt").write_text(text)
    print()
    print(text, end="")
    bad = host_summary(l1, rundir)
    print(f"  host: table in {rundir / 'bench.txt'}")
    return 1 if failed or no_dma or bad else 0


def add_l1_args(p):
    """Options shared by `run` and `bench`: L1 hardware and extras."""
    p.add_argument("--device", action="append", default=[], help="extra QEMU -device for L1, e.g. edu")
    p.add_argument("--qemu", default="", metavar="PATH|bpo",
                   help="QEMU that runs L1 (default: the host's qemu-system-x86_64); 'bpo' fetches "
                   "bookworm-backports' QEMU 10 (igb, for the VF scenario) into lab/cache/qemu-bpo")
    p.add_argument("--l1-kernel", default="", metavar="PATH|iommufd",
                   help="L1 kernel (default: Debian's, as L2's); 'iommufd' builds and uses the lab's "
                   "6.12 with iommufd and VFIO cdevs (lab.py l1-kernel)")
    p.add_argument("--vfio", action="append", default=[],
                   help="PCI device in L1 to bind to vfio-pci: BDF or vendor:device (e.g. 1234:11e8)")
    p.add_argument("--object", action="append", default=[],
                   help="extra QEMU -object for L1, e.g. memory-backend-file,id=vram,size=64G,share=on,mem-path=/tmp/lab-vram.img")
    p.add_argument("--qemu-arg", action="append", default=[], help="extra raw QEMU argument")
    p.add_argument("--ref-qemu", action="store_true",
                   help="pack the host QEMU into L1 as $QEMU (automatic when a chosen scenario uses $QEMU)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE exported to scenario commands in L1")
    p.add_argument("--append", default="", help="extra L1 kernel command line")
    p.add_argument("--mem", type=int, default=2048, help="L1 memory in MiB")
    p.add_argument("--smp", type=int, default=1, help="L1 vCPUs (TCG; 1 is fastest to boot)")
    p.add_argument("--timeout", type=int, default=0, help="overall timeout in s (default: 90 + scenario timeouts)")
    p.add_argument("--name", default="", help="run directory name under lab/out/")
    p.add_argument("-q", "--quiet", action="store_true", help="don't echo the console, only print the table")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="host packages, debs, L2 kernel payloads")
    p = sub.add_parser("l2-initrd", help="build the L2 initramfs")
    p.add_argument("--modules", default="", help="comma-separated kernel modules to add (with deps)")
    sub.add_parser("l1-base", help="build the cached part of the L1 initramfs")
    sub.add_parser("l1-kernel", help="build the L1 kernel with iommufd (lab/cache/l1-kernel/bzImage; "
                   "about 25 min on 2 cores)")
    p = sub.add_parser("list", help="list scenarios")
    p.add_argument("--scenario-file", default=str(LAB / "scenarios.txt"))
    p.add_argument("-s", "--scenarios", default="", help="only these (names or globs, comma-separated)")
    p.add_argument("--names", action="store_true",
                   help="print only the names, one per line (with no -s: the default set)")
    p = sub.add_parser("run", help="boot L1 under QEMU/TCG and run scenarios")
    p.add_argument("--vmm", default=os.environ.get("VMM", str(ROOT / "target/release/vmm")),
                   help="vmm binary to test (env VMM; default target/release/vmm)")
    p.add_argument("-s", "--scenarios", default="", help="comma-separated scenario names or globs (default: all not marked optional)")
    p.add_argument("--scenario-file", default=str(LAB / "scenarios.txt"))
    add_l1_args(p)
    p.add_argument("--shell", action="store_true", help="interactive: QEMU on this terminal, shell in L1 after scenarios")
    p = sub.add_parser("bench", help="boot-to-init benchmark of one or more vmms in one L1 boot",
                       description="Boot L1 once and boot L2 (scenario boot, quiet) RUNS times with each "
                       "vmm, interleaved; print median [min-max] of the boot figures (also lab/out/<run>/bench.txt). "
                       "A vmm whose --vmm-args pass a device (--device path=...) boots scenario edu instead, whose "
                       "guest DMAs through the device (edu_test self-test) right after init; its runs also report "
                       "to_dma and k_dma, and a run without a verified DMA fails. "
                       "Exit 1 if any run never reached the L2 init, lacked that DMA, or L1 did not finish.")
    p.add_argument("--vmm", action="append", default=[], metavar="[LABEL=]PATH",
                   help="vmm to benchmark; repeat to compare (default target/release/vmm). A script that "
                   "runs $QEMU (tools/qemu-as-vmm.sh) gets the reference QEMU packed")
    p.add_argument("--vmm-args", action="append", default=[], metavar="[LABEL=]ARGS",
                   help="extra vmm arguments (shell words, in L1), for every vmm or only LABEL's")
    p.add_argument("--runs", type=int, default=5, help="counted runs per vmm and kernel kind (default 5)")
    p.add_argument("--warmup", type=int, default=0, help="uncounted runs per vmm first (default 0)")
    p.add_argument("--kernel", choices=["pvh", "bzimage", "both"], default="pvh", help="L2 kernel format")
    p.add_argument("--memory", default="256M", help="L2 memory (default 256M)")
    p.add_argument("--cpus", type=int, default=1, help="L2 vCPUs (default 1)")
    p.add_argument("--grace", type=float, default=2, help="s after LAB-L2-DONE before a vmm that did not "
                   "exit is killed and recorded as exit=timeout (default 2)")
    p.add_argument("--run-timeout", type=int, default=60, help="per-run timeout in s (default 60)")
    p.add_argument("--rotate", action="store_true", help="start each round one vmm later (A B C, B C A, ...)")
    p.add_argument("--settle", type=float, default=0, help="s to sleep in L1 before every run, uncounted "
                   "(default 0)")
    add_l1_args(p)
    p.set_defaults(shell=False)
    args = ap.parse_args()
    if args.cmd == "fetch":
        cmd_fetch(args)
    elif args.cmd == "l2-initrd":
        cmd_l2_initrd(args)
    elif args.cmd == "l1-base":
        build_l1_base()
    elif args.cmd == "l1-kernel":
        print(build_l1_kernel())
    elif args.cmd == "list":
        cmd_list(args)
    elif args.cmd == "run":
        sys.exit(cmd_run(args))
    elif args.cmd == "bench":
        sys.exit(cmd_bench(args))


if __name__ == "__main__":
    main()
