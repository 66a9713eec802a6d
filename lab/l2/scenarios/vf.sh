# An SR-IOV virtual function passed through (igb's VF, 8086:10ca; lab/l1/scenarios/vfio-vf.sh):
# its PCI identity and BARs, its interrupt pin (a VF has no INTx: 0), and, where this kernel has
# igbvf (the lab's own 6.12), the driver's bring-up: igbvf resets the VF and asks the PF driver
# in L1 for its MAC address through the VF's mailbox registers and interrupt, so a bound netdev
# with a MAC means MMIO and MSI-X work both ways through the passthrough.
. /lab/scenarios/pcidevs.sh
lab_pci_devs
if d=$(lab_pci_find 0x8086:0x10ca); then
    pin=$(dd if=$d/config bs=1 skip=61 count=1 2>/dev/null | od -An -tu1 | tr -d ' ')
    echo "LAB-VF-DEV ${d##*/} class=$(cat $d/class) intx_pin=$pin"
    i=0
    while [ $i -lt 100 ] && [ ! -d $d/net ]; do sleep 0.1; i=$((i+1)); done
    if [ -d $d/net ]; then
        n=$(ls $d/net | head -1)
        ip link set $n up 2>/dev/null
        sleep 1
        echo "LAB-VF-NET $n driver=$(basename $(readlink $d/driver)) mac=$(cat /sys/class/net/$n/address) operstate=$(cat /sys/class/net/$n/operstate)"
        echo "LAB-VF-IRQS $(grep -c "$n" /proc/interrupts) vectors, $(grep "$n" /proc/interrupts | awk '{s+=$2} END {print s+0}') interrupts"
        # Packets both ways through the VF (its DMA into and out of guest RAM): L0 QEMU's user
        # network behind the PF answers pings to its gateway, 10.0.2.2.
        ip addr add 10.0.2.15/24 dev $n
        got=$(ping -c 3 -W 2 10.0.2.2 2>&1 | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
        echo "LAB-VF-PING 10.0.2.2 received=${got:-0}/3 rx_bytes=$(cat /sys/class/net/$n/statistics/rx_bytes) tx_bytes=$(cat /sys/class/net/$n/statistics/tx_bytes)"
    else
        echo "LAB-VF-NODRIVER (no igbvf in this kernel: $(uname -r))"
    fi
else
    echo "LAB-VF-MISSING"
fi
