#!/usr/bin/env bash
# Scale-out lab: two Keel appliances behind an upstream router that learns the
# VIP from both over BGP (BIRD on every side) and spreads flows over them by
# ECMP; three backends behind both. Checks what docs/scale-out.md promises:
#
#   sudo bash Appliance/lab/fleet.sh test      build nothing; run the checks, clean up, exit 0 if all hold
#
#   client 10.8.0.2 ── upstream 10.8.0.1 | 10.0.0.254 (BIRD, AS 65000, ECMP multipath)
#                                  ├── p0 10.0.0.1 [appliance A: keel-dataplane, keel-control, BIRD (AS 65001)] p1 10.9.0.1 ─┐
#                                  └── p0 10.0.0.2 [appliance B: the same]                                     p1 10.9.0.2 ─┴─ switch ── be1 be2 be3 (10.9.0.11-13)
#   VIP 203.0.113.10 TCP 80 (IPIP) on both appliances, the same configuration but the ports' addresses
#
# 1. the upstream installs an ECMP route to the VIP through both appliances;
# 2. 200 client flows (fixed source ports) reach backends through both;
# 3. A's data plane stops: its announcement is withdrawn, and the same 200
#    flows, now all through B, land on the same backend each as before;
# 4. A comes back; then `keelctl drain` on A: withdrawn again, and A reports
#    its connection tables empty once its flows have timed out.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
BIN="${KEEL_BIN:-$repo/.build/release}"
F="kf$(( $$ % 10000 ))"
RUN="/run/keel-fleet-$F"
FLOWS="${FLEET_FLOWS:-200}"
[ "$(id -u)" -eq 0 ] || { echo "fleet.sh: run as root" >&2; exit 1; }
for b in keel-dataplane keel-control keelctl; do [ -x "$BIN/$b" ] || { echo "fleet.sh: $BIN/$b missing (swift build -c release)" >&2; exit 1; }; done
command -v bird >/dev/null || { apt-get install -y -qq --no-install-recommends bird2 >/dev/null; }

ns() { echo "$F-$1"; }
inns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }
NAMESPACES="cl up a b sw be1 be2 be3"
fail() { echo "fleet: FAIL: $*" >&2; exit 1; }

cleanup() {
    local rc=$?
    set +e
    for f in "$RUN"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null; done
    sleep 0.5
    for n in $NAMESPACES; do
        ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$(ns $n)" 2>/dev/null
    done
    if [ "$rc" -ne 0 ]; then
        for f in "$RUN"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
    fi
    rm -rf "$RUN" /dev/shm/keel-fleet-$F-*
    exit "$rc"
}

veth() { # veth NS1 IF1 NS2 IF2
    ip link add "$2" type veth peer name "$4"
    ip link set "$2" netns "$(ns "$1")"
    ip link set "$4" netns "$(ns "$3")"
    for x in "$1 $2" "$3 $4"; do set -- $x; inns "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true; done
}

# A DPDK-owned router-side veth end: no IP, no ARP, no IPv6, IPv4 on it blackholed in the kernel (see lab.sh).
router_port() { # ns if mac
    inns "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
    inns "$1" ip link set "$2" address "$3" arp off up
    inns "$1" ip rule add pref 10 iif "$2" blackhole
}

appliance() { # name p0-address p1-address mac-suffix
    local n="$1" a0="$2" a1="$3" m="$4" dir="$RUN/$1"
    mkdir -p "$dir"
    inns "$n" ip rule add pref 100 lookup local
    inns "$n" ip rule del pref 0
    router_port "$n" "${F}${n}0" "02:4b:0f:00:0$m:01"
    router_port "$n" "${F}${n}1" "02:4b:0f:00:0$m:02"
    cat > "$dir/routing.yaml" <<YAML
ports:
  - {name: p0, mac: "02:4b:0f:00:0$m:01", addresses: [$a0/24]}
  - {name: p1, mac: "02:4b:0f:00:0$m:02", addresses: [$a1/24]}
routes:
  - {prefix: 10.8.0.0/24, next_hops: [{gateway: 10.0.0.254}]}
vips:
  - id: 1
    address: 203.0.113.10
    protocol: tcp
    port: 80
    table_size: 4099
    backends: [{id: 1, address: 10.9.0.11}, {id: 2, address: 10.9.0.12}, {id: 3, address: 10.9.0.13}]
bgp:
  local_as: 65001
  hold_time: 3
  peers: [{address: 10.0.0.254, remote_as: 65000}]
YAML
    cat > "$dir/control.yaml" <<YAML
listen: 127.0.0.1:8440
data_dir: $dir/control
tables: /dev/shm/keel-fleet-$F-$n.tables
stats: /dev/shm/keel-fleet-$F-$n.stats
small_tables: true
readers: 8
initial: $dir/routing.yaml
bird: {config: $dir/bird.conf, socket: $dir/bird.ctl}
YAML
    cat > "$dir/dataplane.yaml" <<YAML
tables: /dev/shm/keel-fleet-$F-$n.tables
stats: /dev/shm/keel-fleet-$F-$n.stats
lcores: {main: 0, io: [1]}
ports:
  - {name: p0, device: "net_af_packet0,iface=${F}${n}0", tap: ${F}${n}-p0}
  - {name: p1, device: "net_af_packet1,iface=${F}${n}1", tap: ${F}${n}-p1}
mempool: {mbufs: 4095}
conntrack: {flows: 4096, tcp_timeout: 8, tcp_closing_timeout: 4}
YAML
    start_control "$n"
    for _ in $(seq 1 100); do [ -f "$dir/bird.conf" ] && break; sleep 0.1; done
    [ -f "$dir/bird.conf" ] || fail "$n: keel-control wrote no bird.conf"
    start_dataplane "$n"
    inns "$n" bird -c "$dir/bird.conf" -s "$dir/bird.ctl" -P "$RUN/$n-bird.pid"
}

