# virtio-rng: the guest's hwrng is virtio and gives bytes.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_rng
echo "LAB-RNG-CURRENT $(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
n=$(dd if=/dev/hwrng bs=64 count=4 2>/dev/null | wc -c)
echo "LAB-RNG-BYTES $n"
