#!/bin/sh
# Scenario hotplug-net (with lab/l2/scenarios/hotplugnet.sh): a Debian guest booted through the
# API with no NIC; L1 hot-adds one on a new tap with L1's address on it (vm.add-net); the guest
# pings L1 and L1 pings the guest; L1 removes the NIC (vm.remove-device) and the guest sees it go.
S=/tmp/hpn.sock
: > /tmp/hpn.log
waitfor() { i=0; while ! grep -q "$1" /tmp/hpn.log && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done; }
$VMM --api-socket path=$S > /tmp/hpn.log 2>&1 & pid=$!
i=0; while ! api $S GET vmm.ping > /dev/null 2>&1 && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
api $S PUT vm.create "{\"cpus\":{\"boot_vcpus\":1,\"max_vcpus\":1},\"memory\":{\"size\":268435456},\"payload\":{\"kernel\":\"$VMLINUX\",\"initramfs\":\"$INITRD\",\"cmdline\":\"$CMDLINE quiet lab.scenario=hotplugnet\"},\"serial\":{\"mode\":\"Tty\"},\"console\":{\"mode\":\"Off\"}}"
api $S PUT vm.boot
waitfor "LAB-HPN-READY"
api $S PUT vm.add-net '{"tap":"hptap0","ip":"192.168.250.1","mask":"255.255.255.0","id":"nic0"}'
waitfor "LAB-HPN-PINGED-L1"
if ping -c 3 -W 2 192.168.250.2 > /tmp/hpn-ping.txt 2>&1; then
    echo "LAB-HPN-L1-PING-OK $(grep -o '[0-9]* packets received' /tmp/hpn-ping.txt)"
else
    echo "LAB-HPN-L1-PING-FAIL"; cat /tmp/hpn-ping.txt
fi
api $S PUT vm.remove-device '{"id":"nic0"}'
waitfor "LAB-L2-DONE"
i=0; while ! api $S GET vm.info 2>/dev/null | grep -q '"state":"Shutdown"' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
api $S PUT vmm.shutdown
wait $pid
rc=$?
echo "LAB-HPN-VMM-EXIT $rc"
cat /tmp/hpn.log
exit $rc