detached() { # pidfile log cmd... (own session, no inherited descriptors: see lab.sh)
    local pidfile="$1" log="$2"; shift 2
    (
        for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
        exec setsid "$@" </dev/null >>"$log" 2>&1
    ) &
    echo $! > "$pidfile"
}

start_control() {
    detached "$RUN/$1-control.pid" "$RUN/$1-control.log" ip netns exec "$(ns "$1")" "$BIN/keel-control" serve --config "$RUN/$1/control.yaml"
    for _ in $(seq 1 100); do grep -q "listening on" "$RUN/$1-control.log" 2>/dev/null && return 0; sleep 0.1; done
    fail "$1: keel-control did not start"
}

start_dataplane() {
    detached "$RUN/$1-dataplane.pid" "$RUN/$1-dataplane.log" ip netns exec "$(ns "$1")" "$BIN/keel-dataplane" --config "$RUN/$1/dataplane.yaml" -- \
        --no-pci --no-huge -m 256 --no-shconf --file-prefix "$F$1" --log-level lib.eal:error
    for _ in $(seq 1 100); do
        grep -q "running:" "$RUN/$1-dataplane.log" 2>/dev/null && inns "$1" ip -4 addr show dev "${F}$1-p0" 2>/dev/null | grep -q 10.0.0 && return 0
        sleep 0.1
    done
    fail "$1: keel-dataplane did not come up"
}

ctl() { local n="$1"; shift; inns "$n" "$BIN/keelctl" "$@" --config "$RUN/$n/control.yaml"; }

# The upstream's route to the VIP: how many next hops.
vip_hops() { inns up ip -4 route show 203.0.113.10 2>/dev/null | grep -c "nexthop via\|^203.0.113.10 via" || true; }

wait_hops() { # n seconds
    for _ in $(seq 1 $(( $2 * 4 ))); do [ "$(vip_hops)" = "$1" ] && return 0; sleep 0.25; done
    inns up ip route show 203.0.113.10 >&2; inns up birdc -s "$RUN/up-bird.ctl" show protocols >&2
    fail "the upstream's route to the VIP has $(vip_hops) next hops, not $1, after $2 s"
}

# One connection per source port; prints "port backend" lines.
flows() { # file first-port
    : > "$1"
    for p in $(seq "$2" $(($2 + FLOWS - 1))); do
        local b; b="$(inns cl curl -s --max-time 3 --local-port "$p" http://203.0.113.10/ || true)"
        echo "$p ${b:-none}" >> "$1"
    done
}

# Long-lived flows: FLOWS connections (fixed source ports) that each ask once,
# stay open, and ask again on the same connection when $RUN/go appears. A
# second answer on the same connection can only come from the same backend
# (any other has no such connection and would reset it).
cat_client() {
    cat <<'PY'
import os, socket, sys, time
n, first, out1, go, out2 = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
def ask(s):
    s.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(4096)
        if not c: raise EOFError("closed")
        buf += c
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0])
    while len(rest) < length:
        c = s.recv(4096)
        if not c: raise EOFError("closed")
        rest += c
    return rest[:length].decode()
socks = {}
with open(out1 + ".tmp", "w") as f:
    for p in range(first, first + n):
        try:
            s = socket.create_connection(("203.0.113.10", 80), timeout=5, source_address=("10.8.0.2", p))
            f.write(f"{p} {ask(s)}\n")
            socks[p] = s
        except Exception as e:
            f.write(f"{p} none\n")
