#!/usr/bin/env python3
"""Nested lab: run our `vmm` inside a QEMU/TCG L1 Linux with nested KVM (kvm_amd, nested SVM).

Subcommands (each builds what it needs and skips what is already up to date):
  fetch      host packages, Debian kernel + busybox .debs into lab/cache/, L2 payloads
             lab/out/l2/{vmlinux,bzImage}, the static labrun helper
  l2-initrd  lab/out/l2/initramfs.cpio.gz (busybox /init + lab/l2/scenarios/)
  l1-base    lab/out/l1/base.cpio (busybox, kvm/vfio modules, labrun, L2 payloads, L1 /init)
  run        everything above, then boot L1 under QEMU/TCG and run scenarios (see --help)
  list       show the scenarios of lab/scenarios.txt
"""
import argparse
import fnmatch
import glob
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
L1_MODULES = ["irqbypass", "kvm", "kvm-amd", "vfio", "vfio_virqfd", "vfio_iommu_type1",
              "vfio-pci-core", "vfio-pci"]
L1_APPEND = "console=ttyS0 panic=-1 quiet intel_iommu=on"


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


def add_modules(cpio, names):
    mods = resolve_modules(names)
    for name, data in mods:
        cpio.file(f"lib/modules/{name}.ko", data)
    cpio.file("lab/modules.order", "".join(f"{n}.ko\n" for n, _ in mods))
    return [n for n, _ in mods]


# ---------------------------------------------------------------- L2 initramfs

def build_l2_initrd(modules=()):
    out = L2OUT / "initramfs.cpio.gz"
    inputs = [LAB / "l2/init", *sorted((LAB / "l2/scenarios").glob("*")), LAB / "lab.py"]
    if modules:
        out = L2OUT / f"initramfs-{'-'.join(modules)}.cpio.gz"
    if newer(out, *inputs) and (CACHE / "busybox/.extracted").exists():
        return out
    cpio = Cpio()
    busybox_skeleton(cpio, LAB / "l2/init")
    for p in sorted((LAB / "l2/scenarios").glob("*")):
        cpio.file(f"lab/scenarios/{p.name}", p)
    if modules:
        add_modules(cpio, list(modules))
    L2OUT.mkdir(parents=True, exist_ok=True)
    raw = cpio.bytes()
    out.with_suffix("").write_bytes(raw)  # the same, uncompressed (initramfs.cpio)
    out.write_bytes(gzip.compress(raw, 6))
    log(f"L2 initramfs: {out} ({out.stat().st_size} bytes; uncompressed {len(raw)})")
    return out


def cmd_l2_initrd(args):
    cmd_fetch()
    build_l2_initrd(args.modules.split(",") if args.modules else ())


# ---------------------------------------------------------------- L1 initramfs

def build_l1_base():
    """Everything but the vmm and the scenario list; cached in lab/out/l1/base.cpio."""
    cmd_fetch()
    l2init = build_l2_initrd()
    labrun = build_labrun()
    out = L1OUT / "base.cpio"
    inputs = [LAB / "l1/init", LAB / "lab.py", labrun, l2init, L2OUT / "vmlinux", L2OUT / "bzImage"]
    if newer(out, *inputs):
        return out
    cpio = Cpio()
    busybox_skeleton(cpio, LAB / "l1/init")
    cpio.file("bin/labrun", labrun, 0o755)
    mods = add_modules(cpio, L1_MODULES)
    for f in ("vmlinux", "bzImage", "initramfs.cpio.gz", "initramfs.cpio", "kernel.version"):
        cpio.file(f"lab/l2/{f}", L2OUT / f)
    L1OUT.mkdir(parents=True, exist_ok=True)
    # Uncompressed: gunzip inside L1 under TCG cost ~2.4 s of boot (measured), the larger file nothing.
    out.write_bytes(cpio.bytes())
    log(f"L1 base initramfs: {out} ({out.stat().st_size} bytes, modules: {' '.join(mods)})")
    return out


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


