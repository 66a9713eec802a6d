# Passed-through devices behind PCI Express root ports (--device ...,root_port=on): the
# topology L2's kernel built (each device's parent bridge, the bridge's class, its link as the
# device reports it, the bridge's windows and the BARs Linux assigned inside them, with no
# pci=realloc on the command line), then the devices' own checks through those BARs: edu's
# self-test with DMA (edu.sh) and patterns written through ivshmem's 64 GiB BAR at 3 GiB and
# 62 GiB (offsets and bytes no other scenario writes; lab.py finds them in the host's backing
# file, lab/host-checks.txt).
grep -q 'pci=realloc' /proc/cmdline && echo "LAB-RP-REALLOC-ON-CMDLINE"
# What the host bridge's _OSC granted (Linux: "_OSC: OS now controls [...]").
dmesg | grep -o '_OSC: OS now controls.*' | sed 's/^/LAB-RP-OSC /'
for d in /sys/bus/pci/devices/*; do
    parent=$(basename "$(dirname "$(readlink -f "$d")")")
    case "$parent" in 0000:*) ;; *) continue ;; esac
    b=/sys/bus/pci/devices/$parent
    echo "LAB-RP-TOPO ${d##*/} $(cat $d/vendor):$(cat $d/device) behind $parent class=$(cat $b/class) $(cat $b/vendor):$(cat $b/device)"
    echo "LAB-RP-LINK $parent $(cat $b/current_link_speed 2>/dev/null | tr ' ' _) x$(cat $b/current_link_width 2>/dev/null)"
    # The BARs Linux assigned and the bridge's windows.
    i=0
    while read -r start end flags; do
        [ "$start" != 0x0000000000000000 ] && echo "LAB-RP-BAR ${d##*/} bar$i $start-$end"
        i=$((i + 1))
    done < $d/resource
    # (resource lines: 1-6 BARs, 7 ROM, 8-13 SR-IOV, 14 I/O window, 15 memory, 16 prefetchable)
    echo "LAB-RP-WINDOWS $parent mem=$(sed -n 15p $b/resource | cut -d' ' -f1-2 | tr ' ' -) pref=$(sed -n 16p $b/resource | cut -d' ' -f1-2 | tr ' ' -)"
done
dmesg | grep -iE 'can.t assign|no space for|failed to assign|BAR [0-9]+: can' | sed 's/^/LAB-RP-ASSIGN-FAIL /'
. /lab/scenarios/edu.sh
. /lab/scenarios/pcidevs.sh
d=$(lab_pci_find 0x1af4:0x1110)
if [ -n "$d" ]; then
    # No driver binds ivshmem here: enable it as a driver would (pci_enable_device, through
    # sysfs), since Linux assigned its BARs but left decoding off, as it does for any device.
    echo 1 > $d/enable && echo "LAB-RP-IVSHMEM-ENABLED"
    lab_bar_patterns $d/resource2 LAB-RP-IVSHMEM 3G:52504f52542d3033 62G:52504f52542d3632
fi
