# virtio-net throughput: stream zeros to the L1 end of the tap (nc listening there) and time it.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_net
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set eth0 up
ip addr add 192.168.249.2/24 dev eth0
ping -c 1 -W 2 192.168.249.1 >/dev/null 2>&1
mb=32
t0=$(cut -d' ' -f1 /proc/uptime)
dd if=/dev/zero bs=64k count=$((mb * 16)) 2>/dev/null | nc -w 5 192.168.249.1 5001
t1=$(cut -d' ' -f1 /proc/uptime)
awk -v mb=$mb -v a=$t0 -v b=$t1 'BEGIN { printf "LAB-NET-BENCH tx=%dMiB %.1fMiB/s\n", mb, mb/(b-a) }'
