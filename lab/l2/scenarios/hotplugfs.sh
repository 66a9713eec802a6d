# virtio-fs hot-added (lab scenario hotplug-fs, lab/l1/scenarios/hotplug-fs.sh): the guest boots
# with none; once L1 adds one (vm.add-fs) it mounts the tag, reads L1's file, writes one, and
# unmounts; L1 then removes the device (vm.remove-device) and the guest sees it go.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtiofs
mkdir -p /mnt
echo "LAB-HPF-READY"
i=0; while ! mount -t virtiofs hotfs /mnt 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
if grep -q ' /mnt virtiofs ' /proc/mounts; then
    echo "LAB-HPF-MOUNTED"
    echo "LAB-HPF-READ $(cat /mnt/from-l1.txt)"
    echo "written by L2 after a hot-add" > /mnt/from-l2.txt && sync
    umount /mnt && echo "LAB-HPF-UNMOUNTED"
else
    echo "LAB-HPF-NOT-MOUNTED"
fi
fsdev() { for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device 2>/dev/null)" = 0x001a ] && return 0; done; return 1; }
i=0; while fsdev && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fsdev && echo "LAB-HPF-STILL-THERE" || echo "LAB-HPF-GONE"