def build_run_cpio(vmm, scenarios, vfio, env):
    """Small uncompressed cpio with the vmm, its libraries and the generated scenario list."""
    cpio = Cpio()
    if vmm:
        cpio.file("lab/vmm", Path(vmm), 0o755)
        for lib in shared_libs(vmm):
            cpio.file(lib, Path(os.path.realpath(lib)), 0o755)
    lines = ["# generated by lab.py from scenarios.txt"]
    for sc in scenarios:
        lines.append(" ".join(shlex.quote(x) for x in
                              ["run", sc["name"], sc["exit"], sc["timeout"], sc["cmd"], *sc["marks"]]))
    cpio.file("lab/scenarios.sh", "\n".join(lines) + "\n")
    cpio.file("lab/vfio.list", "".join(f"{v}\n" for v in vfio))
    cpio.file("lab/env.sh", "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return cpio.bytes()


# ---------------------------------------------------------------- scenarios

def load_scenarios(path):
    """name | exit | timeout_s | marker; marker; ... | shell command  (see scenarios.txt)"""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|", 4)]
        if len(parts) != 5:
            sys.exit(f"lab: {path}:{n}: bad scenario line (want 5 '|'-separated fields)")
        name, code, tmo, marks, cmd = parts
        name, _, flag = name.partition(" ")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or flag.strip() not in ("", "optional"):
            sys.exit(f"lab: {path}:{n}: bad scenario name field")
        out.append({"name": name, "exit": code, "timeout": tmo, "cmd": cmd, "optional": bool(flag.strip()),
                    "marks": [m.strip() for m in marks.split(";") if m.strip()]})
    return out


def cmd_list(args):
    for sc in load_scenarios(args.scenario_file):
        opt = " (optional)" if sc["optional"] else ""
        print(f"{sc['name']:16} exit={sc['exit']:3} timeout={sc['timeout']:>3}s{opt}  {sc['cmd']}")
        for m in sc["marks"]:
            print(f"{'':16}   expect: {m}")


# ---------------------------------------------------------------- run

def cmd_run(args):
    all_sc = load_scenarios(args.scenario_file)
    if args.scenarios:
        scenarios = []
        for w in args.scenarios.split(","):
            hits = [s for s in all_sc if fnmatch.fnmatchcase(s["name"], w) and s not in scenarios]
            if not hits and not any(fnmatch.fnmatchcase(s["name"], w) for s in all_sc):
                sys.exit(f"lab: no scenario matches {w} (see lab/lab.py list)")
            scenarios += hits
    else:
        scenarios = [s for s in all_sc if not s["optional"]]
    vmm = args.vmm
    if vmm and not Path(vmm).is_file():
        log(f"warning: vmm binary {vmm} not found; scenarios that use $VMM will fail")
        vmm = None

    base = build_l1_base()
    name = args.name or time.strftime("run-%Y%m%d-%H%M%S")
    rundir = OUT / name
    rundir.mkdir(parents=True, exist_ok=True)
    env = dict(kv.split("=", 1) for kv in args.env)
    segments = [base]
    if args.ref_qemu or any("$QEMU" in s["cmd"] for s in scenarios):
        segments.append(build_ref_qemu())
        env.setdefault("QEMU", REF_QEMU)
    initrd = rundir / "l1-initrd.img"
    with open(initrd, "wb") as f:  # the kernel unpacks concatenated (compressed) cpio archives
        f.write(build_run_cpio(vmm, scenarios, args.vfio, env))
        for seg in segments:
            with open(seg, "rb") as b:
                shutil.copyfileobj(b, f)

    kernel = CACHE / "kernel/boot" / f"vmlinuz-{(L2OUT / 'kernel.version').read_text().strip()}"
    append = L1_APPEND + (" lab.shell=1" if args.shell else "") + (" " + args.append if args.append else "")
    qemu = ["qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-cpu", "EPYC", "-m", str(args.mem),
            "-smp", str(args.smp), "-nographic", "-no-reboot",
            "-device", "intel-iommu,intremap=on",
            "-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    for d in args.device:
        qemu += ["-device", d]
    qemu += args.qemu_arg
    (rundir / "qemu.cmd").write_text(shlex.join(qemu) + "\n")
    log(f"run dir {rundir}")
    log("qemu: " + shlex.join(qemu))

    if args.shell:
        return subprocess.call(qemu)

    timeout = args.timeout or (90 + sum(int(s["timeout"]) + 5 for s in scenarios))
    console = open(rundir / "console.log", "w")
    t0 = time.monotonic()
    marks = {}
    results = {}
    proc = subprocess.Popen(qemu, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    os.set_blocking(proc.stdout.fileno(), False)
    pending = b""
    timed_out = False
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            timed_out = True
            proc.kill()
            break
        if not sel.select(timeout=min(left, 1.0)):
            if proc.poll() is not None:
                break
            continue
        chunk = proc.stdout.read()
        if not chunk:
            if proc.poll() is not None or chunk == b"":
                break
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace").rstrip("\r")
            t = time.monotonic() - t0
            console.write(f"{t:8.3f} {line}\n")
            console.flush()
            if not args.quiet and "TCG doesn't support requested feature" not in line:
                print(line, flush=True)
            for key in ("LAB-L1-INIT-START", "LAB-L1-KVM-READY", "LAB-L1-KVM-MISSING", "LAB-L1-DONE"):
                if key in line and key not in marks:
                    marks[key] = t
            m = re.search(r"LAB-RESULT (\S+) (PASS|FAIL) (.*)", line)
            if m:
                results[m.group(1)] = (m.group(2), m.group(3))
    proc.wait()
    if pending:
        console.write(pending.decode(errors="replace") + "\n")
    console.close()
    total = time.monotonic() - t0

    print()
    print(f"{'scenario':18} {'result':7} details")
    fails = 0
    for sc in scenarios:
        res, detail = results.get(sc["name"], ("MISSING", "no LAB-RESULT line"))
        fails += res != "PASS"
        print(f"{sc['name']:18} {res:7} {detail}")
    for key, t in marks.items():
        print(f"  host: {key} at {t:.2f}s after QEMU start")
    print(f"  host: QEMU ran {total:.1f}s{' (TIMED OUT, killed)' if timed_out else ''}, "
          f"console log {rundir / 'console.log'}")
    if "LAB-L1-DONE" not in marks:
        print("  L1 never reported LAB-L1-DONE")
        fails += 1
    with open(rundir / "results.txt", "w") as f:
        for sc in scenarios:
            res, detail = results.get(sc["name"], ("MISSING", ""))
            f.write(f"{sc['name']} {res} {detail}\n")
    return 1 if fails or timed_out else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="host packages, debs, L2 kernel payloads")
    p = sub.add_parser("l2-initrd", help="build the L2 initramfs")
    p.add_argument("--modules", default="", help="comma-separated kernel modules to add (with deps)")
    sub.add_parser("l1-base", help="build the cached part of the L1 initramfs")
    p = sub.add_parser("list", help="list scenarios")
    p.add_argument("--scenario-file", default=str(LAB / "scenarios.txt"))
    p = sub.add_parser("run", help="boot L1 under QEMU/TCG and run scenarios")
    p.add_argument("--vmm", default=os.environ.get("VMM", str(ROOT / "target/release/vmm")),
                   help="vmm binary to test (env VMM; default target/release/vmm)")
    p.add_argument("-s", "--scenarios", default="", help="comma-separated scenario names or globs (default: all not marked optional)")
    p.add_argument("--scenario-file", default=str(LAB / "scenarios.txt"))
    p.add_argument("--device", action="append", default=[], help="extra QEMU -device for L1, e.g. edu")
    p.add_argument("--vfio", action="append", default=[],
                   help="PCI device in L1 to bind to vfio-pci: BDF or vendor:device (e.g. 1234:11e8)")
    p.add_argument("--qemu-arg", action="append", default=[], help="extra raw QEMU argument")
    p.add_argument("--ref-qemu", action="store_true",
                   help="pack the host QEMU into L1 as $QEMU (automatic when a chosen scenario uses $QEMU)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE exported to scenario commands in L1")
    p.add_argument("--append", default="", help="extra L1 kernel command line")
    p.add_argument("--mem", type=int, default=2048, help="L1 memory in MiB")
    p.add_argument("--smp", type=int, default=1, help="L1 vCPUs (TCG; 1 is fastest to boot)")
    p.add_argument("--timeout", type=int, default=0, help="overall timeout in s (default: 90 + scenario timeouts)")
    p.add_argument("--name", default="", help="run directory name under lab/out/")
    p.add_argument("--shell", action="store_true", help="interactive: QEMU on this terminal, shell in L1 after scenarios")
    p.add_argument("-q", "--quiet", action="store_true", help="don't echo the console, only print the table")
    args = ap.parse_args()
    if args.cmd == "fetch":
        cmd_fetch(args)
    elif args.cmd == "l2-initrd":
        cmd_l2_initrd(args)
    elif args.cmd == "l1-base":
        build_l1_base()
    elif args.cmd == "list":
        cmd_list(args)
    elif args.cmd == "run":
        sys.exit(cmd_run(args))


if __name__ == "__main__":
    main()
