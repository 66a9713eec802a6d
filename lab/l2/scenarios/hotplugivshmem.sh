# VFIO hotplug of a 64 GiB-BAR device (lab scenario vfio-ivshmem-hotplug): the guest boots with no
# device; once L1 hot-adds ivshmem-plain (its BAR2 a 64 GiB window, the stand-in for a GPU's
# VRAM BAR), the same checks as the ivshmem scenario run: BAR sizes, then patterns written and
# read back through the BAR at 0, 1 GiB and 63 GiB.
. /lab/scenarios/pcidevs.sh
echo "LAB-HPI-READY"
i=0; while [ -z "$(lab_pci_find 0x1af4:0x1110)" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
. /lab/scenarios/ivshmem.sh
