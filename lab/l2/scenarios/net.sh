# virtio-net: the guest talks to the L1 end of the tap (192.168.249.1) both ways (ping).
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_net
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
ip addr add 192.168.249.2/24 dev eth0
echo "LAB-NET-MAC $(cat /sys/class/net/eth0/address)"
if ping -c 3 -W 2 192.168.249.1 > /tmp/ping.txt 2>&1; then
    echo "LAB-NET-PING-OK $(grep -o '[0-9]* packets received' /tmp/ping.txt)"
else
    echo "LAB-NET-PING-FAIL"; cat /tmp/ping.txt
fi
