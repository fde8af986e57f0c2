#!/usr/bin/env bash
# Boots the appliance image under qemu (TCG) and checks that it serves:
#
#   sudo bash Appliance/image/boot-test.sh [IMAGE.qcow2] [KEELCTL]
#
#   [client ns] 10.1.0.2 ── br ── tap ── NIC 00:04.0 (p0, 10.1.0.1) [VM: keel-dataplane]
#                                        NIC 00:05.0 (p1, 10.2.0.1) ── tap ── br ── [backend ns] 10.2.0.2
#   management NIC 00:03.0: qemu user networking, the admin API forwarded to 127.0.0.1 only
#
# The VM's disk is a throwaway overlay of the image. qemu and the two bridges
# live in a namespace of their own, the client and the backend in two more;
# all three are removed on exit, also on failure. Prints the boot time (qemu
# start to `keelctl status` healthy) and the checks' figures; exits non-zero
# when a check fails.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
image="$(realpath "${1:-$repo/.build/image/keel.qcow2}")"
keelctl="$(realpath "${2:-$repo/.build/release/keelctl}")"
[ "$(id -u)" -eq 0 ] || { echo "boot-test.sh: run as root" >&2; exit 1; }
[ -f "$image" ] || { echo "boot-test.sh: no image at $image (Appliance/image/build.sh makes it)" >&2; exit 1; }
[ -x "$keelctl" ] || { echo "boot-test.sh: no keelctl at $keelctl" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || { apt-get install -y -qq --no-install-recommends qemu-system-x86 qemu-utils >/dev/null; }

id="kb$$"
vm="$id-vm" client="$id-cl" backend="$id-be"
work="$(mktemp -d /tmp/keel-boot.XXXXXX)"
api_port=$((20000 + $$ % 20000))
ssh_port=$((api_port + 1))
qemu_pid=""
cleanup() {
    local rc=$?
    set +e # every step of the cleanup runs, whatever fails
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null && sleep 1 && kill -9 "$qemu_pid" 2>/dev/null
    for p in $(cat "$work"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true; done
    for n in "$vm" "$client" "$backend"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null; ip netns del "$n" 2>/dev/null || true; done
    if [ "$rc" -ne 0 ]; then echo "--- serial console (last 60 lines)"; tail -n 60 "$work/serial.log" 2>/dev/null || true; fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT INT TERM
fail() { echo "boot-test: FAIL: $*" >&2; exit 1; }
inns() { local n="$1"; shift; ip netns exec "$n" "$@"; }
ctl() { inns "$vm" "$keelctl" "$@" --api "http://127.0.0.1:$api_port" --token "$token"; }
# A shell in the VM: root's SSH key comes in as the systemd credential
# ssh.authorized_keys.root (qemu fw_cfg; Debian 12's systemd provisions it
# with tmpfiles' provision.conf), nothing in the image changes for the test.
vmsh() { inns "$vm" ssh -q -i "$work/key" -p "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o BatchMode=yes -o ConnectTimeout=10 root@127.0.0.1 "$@"; }
since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }

echo "== namespaces"
for n in "$vm" "$client" "$backend"; do ip netns add "$n"; inns "$n" ip link set lo up; done
for side in c b; do
    inns "$vm" ip link add "br$side" type bridge
    inns "$vm" ip link set "br$side" up
    inns "$vm" ip tuntap add "tap$side" mode tap
    inns "$vm" ip link set "tap$side" master "br$side" up
done
ip link add "${id}c" type veth peer name "${id}cv"
ip link add "${id}b" type veth peer name "${id}bv"
ip link set "${id}c" netns "$client"; ip link set "${id}cv" netns "$vm"
ip link set "${id}b" netns "$backend"; ip link set "${id}bv" netns "$vm"
inns "$vm" ip link set "${id}cv" master brc up
inns "$vm" ip link set "${id}bv" master brb up
for x in "$client ${id}c" "$backend ${id}b" "$vm ${id}cv" "$vm ${id}bv"; do
    set -- $x; inns "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true
done
inns "$client" ip link set "${id}c" up
inns "$client" ip addr add 10.1.0.2/24 dev "${id}c"
inns "$client" ip route add default via 10.1.0.1
inns "$backend" ip link set "${id}b" up
inns "$backend" ip addr add 10.2.0.2/24 dev "${id}b"
inns "$backend" ip addr add 198.51.100.1/32 dev lo
inns "$backend" ip addr add 203.0.113.10/32 dev lo
inns "$backend" ip route add default via 10.2.0.1
inns "$backend" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

echo "== booting $image (TCG)"
qemu-img create -q -f qcow2 -b "$image" -F qcow2 "$work/disk.qcow2"
ssh-keygen -q -t ed25519 -N "" -C keel-boot-test -f "$work/key"
t0=$(date +%s.%N)
inns "$vm" qemu-system-x86_64 -machine pc -accel tcg -cpu max -smp 2 -m 2048 -display none -vga none \
    -serial "file:$work/serial.log" -monitor none -no-reboot \
    -drive "file=$work/disk.qcow2,if=none,id=disk,format=qcow2" -device virtio-blk-pci,drive=disk,addr=0x6 \
    -fw_cfg "name=opt/io.systemd.credentials/ssh.authorized_keys.root,file=$work/key.pub" \
    -netdev "user,id=mgmt,hostfwd=tcp:127.0.0.1:$api_port-:8440,hostfwd=tcp:127.0.0.1:$ssh_port-:22" -device virtio-net-pci,netdev=mgmt,addr=0x3 \
    -netdev tap,id=d0,ifname=tapc,script=no,downscript=no -device virtio-net-pci,netdev=d0,addr=0x4,mac=02:4b:00:00:01:01 \
    -netdev tap,id=d1,ifname=tapb,script=no,downscript=no -device virtio-net-pci,netdev=d1,addr=0x5,mac=02:4b:00:00:01:02 \
    </dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!

# First boot prints the admin token on the console once.
token=""
for _ in $(seq 1 600); do
    kill -0 "$qemu_pid" 2>/dev/null || { cat "$work/qemu.log"; fail "qemu exited"; }
    token="$(grep -a -o 'admin token: [A-Za-z0-9_-]*' "$work/serial.log" 2>/dev/null | head -n 1 | cut -d' ' -f3 || true)"
    [ -n "$token" ] && break
    sleep 0.5
done
[ -n "$token" ] || fail "no admin token on the console within 300 s"
t_token=$(date +%s.%N)
healthy=""
for _ in $(seq 1 600); do
    if ctl status >"$work/status.txt" 2>&1; then healthy=yes; break; fi
    sleep 0.5
done
[ -n "$healthy" ] || { cat "$work/status.txt"; fail "keelctl status not healthy within 300 s"; }
t_ready=$(date +%s.%N)
boot_s=$(awk -v a="$t0" -v b="$t_ready" 'BEGIN {printf "%.1f", b - a}')
token_s=$(awk -v a="$t0" -v b="$t_token" 'BEGIN {printf "%.1f", b - a}')
echo "boot: admin token on the console after $token_s s, keelctl status healthy after $boot_s s"
cat "$work/status.txt"

echo "== a route and a VIP through the admin API"
ctl route add 198.51.100.0/24 --via 10.2.0.2 >/dev/null || fail "route add"
ctl vip add --id 1 --address 203.0.113.10 --protocol tcp --port 80 >/dev/null || fail "vip add"
ctl backend add 1 --id 1 --address 10.2.0.2 >/dev/null || fail "backend add"

echo "== traffic"
# The backend answers for 198.51.100.1 (routed) and for the VIP (IPIP from
# the appliance, decapsulated by decap.py when the kernel has no ipip module).
inns "$backend" python3 -c '
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"backend " + self.server.server_address[0].encode() + b"\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", 80), H).serve_forever()' >/dev/null 2>&1 &
echo $! > "$work/http.pid"
if inns "$backend" ip link set tunl0 up 2>/dev/null; then
    inns "$backend" sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
else
    inns "$backend" python3 "$repo/Appliance/lab/decap.py" kbdecap 6080 >"$work/decap.log" 2>&1 &
    echo $! > "$work/decap.pid"
    for _ in $(seq 1 50); do grep -q ready "$work/decap.log" 2>/dev/null && break; sleep 0.1; done
fi
ok=0
for _ in $(seq 1 60); do inns "$client" ping -c 1 -W 1 10.1.0.1 >/dev/null 2>&1 && { ok=1; break; }; sleep 1; done
[ "$ok" = 1 ] || fail "the appliance's p0 address does not answer ping"
sent=20
got=$(inns "$client" ping -c "$sent" -i 0.2 -W 2 198.51.100.1 | awk '/packets transmitted/ {print $4}')
echo "ping through the appliance: $got of $sent"
[ "$got" -ge $((sent - 1)) ] || fail "ping 198.51.100.1 through the appliance: $got of $sent"
body="$(inns "$client" curl -s --max-time 10 http://198.51.100.1/)" || fail "curl through the route"
[ "$body" = "backend 0.0.0.0" ] || fail "routed HTTP answer: $body"
vip_ok=0
for i in $(seq 1 10); do
    b="$(inns "$client" curl -s --max-time 10 http://203.0.113.10/ || true)"
    [ "$b" = "backend 0.0.0.0" ] && vip_ok=$((vip_ok + 1))
done
echo "HTTP to the VIP: $vip_ok of 10 answered by the backend"
[ "$vip_ok" = 10 ] || fail "VIP: $vip_ok of 10"
ctl stats > "$work/stats.txt" || fail "keelctl stats"
# BIRD runs on keel-control's configuration (no peers configured yet: nothing announced).
ctl status -o json | python3 -c 'import json, sys; b = json.load(sys.stdin)["bgp"]; print("bgp:", b); sys.exit(0 if b.get("bird_applied") else 1)' \
    || fail "BIRD (keel-bird.service) has not loaded keel-control's configuration"

echo "== BGP: the client's BIRD peers with the appliance through p0 and learns the VIP"
command -v bird >/dev/null || apt-get install -y -qq --no-install-recommends bird2 >/dev/null
cat > "$work/bird.conf" <<EOF
router id 10.1.0.2;
protocol device { }
protocol bgp keel { local as 65000; neighbor 10.1.0.1 as 65001; hold time 3; keepalive time 1; connect retry time 2; error wait time 1, 5; ipv4 { import all; export none; }; }
EOF
inns "$client" bird -c "$work/bird.conf" -s "$work/bird.ctl" -P "$work/bird.pid"
printf 'local_as: 65001\nhold_time: 3\npeers: [{address: 10.1.0.2, remote_as: 65000}]\n' > "$work/bgp.yaml"
ctl bgp set -f "$work/bgp.yaml" >/dev/null || fail "keelctl bgp set"
learned() { inns "$client" birdc -s "$work/bird.ctl" show route 203.0.113.10/32 2>/dev/null | grep -q "203.0.113.10/32"; }
t_bgp=$(date +%s.%N)
for _ in $(seq 1 120); do learned && break; sleep 0.5; done
learned || { ctl bgp show || true; inns "$client" birdc -s "$work/bird.ctl" show protocols all keel || true; fail "the client's BIRD did not learn the VIP"; }
echo "BGP: the client learned 203.0.113.10/32 from the appliance after $(awk -v a="$t_bgp" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
ctl bgp show

echo "== kill -9 of keel-dataplane: systemd restarts it; the VIP is withdrawn meanwhile"
for _ in $(seq 1 60); do vmsh true && break; sleep 2; done
vmsh true || fail "no SSH into the VM (credential ssh.authorized_keys.root)"
old="$(vmsh systemctl show -p MainPID --value keel-dataplane.service)"
[ "${old:-0}" -gt 0 ] || fail "keel-dataplane.service has no main pid"
t_kill=$(date +%s.%N)
vmsh kill -9 "$old" || fail "kill -9 $old in the VM"
withdrawn=""
for _ in $(seq 1 240); do learned || { withdrawn="$(since "$t_kill")"; break; }; sleep 0.25; done
[ -n "$withdrawn" ] || fail "the client kept the VIP's route while the data plane was down"
new=""; forwarding=""
for _ in $(seq 1 240); do
    if [ -z "$new" ]; then
        p="$(vmsh systemctl show -p MainPID --value keel-dataplane.service || true)"
        [ "${p:-0}" -gt 0 ] && [ "$p" != "$old" ] && new="$p" && restarted="$(since "$t_kill")"
    fi
    if [ -n "$new" ] && inns "$client" ping -c 1 -W 1 198.51.100.1 >/dev/null 2>&1; then forwarding="$(since "$t_kill")"; break; fi
    sleep 0.25
done
[ -n "$new" ] || fail "systemd did not restart keel-dataplane"
[ -n "$forwarding" ] || fail "no forwarding after the restart"
for _ in $(seq 1 240); do learned && break; sleep 0.25; done
learned || fail "the VIP was not announced again after the restart"
echo "kill -9 keel-dataplane (pid $old): VIP withdrawn at the client after $withdrawn s, restarted by systemd (pid $new, restarts $(vmsh systemctl show -p NRestarts --value keel-dataplane.service)) after $restarted s, forwarding after $forwarding s, VIP learned again after $(since "$t_kill") s (TCG)"
ctl drain --wait 15 >/dev/null || fail "keelctl drain"
for _ in $(seq 1 40); do learned || break; sleep 0.5; done
learned && fail "drained, but the client still has the VIP's route"
echo "BGP: drained, the client's route to the VIP is withdrawn"
cat "$work/stats.txt"
echo "boot-test: PASS (boot ${boot_s} s)"
