# Guest NUMA (--memory-zone, --numa): the nodes L2's kernel built from the SRAT and SLIT: each
# node's CPUs, its memory as the kernel counts it, and its distances.
n=0
for d in /sys/devices/system/node/node[0-9]*; do
    [ -d "$d" ] || continue
    n=$((n + 1))
    id=${d##*/node}
    kb=$(sed -n 's/.*MemTotal: *\([0-9]*\) kB/\1/p' $d/meminfo)
    echo "LAB-NUMA-NODE $id cpus=$(cat $d/cpulist) distance=$(cat $d/distance | tr ' ' ,)"
    [ "${kb:-0}" -gt 65536 ] && echo "LAB-NUMA-NODE-MEM $id over 64 MiB ($kb kB)"
done
echo "LAB-NUMA-NODES $n"
dmesg | grep -m3 -iE 'SRAT|NUMA: ' | sed 's/^\[[^]]*\] */LAB-NUMA-DMESG /'
