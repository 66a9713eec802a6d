#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/corpus/<target>/: a few hand-made, valid inputs per target,
in the input layouts documented at the top of each fuzz_targets/<target>.rs. Run it again
after changing a layout (it rewrites the seeds it knows and leaves other files alone).

    python3 fuzz/gen_corpus.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def u8(v):
    return struct.pack("<B", v & 0xFF)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


def u32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v):
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class Image:
    """A guest RAM image from address 0, grown as bytes are placed."""

    def __init__(self):
        self.b = bytearray()

    def put(self, addr, data):
        if len(self.b) < addr + len(data):
            self.b.extend(b"\0" * (addr + len(data) - len(self.b)))
        self.b[addr : addr + len(data)] = data

    def bytes(self):
        return bytes(self.b)


F_NEXT, F_WRITE, F_INDIRECT = 1, 2, 4


def desc(addr, length, flags, nxt):
    return u64(addr) + u32(length) + u16(flags) + u16(nxt)


# ---------------------------------------------------------------- virtio_queue_chain


def queue_seed(size, flags, desc_addr, avail, used, next_avail, max_chains, img):
    return (
        u16(size)
        + u8(flags)
        + u16(desc_addr)
        + u16(avail)
        + u16(used)
        + u16(next_avail)
        + u8(max_chains)
        + img.bytes()
    )


def avail_ring(img, at, idx, heads, start=0, size=16):
    img.put(at, u16(0) + u16(idx))
    for i, h in enumerate(heads):
        img.put(at + 4 + 2 * ((start + i) % size), u16(h))


def gen_virtio_queue_chain():
    t = "virtio_queue_chain"
    # A block-like chain: header, data, status.
    img = Image()
    img.put(0, desc(0x1000, 16, F_NEXT, 1) + desc(0x2000, 512, F_NEXT | F_WRITE, 2) + desc(0x3000, 1, F_WRITE, 0))
    avail_ring(img, 0x100, 1, [0])
    write(t, "three-descriptor-chain", queue_seed(16, 0, 0, 0x100, 0x200, 0, 4, img))
    # An indirect table of three descriptors.
    img = Image()
    img.put(0, desc(0x400, 48, F_INDIRECT, 0))
    img.put(0x400, desc(0x1000, 16, F_NEXT, 1) + desc(0x2000, 64, F_NEXT | F_WRITE, 2) + desc(0x3000, 1, F_WRITE, 0))
    avail_ring(img, 0x100, 1, [0])
    write(t, "indirect-table", queue_seed(16, 0, 0, 0x100, 0x200, 0, 4, img))
    # Two chains across the avail index wrap, EVENT_IDX on.
    img = Image()
    img.put(0, desc(0x1000, 64, 0, 0) + desc(0x2000, 64, F_WRITE, 0))
    avail_ring(img, 0x100, 1, [0, 1], start=0xFFFF % 8, size=8)
    write(t, "wrapping-avail-index", queue_seed(8, 1, 0, 0x100, 0x200, 0xFFFF, 8, img))
    # A buffer across the boundary of two adjacent regions (fine) and one into the hole.
    img = Image()
    img.put(0, desc(0xFFF0, 0x20, F_NEXT, 1) + desc(0x10FF0, 0x20, F_WRITE, 0))
    avail_ring(img, 0x100, 1, [0])
    write(t, "region-boundaries", queue_seed(16, 0, 0, 0x100, 0x200, 0, 2, img))


# ---------------------------------------------------------------- virtio_blk_request

T_IN, T_OUT, T_FLUSH, T_GET_ID, T_DISCARD, T_WRITE_ZEROES = 0, 1, 4, 8, 11, 13


def blk_seed(descs, img, direct=False):
    out = u8(len(descs))
    for addr, length, flags in descs:
        out += u32(addr) + u32(length) + u16(flags)
    return out + u8(1 if direct else 0) + img.bytes()


def blk_header(kind, sector):
    return u32(kind) + u32(0) + u64(sector)


