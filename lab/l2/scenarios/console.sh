# virtio-console: a line written to /dev/hvc0 reaches the host-side sink.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci virtio_console
i=0
while [ ! -e /dev/hvc0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
echo "LAB-HVC-HELLO from the guest" > /dev/hvc0 && echo "LAB-HVC-WRITTEN"
