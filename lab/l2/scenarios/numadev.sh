# A passed-through device placed in a guest NUMA node (--device ...,numa_node=1): the node and
# the bridge L2's kernel put it under (a root port on the node's expander host bridge, whose
# _PXM Linux reads), the root complexes it found, then edu's own self-test through that path.
for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor):$(cat $d/device)" = 0x1234:0x11e8 ] || continue
    echo "LAB-NUMADEV ${d##*/} numa_node=$(cat $d/numa_node) parent=$(basename "$(dirname "$(readlink -f $d)")")"
done
for r in /sys/devices/pci0000:*; do echo "LAB-NUMADEV-ROOT ${r##*/}"; done
. /lab/scenarios/edu.sh
