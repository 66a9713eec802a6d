# Peer-to-peer DMA between two passed-through devices: QEMU's edu (1234:11e8) DMAs a pattern
# from its buffer into ivshmem-plain's (1af4:1110) BAR2 at the BAR's bus address (= its
# guest-physical address: no IOMMU in L2), and the guest reads the bytes back through ivshmem's
# BAR (bar-poke on an mmap of resource2). The trigger is edu_test.ko's p2p_dst parameter: a write
# returns once edu has loaded "EDU-P2P!" x p2p_len from RAM and written it to that address.
# The vmm DMA-maps the BARs for peer-to-peer lazily, once a driver has enabled bus mastering,
# and a 64 GiB BAR 256 MiB at a time; until the target is mapped the DMA faults in L1's IOMMU and
# nothing lands. So the DMA is retried (with a read back after each) for lab.p2p_secs (60) s.
# It targets BAR2 + lab.p2p_off (0x80000800: 2 GiB + 2 KiB, across a page boundary).
# Prints LAB-P2P-BEFORE absent|present (the pattern must not be there before the DMA) and
# LAB-P2P RESULT PASS|FAIL. lab.py then looks for the pattern in the host's backing file.
. /lab/scenarios/pcidevs.sh
lab_pci_devs
secs=60 off=0x80000800 len=4088 pat=4544552d50325021  # "EDU-P2P!"
for arg in $(cat /proc/cmdline); do
    case "$arg" in
        lab.p2p_secs=*) secs=${arg#lab.p2p_secs=} ;;
        lab.p2p_off=*) off=${arg#lab.p2p_off=} ;;  # BAR2 offset (host-checks.txt expects the default)
    esac
done
edu=$(lab_pci_find 0x1234:0x11e8)
ivs=$(lab_pci_find 0x1af4:0x1110)
if [ -z "$edu" ] || [ -z "$ivs" ]; then
    echo "LAB-P2P-NODEV edu=${edu##*/} ivshmem=${ivs##*/}"
    echo "LAB-P2P RESULT FAIL"
else
    bar2=$(sed -n 3p $ivs/resource | cut -d' ' -f1)
    dst=$(printf '0x%x' $((bar2 + off)))
    echo "LAB-P2P edu=${edu##*/} ivshmem=${ivs##*/} bar2=$bar2 dst=$dst len=$len"
    if bar-poke $ivs/resource2 $off read $pat $len > /dev/null; then
        echo "LAB-P2P-BEFORE present"
    else
        echo "LAB-P2P-BEFORE absent"
    fi
    insmod /lib/modules/edu_test.ko p2p_len=$len 2>&1 | sed 's/^/LAB-EDU-INSMOD /'
    dmesg | grep 'EDU-TEST' | sed 's/^\[[^]]*\] *//; s/^edu_test: //; s/^/LAB-EDU /'
    t0=$(cut -d. -f1 /proc/uptime)
    tries=0 res=FAIL out=
    while :; do
        tries=$((tries + 1))
        if ! echo $dst 2>/tmp/p2p.err > /sys/module/edu_test/parameters/p2p_dst; then
            echo "LAB-P2P-DMA-ERROR try=$tries $(cat /tmp/p2p.err)"
            break  # no bound edu_test, or the DMA itself timed out: retrying cannot help
        fi
        if out=$(bar-poke $ivs/resource2 $off read $pat $len); then
            res=PASS
            break
        fi
        [ $(($(cut -d. -f1 /proc/uptime) - t0)) -lt $secs ] || break
        sleep 1
    done
    dmesg | grep 'EDU-TEST p2p' | tail -1 | sed 's/^\[[^]]*\] *//; s/^edu_test: //; s/^/LAB-EDU /'
    echo "LAB-P2P-READBACK ${out:-none}"
    echo "LAB-P2P RESULT $res tries=$tries secs=$(($(cut -d. -f1 /proc/uptime) - t0))"
fi