def gen_virtio_blk_request():
    t = "virtio_blk_request"
    img = Image()
    img.put(0, blk_header(T_IN, 2))
    read = [(0, 16, F_NEXT), (0x1000, 1024, F_NEXT | F_WRITE), (0x2000, 1, F_WRITE)]
    write(t, "read-two-sectors", blk_seed(read, img))
    write(t, "read-two-sectors-direct", blk_seed(read, img, direct=True))
    img = Image()
    img.put(0, blk_header(T_OUT, 126))
    img.put(0x1000, bytes(range(256)) * 2)
    wr = [(0, 16, F_NEXT), (0x1000, 512, F_NEXT), (0x2000, 1, F_WRITE)]
    write(t, "write-last-sector", blk_seed(wr, img))
    write(t, "write-last-sector-direct", blk_seed(wr, img, direct=True))
    # Header and data in one buffer, status split off a larger writable one.
    img = Image()
    img.put(0, blk_header(T_OUT, 3) + b"\x5a" * 512)
    write(t, "write-shared-descriptors", blk_seed([(0, 16 + 512, F_NEXT), (0x2000, 4, F_WRITE)], img))
    img = Image()
    img.put(0, blk_header(T_FLUSH, 0))
    write(t, "flush", blk_seed([(0, 16, F_NEXT), (0x2000, 1, F_WRITE)], img))
    img = Image()
    img.put(0, blk_header(T_GET_ID, 0))
    write(t, "get-id", blk_seed([(0, 16, F_NEXT), (0x1000, 20, F_NEXT | F_WRITE), (0x2000, 1, F_WRITE)], img))
    for kind, name, flags in [(T_DISCARD, "discard", 0), (T_WRITE_ZEROES, "write-zeroes-unmap", 1)]:
        img = Image()
        img.put(0, blk_header(kind, 0))
        img.put(0x100, u64(8) + u32(16) + u32(flags) + u64(120) + u32(8) + u32(0))
        write(t, name, blk_seed([(0, 16, F_NEXT), (0x100, 32, F_NEXT), (0x2000, 1, F_WRITE)], img))
    img = Image()
    img.put(0, blk_header(T_IN, 0xFFFF_FFFF_FFFF_FFF0))
    write(t, "read-past-the-end", blk_seed(read, img))


# ---------------------------------------------------------------- pci_config

ECAM_W, ECAM_R, CF8_W, CFC_W, CFC_R, BAR_W, BAR_R, REG_W, COMMON_W, COMMON_R, IRQ, ACTIVATE = range(12)


def ecam_w(slot, off, size, val):
    return u8(ECAM_W) + u32((slot << 15) | off) + u8(size) + u64(val)


def ecam_r(slot, off, size):
    return u8(ECAM_R) + u32((slot << 15) | off) + u8(size)


def cf8(slot, off):
    return u8(CF8_W) + u32(0x8000_0000 | (slot << 11) | (off & 0xFC))


def cfc_w(off, size, val):
    return u8(CFC_W) + u8(4 + off) + u8(size) + u64(val)


def cfc_r(off, size):
    return u8(CFC_R) + u8(4 + off) + u8(size)


def bar_w(test_slot, index, off, size, val):
    return u8(BAR_W) + u8(1 if test_slot else 0) + u8(index) + u16(off) + u8(size) + u64(val)


def bar_r(test_slot, index, off, size):
    return u8(BAR_R) + u8(1 if test_slot else 0) + u8(index) + u16(off) + u8(size) + u64(0)


def common_w(off, size, val):
    return u8(COMMON_W) + u8(off) + u8(size) + u64(val)


def common_r(off, size):
    return u8(COMMON_R) + u8(off) + u8(size)


