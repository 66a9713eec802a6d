#!/bin/sh
# Scenario vsock (with lab/l2/scenarios/vsock.sh): the vmm's hybrid vsock between L1 and the L2
# guest, both ways. L1 listens on /tmp/v.sock_6000 for the guest's connection to host port 6000;
# once the guest's echo server listens, L1 streams 64 MiB through one stream, then opens one
# that vanishes mid-way, then sixteen of 1 MiB at once; every byte echoed is checked by the
# side that sent it (vsock-host / vsock-guest print what they verified).
rm -f /tmp/v.sock /tmp/v.sock_*
: > /tmp/vs.log
vsock-host serve /tmp/v.sock_6000 1 > /tmp/vs-serve.log 2>&1 &
spid=$!
$VMM --kernel $VMLINUX --initramfs $INITRD --cmdline "$CMDLINE quiet lab.scenario=vsock" --cpus boot=1 \
    --memory size=256M --serial tty --console off --vsock cid=3,socket=/tmp/v.sock > /tmp/vs.log 2>&1 &
pid=$!
i=0; while ! grep -q "LAB-VSOCK-LISTENING" /tmp/vs.log && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done
vsock-host stream /tmp/v.sock 5000 ${LAB_VSOCK_BYTES:-67108864} 1
vsock-host vanish /tmp/v.sock 5000
vsock-host stream /tmp/v.sock 5000 1048576 16
wait $pid
rc=$?
wait $spid
cat /tmp/vs-serve.log
cat /tmp/vs.log
exit $rc
