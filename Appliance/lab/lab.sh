#!/usr/bin/env bash
# Keel's built-in lab: network namespaces, veth pairs, and keel-dataplane
# routing real kernel traffic between them on DPDK af_packet ports.
#
#   client (10.1.0.2, 2001:db8:1::2) ── p0 [router: keel-dataplane + keel-control] p1 ── server1 (10.2.0.2, 2001:db8:2::2)
#                                                                  p2 ── server2 (10.3.0.2, 2001:db8:3::2)
#                                                                  p3 ── switch ── be1 be2 be3 be4 (10.4.0.11-14)
#   198.51.100.0/24 and 2001:db8:100::/48: ECMP over server1 and server2 (both hold .1 on lo)
#   VIP 203.0.113.10: TCP 80 over IPIP and UDP 53 over GUE (port 6080) to be1-be3
#   (be4 is a spare for adding); the backends hold the VIP on lo and answer
#   the client directly; the router's kernel sits behind one TAP per port
#
# Usage (as root):
#   lab.sh demo      install, build, start, show ping/traceroute/curl/iperf3 and the counters, clean up
#   lab.sh up        create the lab and start keel-dataplane in the background (LAB=name to run several),
#                    restarted when it ends, like systemd does on the appliance
#   lab.sh down      stop it and remove everything it created
#   lab.sh stats     the data plane's counters
#   lab.sh publish FILE   make FILE (routes, VIPs: the keelctl apply schema) the running lab's configuration
#   lab.sh keelctl ARGS...   keelctl against the lab's keel-control (it runs in the router namespace)
#   lab.sh control-start  (re)start keel-control (after a kill, for example)
#   lab.sh exec NS CMD...   run a command in a lab namespace (client, router, server1, server2, switch, be1-be4)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
LAB="${LAB:-keel}"          # prefix of every name the lab creates (at most 6 characters)
BIN="${KEEL_BIN:-$repo/.build/release}"
RUN="/run/keel-lab-$LAB"
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"

ns() { echo "$LAB-$1"; }
NAMESPACES="client router server1 server2 switch be1 be2 be3 be4"
inns() { local n="$1"; shift; ip netns exec "$(ns "$n")" "$@"; }

need_root() { [ "$(id -u)" -eq 0 ] || { echo "lab.sh: run as root" >&2; exit 1; }; }

install_packages() {
    export DEBIAN_FRONTEND=noninteractive
    local want="libdpdk-dev dpdk librte-meta-net libnuma-dev libsqlite3-dev libpcap-dev iproute2 ethtool iputils-ping traceroute curl iperf3 python3 procps"
    local missing=""
    for p in $want; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
    if [ -n "$missing" ]; then
        echo "== installing$missing"
        apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
    fi
}

build() {
    command -v swift >/dev/null || { echo "lab.sh: no Swift toolchain on PATH (Swift 6.3, e.g. /opt/swift/usr/bin)" >&2; exit 1; }
    echo "== building (release)"
    (cd "$repo" && swift build -c release --product keel-dataplane >/dev/null && swift build -c release --product keel-control >/dev/null && swift build -c release --product keelctl >/dev/null)
}

veth() { # veth NAME_IN_ROUTER PEER_NS PEER_NAME
    ip link add "$1" type veth peer name "$3"
    ip link set "$1" netns "$(ns router)"
    ip link set "$3" netns "$(ns "$2")"
}

offloads_off() { # ns if
    inns "$1" ethtool -K "$2" rx off tx off tso off gso off gro off >/dev/null 2>&1 || true
}