def gen_pci_config():
    t = "pci_config"
    # Linux-style enumeration over 0xcf8/0xcfc: IDs, BAR sizing, decode enable.
    s = b""
    for slot in range(4):
        s += cf8(slot, 0) + cfc_r(0, 4) + cf8(slot, 8) + cfc_r(0, 4)
    for bar in range(6):
        off = 0x10 + 4 * bar
        s += cf8(1, off) + cfc_r(0, 4) + cfc_w(0, 4, 0xFFFFFFFF) + cfc_r(0, 4)
    s += cf8(1, 0x10) + cfc_w(0, 4, 0xD001) + cf8(1, 0x14) + cfc_w(0, 4, 0xD0000000)
    s += cf8(1, 0x30) + cfc_w(0, 4, 0xD0100001)
    s += cf8(1, 4) + cfc_w(0, 2, 0x7) + cfc_r(2, 2)
    s += bar_w(True, 2, 0x10, 4, 0x12345678) + bar_r(True, 2, 0x10, 4) + bar_r(True, 0, 0, 1)
    write(t, "cf8-enumeration-and-bar-sizing", s)
    # The same over ECAM, then MSI and MSI-X enabled and triggered.
    s = b""
    for slot in (0, 1, 2, 3):
        s += ecam_r(slot, 0, 4) + ecam_r(slot, 0x34, 1)
    s += ecam_w(1, 4, 2, 0x6)
    s += ecam_w(1, 0x40 + 4, 4, 0xFEE00000) + ecam_w(1, 0x40 + 8, 4, 0) + ecam_w(1, 0x40 + 0xC, 2, 0x41)
    s += ecam_w(1, 0x40 + 2, 2, 0x1 | (2 << 4))
    s += u8(IRQ) + u8(1) + u16(2)
    s += bar_w(True, 1, 0x0, 4, 0xFEE00000) + bar_w(True, 1, 0xC, 4, 0)
    for cap in (0x50, 0x58, 0x60, 0x70):
        s += ecam_r(1, cap, 4) + ecam_w(1, cap + 2, 2, 0x8000)
    s += u8(IRQ) + u8(0) + u16(0) + bar_r(True, 1, 0x800, 8)
    s += ecam_w(1, 0x10, 4, 0xFFFFFFFF) + ecam_r(1, 0x10, 4) + ecam_w(1, 0x18, 8, 0x2_0000_000C)
    s += ecam_r(1, 0x100, 4) + ecam_w(1, 0xFFC, 4, 0xFFFFFFFF) + ecam_r(1, 0xFFF, 1)
    write(t, "ecam-msi-msix-and-bar-moves", s)
    # A virtio-pci driver bringing the transport up through BAR 0.
    s = ecam_r(2, 0, 4) + ecam_r(2, 0x34, 1) + ecam_w(2, 4, 2, 0x6)
    s += bar_w(False, 0, 0x14, 1, 0) + bar_w(False, 0, 0x14, 1, 3)
    s += bar_w(False, 0, 0x00, 4, 1) + bar_r(False, 0, 0x04, 4)
    s += bar_w(False, 0, 0x08, 4, 0) + bar_w(False, 0, 0x0C, 4, 0x7)
    s += bar_w(False, 0, 0x08, 4, 1) + bar_w(False, 0, 0x0C, 4, 1)
    s += bar_w(False, 0, 0x14, 1, 0xB) + bar_r(False, 0, 0x14, 1)
    for q in range(2):
        s += bar_w(False, 0, 0x16, 2, q) + bar_r(False, 0, 0x18, 2) + bar_w(False, 0, 0x18, 2, 8)
        s += bar_w(False, 0, 0x1A, 2, q + 1)
        s += bar_w(False, 0, 0x20, 8, 0x1000 * (q + 1)) + bar_w(False, 0, 0x28, 8, 0x8000 + 0x100 * q)
        s += bar_w(False, 0, 0x30, 4, 0x9000 + 0x100 * q) + bar_w(False, 0, 0x34, 4, 0)
        s += bar_w(False, 0, 0x1C, 2, 1)
    s += bar_w(False, 0, 0x14, 1, 0xF) + u8(ACTIVATE)
    s += bar_w(False, 0, 0x3000, 2, 0) + bar_r(False, 0, 0x2000, 4) + bar_r(False, 0, 0x1000, 1)
    s += bar_w(False, 0, 0x14, 1, 0) + u8(ACTIVATE)
    write(t, "virtio-pci-driver-init", s)
    # The common config on its own: negotiate, set up three queues, DRIVER_OK, reset.
    s = common_w(0x14, 1, 3) + common_w(0, 4, 1) + common_r(4, 4)
    s += common_w(8, 4, 1) + common_w(0xC, 4, 1) + common_w(0x14, 1, 0xB) + common_r(0x14, 1)
    for q in range(3):
        s += common_w(0x16, 2, q) + common_w(0x18, 2, 16) + common_w(0x20, 8, 0x1000) + common_w(0x1C, 2, 1)
    s += common_r(0x12, 2) + common_w(0x14, 1, 0xF) + common_w(0x18, 2, 4) + common_w(0x14, 1, 0)
    write(t, "common-config", s)


