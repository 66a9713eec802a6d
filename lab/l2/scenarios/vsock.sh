# virtio-vsock (lab scenario vsock, lab/l1/scenarios/vsock.sh): an echo server on vsock port 5000
# for the host's streams (one of 64 MiB, one that vanishes, sixteen at once), and a connection
# from the guest to host port 6000 (L1's unix socket <vmm socket>_6000) that sends 4 MiB and
# checks the echo.
. /lab/scenarios/lib-modules.sh
load_modules virtio_pci vmw_vsock_virtio_transport
vsock-guest echo 5000 18 &
epid=$!
vsock-guest send 2 6000 4194304
wait $epid
