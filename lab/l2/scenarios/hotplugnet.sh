# PCI hotplug of a virtio-net device (lab scenario hotplug-net, lab/l1/scenarios/hotplug-net.sh):
# booted with no NIC; L1 hot-adds one on a tap (vm.add-net), the guest finds eth0, pings L1's end
# of the tap and answers L1's pings; L1 removes it and the guest sees eth0 go.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_net
echo "LAB-HPN-READY"
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
if [ -e /sys/class/net/eth0 ]; then
    ip link set eth0 up
    ip addr add 192.168.250.2/24 dev eth0
    echo "LAB-HPN-SEEN eth0 $(cat /sys/class/net/eth0/address)"
    if ping -c 3 -W 2 192.168.250.1 > /tmp/ping.txt 2>&1; then
        echo "LAB-HPN-PING-OK $(grep -o '[0-9]* packets received' /tmp/ping.txt)"
    else
        echo "LAB-HPN-PING-FAIL"; cat /tmp/ping.txt
    fi
else
    echo "LAB-HPN-NOT-SEEN"
fi
echo "LAB-HPN-PINGED-L1"
i=0; while [ -e /sys/class/net/eth0 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
[ -e /sys/class/net/eth0 ] && echo "LAB-HPN-STILL-THERE" || echo "LAB-HPN-GONE"