os.rename(out1 + ".tmp", out1)
while not os.path.exists(go): time.sleep(0.1)
with open(out2 + ".tmp", "w") as f:
    for p in range(first, first + n):
        try: f.write(f"{p} {ask(socks[p])}\n")
        except Exception as e: f.write(f"{p} none\n")
os.rename(out2 + ".tmp", out2)
PY
}

wait_file() { for _ in $(seq 1 $(( $2 * 10 ))); do [ -f "$1" ] && return 0; sleep 0.1; done; fail "no $1 after $2 s"; }

vip_packets() { inns "$1" "$BIN/keel-dataplane" stats --stats "/dev/shm/keel-fleet-$F-$1.stats" --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(v.get("packets",0) for v in d.get("vips",[])))'; }

test_fleet() {
    trap cleanup EXIT INT TERM
    mkdir -p "$RUN"
    for n in $NAMESPACES; do ip netns add "$(ns $n)"; inns $n ip link set lo up; done
    # client — upstream
    veth cl "${F}c" up "${F}u"
    inns cl ip link set "${F}c" up; inns cl ip addr add 10.8.0.2/24 dev "${F}c"; inns cl ip route add default via 10.8.0.1
    inns cl sysctl -qw net.ipv4.tcp_tw_reuse=1
    inns up ip link set "${F}u" up; inns up ip addr add 10.8.0.1/24 dev "${F}u"
    inns up sysctl -qw net.ipv4.ip_forward=1 net.ipv4.fib_multipath_hash_policy=1
    # upstream LAN (a bridge in the upstream) — both appliances' p0
    inns up ip link add br0 type bridge; inns up ip link set br0 up; inns up ip addr add 10.0.0.254/24 dev br0
    for n in a b; do
        veth up "${F}${n}u" "$n" "${F}${n}0"
        inns up ip link set "${F}${n}u" master br0 up
    done
    # backend LAN (a switch) — both appliances' p1 and the backends
    inns sw ip link add br1 type bridge; inns sw ip link set br1 up
    for n in a b; do veth sw "${F}${n}s" "$n" "${F}${n}1"; inns sw ip link set "${F}${n}s" master br1 up; done
    for i in 1 2 3; do
        veth sw "${F}s$i" "be$i" "${F}e$i"
        inns sw ip link set "${F}s$i" master br1 up
        inns be$i ip link set "${F}e$i" up
        inns be$i ip addr add "10.9.0.1$i/24" dev "${F}e$i"
        inns be$i ip addr add 203.0.113.10/32 dev lo
        # Replies go straight back (direct server return) through B, the appliance the test keeps running.
        inns be$i ip route add default via 10.9.0.2
        inns be$i sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
        detached "$RUN/be$i-http.pid" "$RUN/be$i-http.log" ip netns exec "$(ns be$i)" python3 -c "
import http.server, socketserver
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        b = b'be$i'
        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(('0.0.0.0', 80), H).serve_forever()"
        if inns be$i ip link set tunl0 up 2>/dev/null; then
            inns be$i sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
        else
            detached "$RUN/be$i-decap.pid" "$RUN/be$i-decap.log" ip netns exec "$(ns be$i)" python3 "$here/decap.py" decap0 6080
        fi
    done
    # The upstream's BIRD: both appliances as peers, their routes merged into one ECMP route in its kernel.
    cat > "$RUN/up-bird.conf" <<EOF
router id 10.0.0.254;
protocol device { }
protocol kernel { ipv4 { export all; }; merge paths on; }
template bgp keel { local as 65000; hold time 3; keepalive time 1; connect retry time 2; error wait time 1, 5; ipv4 { import all; export none; }; }
protocol bgp a from keel { neighbor 10.0.0.1 as 65001; }
protocol bgp b from keel { neighbor 10.0.0.2 as 65001; }
EOF
    inns up bird -c "$RUN/up-bird.conf" -s "$RUN/up-bird.ctl" -P "$RUN/up-bird.pid"
    appliance a 10.0.0.1 10.9.0.1 1
    appliance b 10.0.0.2 10.9.0.2 2
    for i in 1 2 3; do for _ in $(seq 1 50); do
        { inns be$i ip link show tunl0 2>/dev/null | grep -q UP || grep -q ready "$RUN/be$i-decap.log" 2>/dev/null; } && break; sleep 0.1; done; done

    echo "== 1. the upstream learns the VIP from both appliances"
    t0=$(date +%s.%N)
    wait_hops 2 60
    echo "upstream: ECMP route to 203.0.113.10 over 2 appliances after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
    inns up ip route show 203.0.113.10
    # A's status reads BIRD's sessions once a second: give it a few.
    for _ in $(seq 1 20); do
        ctl a status -o json > "$RUN/a-status.json" || fail "A: keelctl status"
        python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["bgp"]; sys.exit(0 if s["announced"] == ["203.0.113.10"] and any(x["established"] for x in s["sessions"]) else 1)' "$RUN/a-status.json" && break
        sleep 0.25
    done
    python3 - "$RUN/a-status.json" <<'EOF' || fail "A's status: BGP not as expected"
import json, sys
s = json.load(open(sys.argv[1]))["bgp"]
assert s["announced"] == ["203.0.113.10"], s
assert any(x["established"] for x in s["sessions"]), s
print("A's status: announcing", s["announced"], "sessions", [(x["peer"], x["info"]) for x in s["sessions"]])
EOF
    fa="$(ctl a status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')"
    fb="$(ctl b status -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["fingerprint"])')"
    echo "fingerprints: A $fa, B $fb"
    [ "$fa" = "$fb" ] || fail "the two appliances' load-balancing fingerprints differ"

    echo "== 2. $FLOWS long-lived flows through both appliances"
    cat_client > "$RUN/client.py"
    detached "$RUN/client.pid" "$RUN/client.log" ip netns exec "$(ns cl)" python3 "$RUN/client.py" "$FLOWS" 40000 "$RUN/before.txt" "$RUN/go" "$RUN/after.txt"
    wait_file "$RUN/before.txt" 120
    answered=$(grep -vc " none$" "$RUN/before.txt" || true)
    pa=$(vip_packets a); pb=$(vip_packets b)
    echo "answered: $answered of $FLOWS; VIP packets through A: $pa, through B: $pb"
    echo "backends: $(awk '{print $2}' "$RUN/before.txt" | sort | uniq -c | tr '\n' ' ')"
    [ "$answered" = "$FLOWS" ] || fail "$answered of $FLOWS flows answered"
    [ "$pa" -gt 0 ] && [ "$pb" -gt 0 ] || fail "the upstream did not spread flows over both appliances (A $pa, B $pb)"

    echo "== 3. A's data plane stops"
    kill -9 "$(cat "$RUN/a-dataplane.pid")"
    t0=$(date +%s.%N)
    wait_hops 1 30
    echo "withdrawn: the upstream routes the VIP through B alone after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
    # (keelctl status exits 3 while the data plane is down: the JSON is what counts here.)
    withdrawn() { { ctl a status -o json 2>/dev/null || true; } | python3 -c 'import json,sys; s=json.load(sys.stdin)["bgp"]; sys.exit(0 if s["announced"] == [] else 1)'; }
    for _ in $(seq 1 40); do withdrawn && break; sleep 0.25; done
    withdrawn || fail "A's keel-control still announces with its data plane stopped"
    echo "A's keel-control: nothing announced (data plane heartbeat lost)"
    pb0=$(vip_packets b)
    touch "$RUN/go"
    wait_file "$RUN/after.txt" 120
    answered=$(grep -vc " none$" "$RUN/after.txt" || true)
    moved=$(join "$RUN/before.txt" "$RUN/after.txt" | awk '$2 != $3' | wc -l)
    echo "the same connections again: answered $answered of $FLOWS, all through B ($(( $(vip_packets b) - pb0 )) VIP packets); on another backend than before: $moved"
    [ "$answered" = "$FLOWS" ] || fail "$answered of $FLOWS connections answered through B"
    [ "$moved" = 0 ] || { join "$RUN/before.txt" "$RUN/after.txt" | awk '$2 != $3' | head >&2; fail "$moved flows changed backend"; }

    echo "== 4. A back, then drained"
    start_dataplane a
    wait_hops 2 30
    echo "A is back in the upstream's ECMP route"
    flows "$RUN/again.txt" 41000
    echo "new flows with A back: $(grep -vc " none$" "$RUN/again.txt") of $FLOWS answered"
    ctl a drain --wait 10 || fail "keelctl drain"
    wait_hops 1 30
    echo "drained: the upstream routes the VIP through B alone"
    t0=$(date +%s.%N)
    ctl a drain --wait 10 --wait-empty 40 | tee "$RUN/drain.txt" || fail "A's connection tables did not empty"
    grep -q "^empty" "$RUN/drain.txt" || fail "no empty report"
    echo "A reported empty connection tables after $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s"
    ctl a drain --off >/dev/null || fail "keelctl drain --off"
    wait_hops 2 30
    echo "drain ended: both appliances announce again"
    echo "fleet: PASS"
}

case "${1:-}" in
    test) test_fleet ;;
    *) echo "usage: fleet.sh test" >&2; exit 64 ;;
esac