# ---------------------------------------------------------------- vfio_config

CFG_W, CFG_R, VBAR_W, VBAR_R, DEV_SET, FIRE, MAPPABLE = range(7)


def vfio_seed(flags, msi, msix, regions, sparse, config, ext_patches, ops):
    s = u8(flags) + u8(msi) + u8(msix)
    for size, shift, mmap in regions:
        s += u32(size) + u8(shift) + u8(1 if mmap else 0)
    s += u8(len(sparse))
    for off, length in sparse:
        s += u32(off) + u32(length)
    assert len(config) == 256
    s += bytes(config)
    s += u8(len(ext_patches))
    for off, data in ext_patches:
        s += u16(off) + u8(len(data)) + data
    return s + ops


def cfg_w(reg, off, size, val):
    return u8(CFG_W) + u16(reg) + u8(off) + u8(size) + u32(val)


def cfg_r(reg):
    return u8(CFG_R) + u16(reg)


def vbar_w(bar, off, size, val):
    return u8(VBAR_W) + u8(bar) + u32(off) + u8(size) + u64(val)


def vbar_r(bar, off, size):
    return u8(VBAR_R) + u8(bar) + u32(off) + u8(size)


def gpu_config():
    """The GPU-like device of pci/src/vfio/device_tests.rs (first 256 bytes)."""
    c = bytearray(256)

    def put(off, data):
        c[off : off + len(data)] = data

    put(0, bytes([0xDE, 0x10, 0x35, 0x23]))
    put(4, bytes([0, 0, 0x10, 0]))
    put(8, bytes([0xA1, 0, 0x02, 0x03]))
    put(0x14, u32(0xC))
    put(0x24, u32(1))
    put(0x2C, bytes([0xDE, 0x10, 0x99, 0x16]))
    put(0x34, bytes([0x60]))
    put(0x3E, bytes([0x05, 0x07]))
    put(0x60, bytes([0x01, 0x68, 0x03, 0x00]))
    put(0x68, bytes([0x05, 0x78, 0x80, 0x00]))
    put(0x78, bytes([0x10, 0xB4, 0x02, 0x00]))
    put(0xB4, bytes([0x11, 0xD0, 0x03, 0x00]))
    put(0xB8, u32(0x3000))
    put(0xBC, u32(0x3800))
    put(0xD0, bytes([0x02, 0x00, 0x30, 0x00]))
    return c


