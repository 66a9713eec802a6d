#!/bin/sh
# Scenario hotplug-net (with lab/l2/scenarios/hotplugnet.sh): a Debian guest booted through the
# API with no NIC; L1 hot-adds one on a new tap with L1's address on it (vm.add-net); the guest
# pings L1 and L1 pings the guest; L1 removes the NIC (vm.remove-device) and the guest sees it go.
S=/tmp/hpn.sock
LOG=/tmp/hpn.log
. /lab/l1/lib-api-vm.sh
api_vm_boot hotplugnet
waitfor "LAB-HPN-READY"
api $S PUT vm.add-net '{"tap":"hptap0","ip":"192.168.250.1","mask":"255.255.255.0","id":"nic0"}'
waitfor "LAB-HPN-PINGED-L1"
if ping -c 3 -W 2 192.168.250.2 > /tmp/hpn-ping.txt 2>&1; then
    echo "LAB-HPN-L1-PING-OK $(grep -o '[0-9]* packets received' /tmp/hpn-ping.txt)"
else
    echo "LAB-HPN-L1-PING-FAIL"; cat /tmp/hpn-ping.txt
fi
api $S PUT vm.remove-device '{"id":"nic0"}'
api_vm_end
echo "LAB-HPN-VMM-EXIT $rc"
cat /tmp/hpn.log
exit $rc
