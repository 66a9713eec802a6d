# A large 64-bit prefetchable BAR passed through: ivshmem-plain (1af4:1110) whose BAR2 is a
# 64 GiB file-backed memory region in the host QEMU (the stand-in for a GPU's VRAM BAR).
# Lists the devices with BAR sizes (pcidevs.sh), then writes a known pattern through an mmap
# of resource2 at 0, 1 GiB and 63 GiB and reads it back (bar-poke). lab.py checks on the host,
# after QEMU exits, that the patterns landed in the backing file (lab/host-checks.txt).
. /lab/scenarios/pcidevs.sh
lab_pci_devs
d=$(lab_pci_find 0x1af4:0x1110)
if [ -z "$d" ]; then
    echo "LAB-IVSHMEM-NODEV"
    echo "LAB-IVSHMEM RESULT FAIL"
else
    echo "LAB-IVSHMEM dev=${d##*/} resource2=$(stat -c %s $d/resource2 2>/dev/null) bytes"
    # offset pattern (8 ASCII bytes, repeated over 256 bytes): VRAM-00G, VRAM-01G, VRAM-63G
    lab_bar_patterns $d/resource2 LAB-IVSHMEM \
        0:5652414d2d303047 1G:5652414d2d303147 63G:5652414d2d363347
fi