def gen_vfio_config():
    t = "vfio_config"
    regions = [
        (16, 20, True),  # BAR0 16 MiB
        (1, 38, True),  # BAR1 (+2) 256 GiB
        (0, 0, False),
        (0x100, 0, True),  # BAR3 256 bytes
        (0, 0, False),
        (0x80, 0, False),  # BAR5 I/O
        (512, 10, False),  # ROM 512 KiB
    ]
    ops = b""
    for reg in range(0, 64):
        ops += cfg_r(reg)
    ops += cfg_w(4, 0, 4, 0xFFFFFFFF) + cfg_r(4) + cfg_w(4, 0, 4, 0xC0000000)
    ops += cfg_w(1, 0, 2, 0x0407) + cfg_r(1) + cfg_w(1, 2, 2, 0xF900)
    ops += cfg_w(0x68 // 4, 0, 4, 0x0001_7805) + cfg_w(0x6C // 4, 0, 4, 0xFEE00000) + cfg_w(0x74 // 4, 0, 2, 0x41)
    ops += u8(FIRE) + u8(0) + u8(0)
    ops += vbar_w(0, 0x3000, 4, 0xFEE00000) + vbar_w(0, 0x3008, 4, 0x42) + vbar_w(0, 0x300C, 4, 0)
    ops += cfg_w(0xB4 // 4, 2, 2, 0x8003) + u8(FIRE) + u8(1) + u8(0) + vbar_r(0, 0x3800, 8)
    ops += vbar_w(0, 0x10, 4, 0xDEADBEEF) + vbar_r(0, 0x10, 4) + vbar_r(6, 0, 4) + vbar_w(5, 0, 1, 0x55)
    ops += u8(DEV_SET) + u16(6) + u8(2) + bytes([0x00, 0xF9]) + cfg_r(1)
    ops += u8(MAPPABLE) + cfg_r(0x100 // 4) + cfg_r(0x140 // 4) + cfg_w(0x144 // 4, 0, 4, 0xFFFFFFFF)
    ext = [(0x100, u32(0x1401_0010)), (0x140, u32(0x0002_0001))]
    write(t, "gpu-like-pcie-device", vfio_seed(1, 1, 4, regions, [], gpu_config(), ext, ops))
    write(t, "gpu-like-dma-refused-clique", vfio_seed(1 | 2 | 4, 1, 4, regions, [], gpu_config(), ext, ops))
    # INTx (pin A) first, then MSI on and off again, then MSI-X: one mode at a time in VFIO.
    cfg = gpu_config()
    cfg[0x3D] = 1
    ops = cfg_r(0) + u8(FIRE) + u8(2) + u8(0) + cfg_r(0x3C // 4)
    ops += cfg_w(0x6C // 4, 0, 4, 0xFEE00000) + cfg_w(0x74 // 4, 0, 2, 0x41)
    ops += cfg_w(0x68 // 4, 2, 2, 0x0081) + u8(FIRE) + u8(0) + u8(0) + cfg_w(0x68 // 4, 2, 2, 0x0080)
    ops += u8(FIRE) + u8(2) + u8(0) + cfg_w(0xB4 // 4, 2, 2, 0x8003) + cfg_w(0xB4 // 4, 2, 2, 0x0003)
    ops += cfg_w(1, 0, 2, 0x0406) + cfg_w(1, 0, 2, 0x0006)
    write(t, "gpu-like-intx-msi-msix", vfio_seed(1 | 16, 1, 4, regions, [], cfg, ext, ops))
    # ivshmem-like: 256-byte BAR0, MSI-X in BAR1, 64-bit BAR2 with sparse mmap areas.
    c = bytearray(256)
    c[0:4] = bytes([0xF4, 0x1A, 0x10, 0x11])
    c[4:8] = bytes([0, 0, 0x10, 0])
    c[8:12] = bytes([1, 0, 0, 0x05])
    c[0x18:0x1C] = u32(0xC)
    c[0x34] = 0x40
    c[0x40:0x44] = bytes([0x11, 0, 0, 0])
    c[0x44:0x48] = u32(1)
    c[0x48:0x4C] = u32(0x801)
    regions = [(0x100, 0, False), (0x1000, 0, True), (1, 20, True), (0, 0, False), (0, 0, False), (0, 0, False), (0, 0, False)]
    ops = b"".join(cfg_r(r) for r in range(0, 20)) + cfg_w(1, 0, 2, 6) + cfg_w(0x40 // 4, 2, 2, 0x8000)
    ops += vbar_w(1, 0, 8, 0xFEE00000) + vbar_w(1, 8, 4, 0x33) + vbar_r(1, 0x800, 8) + u8(MAPPABLE)
    ops += vbar_w(0, 0, 4, 1) + vbar_r(2, 0x1000, 4) + cfg_w(6, 0, 4, 0xFFFFFFFF) + cfg_r(6)
    write(t, "ivshmem-like-sparse-mmap", vfio_seed(8, 0, 1, regions, [(0, 0x8000), (0x9000, 0xF7000)], c, [], ops))


# ---------------------------------------------------------------- legacy_devices

SERIAL, I8042, CMOS, DEBUG, PM = range(5)


def lw(dev, off, val, size=1):
    return u8(0) + u8(dev) + u8(off) + u8(size) + u64(val)


def lr(dev, off, size=1):
    return u8(1) + u8(dev) + u8(off) + u8(size) + u64(0)


def gen_legacy_devices():
    t = "legacy_devices"
    head = u64(512 << 20) + u64(0) + u64(1_700_000_000)
    # 16550A: 115200 8N1, interrupts on, a greeting out, console input in.
    s = lw(SERIAL, 3, 0x80) + lw(SERIAL, 0, 1) + lw(SERIAL, 1, 0) + lw(SERIAL, 3, 0x03)
    s += lw(SERIAL, 1, 0x0F) + lw(SERIAL, 4, 0x0B) + lw(SERIAL, 2, 0xC7)
    for ch in b"hello\n":
        s += lw(SERIAL, 0, ch) + lr(SERIAL, 5)
    s += u8(2) + u8(4) + b"ls\r\n" + lr(SERIAL, 2) + lr(SERIAL, 5) + lr(SERIAL, 0) + lr(SERIAL, 0)
    s += lw(SERIAL, 4, 0x10) + lw(SERIAL, 0, 0x41) + lr(SERIAL, 0) + lr(SERIAL, 6) + lr(SERIAL, 7)
    write(t, "serial-init-output-input-loopback", head + s)
    # i8042: self test, read/write the configuration byte, AUX, then the reset pulse.
    s = lw(I8042, 4, 0xAA) + lr(I8042, 4) + lr(I8042, 0) + lw(I8042, 4, 0x20) + lr(I8042, 0)
    s += lw(I8042, 4, 0x60) + lw(I8042, 0, 0x47) + lw(I8042, 4, 0xA8) + lw(I8042, 4, 0xD4) + lw(I8042, 0, 0xF4)
    s += lr(I8042, 0) + lw(I8042, 0, 0xED) + lw(I8042, 0, 0x07) + lr(I8042, 0) + lw(I8042, 4, 0xD0) + lr(I8042, 0)
    s += lw(I8042, 4, 0xD1) + lw(I8042, 0, 0xDF) + lw(I8042, 4, 0xFE) + lr(I8042, 4, 2)
    write(t, "i8042-commands-and-reset", head + s)
    # CMOS/RTC: every register read, status B written, memory size fields.
    s = b""
    for reg in list(range(0, 0x0E)) + [0x15, 0x16, 0x17, 0x18, 0x30, 0x31, 0x32, 0x34, 0x35, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xFF]:
        s += lw(CMOS, 0, reg) + lr(CMOS, 1)
    s += lw(CMOS, 0, 0x0B) + lw(CMOS, 1, 0x06) + lw(CMOS, 0, 0x00) + lr(CMOS, 1) + lw(CMOS, 0, 0x0A) + lw(CMOS, 1, 0xA6)
    write(t, "cmos-rtc-registers", u64(3 << 30) + u64(1 << 34) + u64(4_102_444_800) + s)
    write(t, "cmos-before-1970", u64(640 << 10) + u64(0) + u64((1 << 63) | 86400) + s)
    # POST codes, ACPI sleep and reset, and stray ports of every size.
    s = b"".join(lw(DEBUG, 0, v) for v in (0x00, 0x10, 0x20, 0x3F, 0x40, 0xFF)) + lr(DEBUG, 0)
    s += lw(PM, 1, 0xFF) + lr(PM, 1) + lw(PM, 0, (5 << 2) | (1 << 5)) + lw(PM, 2, 0x06)
    for size in (0, 2, 4, 8):
        s += lw(SERIAL, 0, 0x4142434445464748, size) + lr(CMOS, 1, size)
    s += u8(0) + u8(9) + u16(0xCF8) + u8(4) + u64(0x80000000) + u8(1) + u8(9) + u16(0x3FD) + u8(1) + u64(0)
    write(t, "post-codes-acpi-and-odd-sizes", head + s)


# ---------------------------------------------------------------- cli_options


def gen_cli_options():
    t = "cli_options"
    full = [
        "--kernel", "vmlinux", "--initramfs", "initrd.img", "--cmdline", "console=ttyS0 root=/dev/vda rw",
        "--cpus", "boot=2", "--memory", "size=1G,prefault=on",
        "--serial", "tty", "--console", "off",
        "--disk", "path=root.img,num_queues=2,queue_size=128,id=root",
        "--disk", "path=data.img,readonly=on,direct=on",
        "--net", "tap=tap0,ip=192.168.249.1,mask=255.255.255.0,mac=52:54:00:12:34:56,num_queues=2",
        "--rng", "--device", "path=/sys/bus/pci/devices/0000:01:00.0,id=gpu0,x_nv_gpudirect_clique=1",
        "--seccomp", "log", "-vv", "--log-file", "vmm.log",
    ]
    write(t, "full-command-line", "\n".join(full).encode())
    write(t, "minimal-command-line", b"--kernel\nvmlinux")
    write(t, "ch-style-options", "\n".join(["--kernel", "bzImage", "--cpus", "boot=4,max=4", "--memory", "size=4G,hugepages=on,shared=on", "--serial", "file=serial.log", "--console", "null", "--rng", "src=/dev/urandom", "--seccomp", "false"]).encode())
    for name, value in [
        ("memory", "size=512M,hugepages=off,prefault=on,shared=off"),
        ("cpus", "boot=4,max=4"),
        ("serial", "file=/tmp/serial.log"),
        ("console", "tty"),
        ("seccomp", "log"),
        ("size", "16T"),
        ("disk", "path=/var/lib/vm/root.img,readonly=on,direct=off,num_queues=4,queue_size=256,id=disk0"),
        ("net", "tap=tap0,ip=10.0.0.1,mask=255.255.255.0,mac=de:ad:be:ef:00:01,num_queues=2,queue_size=256,id=net0"),
        ("rng", "src=/dev/urandom"),
        ("device", "path=/sys/bus/pci/devices/0000:41:00.0/,id=gpu0,x_nv_gpudirect_clique=3"),
    ]:
        write(t, name, f"{name}\n{value}".encode())


# ---------------------------------------------------------------- kernel_loader

GUEST_LOAD_ADDR = 0x10_0000
CODE_OFFSET = 0x1000


def elf_note(name, n_type, desc_bytes):
    v = u32(len(name)) + u32(len(desc_bytes)) + u32(n_type)
    for part in (name, desc_bytes):
        v += part + b"\0" * ((-len(part)) % 4)
    return v


def elf_with_note(code, note_bytes):
    """A port of vmm_tests::pvh_guest_elf's builder (tests/src/lib.rs)."""

    def phdr(p_type, flags, offset, addr, size, align):
        return u32(p_type) + u32(flags) + u64(offset) + u64(addr) + u64(addr) + u64(size) + u64(size) + u64(align)

    v = b"\x7fELF\x02\x01\x01\x00" + b"\0" * 8
    v += u16(2) + u16(62) + u32(1) + u64(GUEST_LOAD_ADDR) + u64(64) + u64(0) + u32(0)
    v += u16(64) + u16(56) + u16(2) + u16(64) + u16(0) + u16(0)
    v += phdr(1, 0b111, CODE_OFFSET, GUEST_LOAD_ADDR, len(code), 0x1000)
    v += phdr(4, 0b100, 64 + 2 * 56, 0, len(note_bytes), 4)
    v += note_bytes
    v += b"\0" * (CODE_OFFSET - len(v))
    return v + code


def serial_hello_code(msg):
    code = b"\xfa\x66\xba" + u16(0x3F8)
    for ch in msg:
        code += bytes([0xB0, ch, 0xEE])
    return code + bytes([0xB0, 0xFE, 0xE6, 0x64, 0xF4, 0xEB, 0xFD])


def pvh_guest_elf(code):
    return elf_with_note(code, elf_note(b"Xen\0", 18, u32(GUEST_LOAD_ADDR)))


def bzimage(version=0x020F, loadflags=1, xloadflags=1, cmdline_size=2047, init_size=0x10_0000):
    """Like arch's test BzSpec: two setup sectors, then a 4 KiB kernel."""
    v = bytearray(0x600 + 0x1000)
    v[0x1F1] = 2
    v[0x1FE:0x200] = u16(0xAA55)
    v[0x200] = 0xEB
    v[0x201] = 0x6A
    v[0x202:0x206] = b"HdrS"
    v[0x206:0x208] = u16(version)
    v[0x211] = loadflags
    v[0x214:0x218] = u32(0x10_0000)
    v[0x22C:0x230] = u32(0x7FFF_FFFF)
    v[0x230:0x234] = u32(0x20_0000)
    v[0x234] = 1
    v[0x236:0x238] = u16(xloadflags)
    v[0x238:0x23C] = u32(cmdline_size)
    v[0x260:0x264] = u32(init_size)
    for i in range(0x1000):
        v[0x600 + i] = (i * 7) & 0xFF
    return bytes(v)


def loader_seed(kernel, flags=0, vcpus=1, initramfs=0, extend=0, cmdline=b"console=ttyS0"):
    return u8(flags) + u8(vcpus - 1) + u32(initramfs) + u32(extend) + u8(len(cmdline)) + cmdline + kernel


def gen_kernel_loader():
    t = "kernel_loader"
    elf = pvh_guest_elf(serial_hello_code(b"Hello from the guest\n"))
    write(t, "pvh-elf", loader_seed(elf))
    write(t, "pvh-elf-initramfs-rsdp-4-vcpus", loader_seed(elf, flags=3, vcpus=4, initramfs=1 << 20, cmdline=b"console=ttyS0 reboot=k panic=1"))
    write(t, "elf-without-pvh-note", loader_seed(elf_with_note(b"\xf4", elf_note(b"GNU\0", 3, b"\xab" * 20))))
    write(t, "bzimage", loader_seed(bzimage(), flags=1, initramfs=64 << 10))
    write(t, "bzimage-2.06-rsdp-sparse-tail", loader_seed(bzimage(version=0x0206, cmdline_size=0), flags=2, vcpus=2, extend=3 << 20))


def gen_snapshot_state():
    """State::parse seeds: a u64 (memory file length << 8, little-endian) then state.json."""
    t = "snapshot_state"
    part = lambda name, n: [name, "ab" * n]
    state = (
        '{"format_version":1,"vmm_version":"0.1.0",'
        '"config":{"payload":{"kernel":"/k"},"memory":{"size":268435456}},'
        '"vm":[%s],"vcpus":[[%s],[%s]],'
        '"serial":{"dll":12,"dlm":0,"ier":5,"iir":1,"lcr":3,"lsr":96,"mcr":11,"msr":176,"scr":0,"fifo":[65]},'
        '"cmos":{"index":11,"data":[%s]},'
        '"memory":[{"gpa":0,"size":268435456,"offset":0}]}'
    )
    import json
    vm = ",".join(json.dumps(p) for p in [part("pic_master", 8), part("ioapic", 16), part("clock", 4)])
    vcpu = ",".join(json.dumps(p) for p in [part("regs", 144), part("lapic", 1024), part("msrs", 32)])
    cmos = ",".join(str(i) for i in range(128))
    body = (state % (vm, vcpu, vcpu, cmos)).encode()
    write(t, "two-vcpus", u64(268435456 << 8) + body)
    write(t, "memory-file-too-short", u64(4096 << 8) + body)
    write(t, "other-version", u64(0) + b'{"format_version":2}')


def gen_vsock_packet():
    """parse_packet seeds: a 44-byte virtio_vsock_hdr and its payload, one per op."""
    t = "vsock_packet"
    import struct

    def hdr(op, length=0, kind=1, flags=0):
        return struct.pack("<QQIIIHHIII", 3, 2, 1234, 5000, length, kind, op, flags, 262144, 0)

    write(t, "request", hdr(1))
    write(t, "response", hdr(2))
    write(t, "rst", hdr(3))
    write(t, "shutdown-both", hdr(4, flags=3))
    write(t, "rw-hello", hdr(5, 5) + b"hello")
    write(t, "credit-update", hdr(6))
    write(t, "credit-request", hdr(7))
    write(t, "rw-truncated", hdr(5, 100) + b"short")
    write(t, "seqpacket", hdr(1, kind=2))
    write(t, "short-header", hdr(5)[:30])


def main():
    gen_virtio_queue_chain()
    gen_virtio_blk_request()
    gen_pci_config()
    gen_vfio_config()
    gen_legacy_devices()
    gen_cli_options()
    gen_kernel_loader()
    gen_snapshot_state()
    gen_vsock_packet()


if __name__ == "__main__":
    main()
