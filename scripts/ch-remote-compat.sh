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
truncate -s 8M "$dir/disk.img"
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
refused "not supported yet" add-disk "path=$dir/disk.img"
refused "not supported yet" add-net "tap=chtap0"
refused "not supported yet" add-device "path=/sys/bus/pci/devices/0000:00:00.0"
refused "not supported yet" remove-device "_disk0"
refused "not supported yet" resize --cpus 2
refused "not supported yet" snapshot "file://$dir/snap"
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
echo "ch-remote-compat: PASS"