up() {
    need_root
    [ -x "$BIN/keel-dataplane" ] || { echo "lab.sh: $BIN/keel-dataplane missing (build first: lab.sh demo builds)" >&2; exit 1; }
    down >/dev/null 2>&1 || true
    mkdir -p "$RUN"
    for n in $NAMESPACES; do ip netns add "$(ns $n)"; inns $n ip link set lo up; done
    veth "${LAB}r0" client "${LAB}c0"
    veth "${LAB}r1" server1 "${LAB}s1"
    veth "${LAB}r2" server2 "${LAB}s2"
    veth "${LAB}r3" switch "${LAB}w3"
    # Router side: DPDK owns these ends. The kernel still sees their frames
    # (af_packet copies, it does not steal), and would answer for the TAPs'
    # addresses on them too, so: no ARP, no IPv6, and every IPv4 packet
    # arriving on them blackholed before the local table (a NIC bound to DPDK
    # has none of this). Fixed MACs = the ports' MACs.
    inns router ip rule add pref 100 lookup local
    inns router ip rule del pref 0
    for i in 0 1 2 3; do
        inns router sysctl -qw "net.ipv6.conf.${LAB}r$i.disable_ipv6=1"
        inns router ip link set "${LAB}r$i" address "02:4b:00:00:00:0$((i + 1))" arp off up
        inns router ip rule add pref 10 iif "${LAB}r$i" blackhole
        offloads_off router "${LAB}r$i"
    done
    inns client ip link set "${LAB}c0" up
    inns client ip addr add 10.1.0.2/24 dev "${LAB}c0"
    inns client ip addr add 2001:db8:1::2/64 dev "${LAB}c0" nodad
    inns client ip route add default via 10.1.0.1
    inns client ip -6 route add default via 2001:db8:1::1
    offloads_off client "${LAB}c0"
    for s in 1 2; do
        local n="server$s" d="${LAB}s$s" net=$((s + 1))
        inns $n ip link set "$d" up
        inns $n ip addr add "10.$net.0.2/24" dev "$d"
        inns $n ip addr add "2001:db8:$net::2/64" dev "$d" nodad
        inns $n ip addr add 198.51.100.1/32 dev lo
        inns $n ip addr add 2001:db8:100::1/128 dev lo
        inns $n ip route add default via "10.$net.0.1"
        inns $n ip -6 route add default via "2001:db8:$net::1"
        offloads_off $n "$d"
    done
    backends

    cat > "$RUN/routing.yaml" <<YAML
ports:
  - {name: p0, mac: "02:4b:00:00:00:01", addresses: [10.1.0.1/24, "2001:db8:1::1/64"]}
  - {name: p1, mac: "02:4b:00:00:00:02", addresses: [10.2.0.1/24, "2001:db8:2::1/64"]}
  - {name: p2, mac: "02:4b:00:00:00:03", addresses: [10.3.0.1/24, "2001:db8:3::1/64"]}
  - {name: p3, mac: "02:4b:00:00:00:04", addresses: [10.4.0.1/24]}
routes:
  - {prefix: 198.51.100.0/24, next_hops: [{gateway: 10.2.0.2}, {gateway: 10.3.0.2}]}
  - {prefix: "2001:db8:100::/48", next_hops: [{gateway: "2001:db8:2::2"}, {gateway: "2001:db8:3::2"}]}
vips:
  - id: 1
    address: 203.0.113.10
    protocol: tcp
    port: 80
    table_size: 4099
    backends: [{id: 1, address: 10.4.0.11}, {id: 2, address: 10.4.0.12}, {id: 3, address: 10.4.0.13}]
  - id: 2
    address: 203.0.113.10
    protocol: udp
    port: 53
    encap: {type: gue, port: 6080}
    table_size: 4099
    backends: [{id: 11, address: 10.4.0.11}, {id: 12, address: 10.4.0.12}, {id: 13, address: 10.4.0.13}]
YAML
    # The control plane: store and token in $RUN/control, API on the router's 127.0.0.1:8440;
    # the routing configuration above is its first revision.
    cat > "$RUN/control.yaml" <<YAML
listen: 127.0.0.1:8440
data_dir: $RUN/control
tables: $RUN/tables
stats: $RUN/stats
small_tables: true
readers: 8
YAML
    control_start
    lab_keelctl apply -f "$RUN/routing.yaml" --comment "lab.sh up" >/dev/null

    local io="${LAB_LCORES:-0,1}"
    cat > "$RUN/dataplane.yaml" <<YAML
tables: $RUN/tables
stats: $RUN/stats
lcores: {main: ${io%%,*}, io: [${io#*,}]}
ports:
  - {name: p0, device: "net_af_packet0,iface=${LAB}r0", tap: ${LAB}-p0}
  - {name: p1, device: "net_af_packet1,iface=${LAB}r1", tap: ${LAB}-p1}
  - {name: p2, device: "net_af_packet2,iface=${LAB}r2", tap: ${LAB}-p2}
  - {name: p3, device: "net_af_packet3,iface=${LAB}r3", tap: ${LAB}-p3}
mempool: {mbufs: 8191}
conntrack: {flows: 65536}
YAML
    # The data plane runs under a supervisor (supervise below), in its own
    # session, stdin from /dev/null, and none of the caller's other
    # descriptors: a caller that waits for EOF on a pipe (command substitution,
    # Foundation's Process) must not wait for the data plane too.
    : > "$RUN/dataplane.log"
    (
        for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
        exec setsid bash "$here/lab.sh" supervise </dev/null >>"$RUN/dataplane.log" 2>&1
    ) &
    echo $! > "$RUN/supervisor.pid"
    # Ready when it says so and the TAPs carry the router's addresses.
    for _ in $(seq 1 100); do
        if grep -q "running:" "$RUN/dataplane.log" && inns router ip -4 addr show dev "${LAB}-p0" 2>/dev/null | grep -q 10.1.0.1; then
            echo "lab $LAB is up (data plane pid $(cat "$RUN/dataplane.pid"), log $RUN/dataplane.log)"
            return 0
        fi
        kill -0 "$(cat "$RUN/supervisor.pid")" 2>/dev/null || break
        sleep 0.1
    done
    echo "lab.sh: keel-dataplane did not come up:" >&2
    cat "$RUN/dataplane.log" >&2
    exit 1
}

# The load-balancing side: a switch (a bridge in its own namespace) on p3 and
# four backends that decapsulate IPIP/GUE (the kernel's own tunnels when it
# has them, else decap.py through a TUN device) with the VIP on lo.
backends() {
    inns switch ip link add br0 type bridge
    inns switch ip link set br0 up
    inns switch ip link set "${LAB}w3" master br0 up
    offloads_off switch "${LAB}w3"
    for b in 1 2 3 4; do
        local n="be$b" d="${LAB}e$b"
        ip link add "${LAB}x$b" type veth peer name "$d"
        ip link set "${LAB}x$b" netns "$(ns switch)"
        ip link set "$d" netns "$(ns $n)"
        inns switch ip link set "${LAB}x$b" master br0 up
        offloads_off switch "${LAB}x$b"
        inns $n ip link set "$d" up
        inns $n ip addr add "10.4.0.1$b/24" dev "$d"
        inns $n ip addr add 203.0.113.10/32 dev lo
        inns $n ip route add default via 10.4.0.1
        inns $n sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 "net.ipv4.conf.$d.rp_filter=0"
        offloads_off $n "$d"
        if inns $n ip link set tunl0 up 2>/dev/null && inns $n ip fou add port 6080 gue 2>/dev/null; then
            inns $n sysctl -qw net.ipv4.conf.tunl0.rp_filter=0
        else
            (
                for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
                exec setsid ip netns exec "$(ns $n)" python3 "$here/decap.py" decap0 6080 </dev/null >"$RUN/decap-$n.log" 2>&1
            ) &
        fi
    done
    for b in 1 2 3 4; do
        for _ in $(seq 1 50); do
            { inns be$b ip link show tunl0 2>/dev/null | grep -q UP || grep -q ready "$RUN/decap-be$b.log" 2>/dev/null; } && break
            sleep 0.1
        done
    done
}

publish() {
    need_root
    lab_keelctl apply -f "$1" --comment "lab.sh publish $1"
}

lab_keelctl() {
    inns router env KEEL_API=http://127.0.0.1:8440 KEEL_TOKEN_FILE="$RUN/control/tokens" "$BIN/keelctl" "$@"
}

# Starts keel-control in the router namespace (its health checks then use the
# router's kernel, behind the TAPs) and waits until it serves.
control_start() {
    [ -f "$RUN/control.pid" ] && kill -0 "$(cat "$RUN/control.pid")" 2>/dev/null && kill -9 "$(cat "$RUN/control.pid")" 2>/dev/null
    (
        for fd in $(ls /proc/$BASHPID/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done
        exec setsid ip netns exec "$(ns router)" "$BIN/keel-control" serve --config "$RUN/control.yaml" </dev/null >>"$RUN/control.log" 2>&1
    ) &
    echo $! > "$RUN/control.pid"
    for _ in $(seq 1 200); do
        lab_keelctl history --limit 1 >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$RUN/control.pid")" 2>/dev/null || break
        sleep 0.05
    done
    echo "lab.sh: keel-control did not come up:" >&2
    cat "$RUN/control.log" >&2
    exit 1
}

# keel-dataplane restarted whenever it ends, as systemd does on the appliance
# (keel-dataplane.service: Restart=always, RestartSec=500ms, but not after
# exit status 2, a bad configuration). A restart re-attaches to the tables
# file as it is. dataplane.pid holds the running data plane's pid; each start
# is a line in restarts. SIGTERM stops the data plane, then the loop.
supervise() {
    local child="" rc
    trap '[ -n "$child" ] && kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
    while :; do
        ip netns exec "$(ns router)" "$BIN/keel-dataplane" --config "$RUN/dataplane.yaml" -- \
            --no-pci --no-huge -m 512 --no-shconf --file-prefix "$LAB" --log-level lib.eal:error </dev/null &
        child=$!
        echo "$child" > "$RUN/dataplane.pid"
        echo "$(date +%s.%N) start $child" >> "$RUN/restarts"
        rc=0; wait "$child" || rc=$?
        echo "lab.sh supervise: keel-dataplane (pid $child) ended with status $rc"
        [ "$rc" -eq 2 ] && exit 2
        sleep 0.5
    done
}

down() {
    [ -f "$RUN/control.pid" ] && kill -TERM "$(cat "$RUN/control.pid")" 2>/dev/null || true
    if [ -f "$RUN/supervisor.pid" ]; then
        local sup; sup=$(cat "$RUN/supervisor.pid")
        kill -TERM "$sup" 2>/dev/null || true
        for _ in $(seq 1 60); do kill -0 "$sup" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$sup" 2>/dev/null || true
    fi
    if [ -f "$RUN/dataplane.pid" ]; then
        local pid; pid=$(cat "$RUN/dataplane.pid")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    # Kill anything else still running inside the lab (servers, listeners).
    for n in $NAMESPACES; do
        ip netns pids "$(ns $n)" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$(ns $n)" 2>/dev/null || true
    done
    rm -rf "$RUN"
}

stats() { "$BIN/keel-dataplane" stats --stats "$RUN/stats" "$@"; }

demo() {
    need_root
    install_packages
    build
    trap 'echo; echo "== cleaning up"; down' EXIT INT TERM
    up
    local c="ip netns exec $(ns client)"
    echo; echo "== ping through the router (IPv4, IPv6) and to its own addresses"
    $c ping -c 3 -i 0.2 10.2.0.2
    $c ping -6 -c 3 -i 0.2 2001:db8:3::2
    $c ping -c 2 -i 0.2 10.1.0.1
    echo; echo "== traceroute: the router is the first hop"
    $c traceroute -n -q 1 -w 1 10.2.0.2
    echo; echo "== HTTP through the router (a 20 MB file from server1)"
    inns server1 sh -c "head -c 20000000 /dev/urandom > /tmp/keel-lab-$LAB.bin"
    inns server1 python3 -c "
import http.server, socketserver, os
os.chdir('/tmp')
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(('0.0.0.0', 8080), http.server.SimpleHTTPRequestHandler).serve_forever()" >/dev/null 2>&1 &
    sleep 1
    $c curl -s -o /dev/null -w "downloaded %{size_download} bytes at %{speed_download} bytes/s\n" "http://10.2.0.2:8080/keel-lab-$LAB.bin"
    echo; echo "== iperf3 for 3 seconds"
    inns server2 iperf3 -s -1 -D
    sleep 0.5
    $c iperf3 -c 10.3.0.2 -t 3 | tail -4
    echo; echo "== ECMP: 20 flows to 198.51.100.1 (anycast on both servers)"
    for s in 1 2; do inns server$s python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('198.51.100.1', 7000)); s.listen(64)
while True:
    c, _ = s.accept(); c.sendall(b'server$s\n'); c.close()" >/dev/null 2>&1 & done
    sleep 0.5
    for i in $(seq 1 20); do $c python3 -c "
import socket; s = socket.create_connection(('198.51.100.1', 7000), timeout=3); print(s.recv(64).decode().strip())"; done | sort | uniq -c
    echo; echo "== the router's kernel, through the TAP: a listener on 10.1.0.1:2222"
    inns router python3 -c "
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('10.1.0.1', 2222)); s.listen(4)
c, _ = s.accept(); c.sendall(b'hello from the router kernel\n'); c.close()" >/dev/null 2>&1 &
    sleep 0.5
    $c python3 -c "import socket; print(socket.create_connection(('10.1.0.1', 2222), timeout=3).recv(64).decode().strip())"
    echo; echo "== load balancing: 60 HTTP connections to VIP 203.0.113.10 (IPIP to be1-be3, direct server return)"
    for b in 1 2 3; do inns be$b python3 -c "
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'be$b\n')
http.server.ThreadingHTTPServer(('0.0.0.0', 80), H).serve_forever()" >/dev/null 2>&1 & done
    sleep 1
    for i in $(seq 1 60); do $c curl -s --max-time 3 http://203.0.113.10/; done | sort | uniq -c
    echo; echo "== the control plane through keelctl: status, a health check on VIP 1, drain be1, history"
    lab_keelctl status || true
    lab_keelctl vip add --id 1 --address 203.0.113.10 --port 80 --table-size 4099 --check http --comment "health check"
    lab_keelctl backend drain 1 1 --comment "maintenance on be1"
    sleep 3
    lab_keelctl vip show 1
    for i in $(seq 1 30); do $c curl -s --max-time 3 http://203.0.113.10/; done | sort | uniq -c
    lab_keelctl history
    echo; echo "== counters"
    stats
}

case "${1:-}" in
    demo) demo ;;
    up) up ;;
    down) need_root; down ;;
    stats) shift; stats "$@" ;;
    publish) shift; publish "$1" ;;
    keelctl) shift; lab_keelctl "$@" ;;
    control-start) need_root; control_start ;;
    supervise) supervise ;;
    exec) shift; n="$1"; shift; inns "$n" "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
