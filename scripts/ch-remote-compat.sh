#!/usr/bin/env bash
# Cloud Hypervisor's own client, unmodified, against this VMM's API:
#   CH_REMOTE=/path/to/ch-remote scripts/ch-remote-compat.sh
# (ch-remote: `cargo build --bin ch-remote --no-default-features --features kvm` in a
# cloud-hypervisor checkout; Debian does not package it.) Boots first_light's tiny halting guest
# on this host's /dev/kvm with target/release/vmm (VMM=... for another), drives the whole
# lifecycle with ch-remote and checks each answer and state (vm.info read back with ch-remote
# too) and the guest's serial output. One line per check; exit 1 at the first mismatch.
set -uo pipefail
cd "$(dirname "$0")/.."
CH=${CH_REMOTE:?set CH_REMOTE to a ch-remote binary}
VMM=${VMM:-target/release/vmm}
FIRST_LIGHT=${FIRST_LIGHT:-target/release/first_light}
dir=$(mktemp -d /tmp/ch-remote-compat.XXXXXX)
sock=$dir/api.sock
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"; }
trap cleanup EXIT

fail() { echo "FAIL: $*"; [ -f "$dir/vmm.log" ] && sed 's/^/  vmm: /' "$dir/vmm.log"; exit 1; }
ok() { echo "ok    $*"; }
ch() { "$CH" --api-socket "$sock" "$@" 2>&1; }
state() { ch info | sed -n 's/.*"state":"\([A-Za-z]*\)".*/\1/p'; }
# expect CMD... : ch-remote succeeds
expect() { out=$(ch "$@") || fail "ch-remote $* failed: $out"; ok "ch-remote $*"; }
# refused WORDS CMD... : ch-remote fails and its error contains WORDS
refused() {
    local words=$1
    shift
    out=$(ch "$@") && fail "ch-remote $* succeeded: $out"
    grep -q "$words" <<<"$out" || fail "ch-remote $*: no '$words' in: $out"
    ok "ch-remote $* refused: $(grep -o "$words.*" <<<"$out" | head -1)"
}
want_state() { s=$(state); [ "$s" = "$1" ] || fail "state is '$s', want $1"; ok "  state $1"; }

"$FIRST_LIGHT" --write-halt-guest "$dir/guest" >/dev/null || fail "first_light --write-halt-guest"
truncate -s 8M "$dir/disk.img" "$dir/disk2.img" "$dir/disk3.img"
"$VMM" --api-socket "path=$sock" >"$dir/vmm.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
echo "ch-remote: $("$CH" --version 2>&1)"

out=$(ch ping) || fail "ping: $out"
grep -q "\"pid\":$pid" <<<"$out" || fail "ping does not name pid $pid: $out"
ok "ch-remote ping: $out"
cat >"$dir/vm.json" <<EOF
{"cpus":{"boot_vcpus":1,"max_vcpus":1},"memory":{"size":67108864},
 "payload":{"kernel":"$dir/guest","cmdline":"console=ttyS0"},
 "disks":[{"path":"$dir/disk.img"}],"rng":{"src":"/dev/urandom"},
 "serial":{"mode":"File","file":"$dir/serial"},"console":{"mode":"Off"}}
EOF
refused "not created\|NotFound" info
expect create "$dir/vm.json"
want_state Created
expect boot
want_state Running
for _ in $(seq 100); do [ -s "$dir/serial" ] && break; sleep 0.05; done
[ -s "$dir/serial" ] || fail "the guest wrote nothing to its serial file"
ok "  the guest's serial output: $(wc -c <"$dir/serial") bytes"
expect pause
want_state Paused
refused "Paused" pause
expect resume
want_state Running
out=$(ch counters) || fail "counters: $out"
ok "ch-remote counters: $out"
expect power-button
expect reboot
want_state Running
# A snapshot of the paused VM, as ch-remote asks for it; the directory holds Cloud
# Hypervisor's files.
expect pause
expect snapshot "file://$dir/snap"
for f in config.json state.json; do [ -s "$dir/snap/$f" ] || fail "the snapshot has no $f"; done
ok "  snapshot: $(ls "$dir/snap" | tr '\n' ' ')"
expect resume
want_state Running
# Hot-plug with ch-remote's own bodies (it sends its whole DiskConfig, disable_io_uring and
# lock_granularity included): a disk in the slot it asks for, seen in vm.info; the same slot
# again and a disk already in the VM are refused; a device not bound to vfio-pci is refused
# naming what to do. (This guest has no hotplug driver: a removal would wait for it, so none.)
expect add-disk "path=$dir/disk2.img,id=hot0,pci_device_id=5"
ch info | grep -q '"id":"hot0"[^}]*"pci_device_id":5' || ch info | grep -q '"pci_device_id":5[^}]*"id":"hot0"' ||
    fail "vm.info does not list hot0 in slot 5: $(ch info)"
ch info | grep -q '"pci_bdf":"0000:00:05.0"' || fail "the device tree has nothing at 0000:00:05.0: $(ch info)"
ok "  vm.info: hot0 at 0000:00:05.0"
refused "slot 5 of segment 0" add-disk "path=$dir/disk3.img,pci_device_id=5"
refused "given to two disks" add-disk "path=$dir/disk2.img"
refused "vfio-pci" add-device "path=/sys/bus/pci/devices/0000:00:00.0"
refused "not supported yet" resize --cpus 2
# The hot-added disk grows (its image with it; the snapshot's disk keeps its size, or the
# snapshot would no longer match it); shrinking is refused; an NMI is delivered (this guest
# has no interrupt table: it triple-faults and the VM reboots, still Running).
expect resize-disk --disk hot0 --size 16777216
[ "$(stat -c %s "$dir/disk2.img")" = 16777216 ] || fail "the image did not grow: $(stat -c %s "$dir/disk2.img")"
ok "  the image is 16777216 bytes"
refused "shrinking" resize-disk --disk hot0 --size 4194304
expect nmi
want_state Running
expect shutdown
want_state Shutdown
expect boot
want_state Running
expect delete
refused "not created\|NotFound" info
expect create "$dir/vm.json"
expect boot
want_state Running
expect shutdown-vmm
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
wait "$pid"
rc=$?
pid=
[ "$rc" = 0 ] || fail "vmm exited $rc after shutdown-vmm"
[ -e "$sock" ] && fail "the socket was left behind"
ok "vmm exited 0 after shutdown-vmm; socket removed"
# The snapshot restored into a new VMM with ch-remote: paused (Cloud Hypervisor's default),
# then running again.
"$VMM" --api-socket "path=$sock" >"$dir/vmm.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
expect restore "source_url=file://$dir/snap"
want_state Paused
expect resume
want_state Running
expect shutdown-vmm
wait "$pid"
rc=$?
pid=
[ "$rc" = 0 ] || fail "the restored VM's vmm exited $rc"
ok "the restored VM's vmm exited 0"
echo "ch-remote-compat: PASS"
