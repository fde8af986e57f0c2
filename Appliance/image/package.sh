#!/usr/bin/env bash
# Builds keel_VERSION_amd64.deb: the three release binaries (the same ones
# the tests ran), the Swift runtime libraries they link in /usr/lib/keel/swift
# (their RUNPATH points there, so no Swift toolchain on the target), the
# systemd units, keel-nics, the default /etc/keel/keel.yaml and initial.yaml
# (conffiles: an upgrade keeps the operator's), and the docs. Installing it
# on a Debian 12 machine, or upgrading an appliance with it, is
# `apt-get install ./keel_*.deb`.
#
#   bash Appliance/image/package.sh [OUTDIR]      (default .build/image)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$(mkdir -p "${1:-$repo/.build/image}" && cd "${1:-$repo/.build/image}" && pwd)"
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
command -v patchelf >/dev/null || { apt-get install -y -qq --no-install-recommends patchelf >/dev/null; }

# The tests' release build (Tests/run.sh made it just before); the three
# products are built here only if missing. Shipping these, rather than a
# second build with the runtime linked statically, ships exactly what was
# tested and saves CI a whole release build.
bin="$repo/.build/release"
for p in keel-dataplane keel-control keelctl; do
    [ -x "$bin/$p" ] || (cd "$repo" && swift build -c release --product "$p" 2>&1 | grep -E "error:|complete" || true)
    [ -x "$bin/$p" ] || { echo "package.sh: the release build made no $p" >&2; exit 1; }
done
toolchain="$(dirname "$(dirname "$(command -v swift)")")/lib/swift/linux"
version="$(cd "$repo" && echo "0.$(git rev-list --count HEAD 2>/dev/null || echo 0)")"
pkg="$out/pkg"
rm -rf "$pkg"
install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/usr/lib/keel" "$pkg/lib/systemd/system/dev-hugepages.mount.d" \
    "$pkg/etc/keel" "$pkg/usr/share/doc/keel"
install -m 0755 -s "$bin/keel-dataplane" "$bin/keel-control" "$bin/keelctl" "$pkg/usr/bin/"
# The Swift runtime: every library of the toolchain the binaries load, and
# their RUNPATH set to where they now live.
install -d "$pkg/usr/lib/keel/swift"
libs="$(ldd "$bin/keel-dataplane" "$bin/keel-control" "$bin/keelctl" | awk -v t="$toolchain/" 'index($3, t) == 1 {print $3}' | sort -u)"
[ -n "$libs" ] || { echo "package.sh: found no Swift runtime libraries under $toolchain in the binaries' ldd" >&2; exit 1; }
for l in $libs; do install -m 0644 -s "$l" "$pkg/usr/lib/keel/swift/"; done
for b in keel-dataplane keel-control keelctl; do patchelf --set-rpath /usr/lib/keel/swift "$pkg/usr/bin/$b"; done
for l in "$pkg"/usr/lib/keel/swift/*.so; do patchelf --set-rpath /usr/lib/keel/swift "$l"; done
# Every library resolves, the Swift ones inside the package (the toolchain hidden).
for b in keel-dataplane keel-control keelctl; do
    resolved="$(LD_LIBRARY_PATH="$pkg/usr/lib/keel/swift" ldd "$pkg/usr/bin/$b")"
    if echo "$resolved" | grep -q "not found" || echo "$resolved" | grep -q "$toolchain"; then
        echo "package.sh: $b does not resolve its libraries from the package:" >&2
        echo "$resolved" >&2
        exit 1
    fi
done
install -m 0755 "$repo/Appliance/systemd/keel-nics" "$pkg/usr/lib/keel/"
install -m 0644 "$repo"/Appliance/systemd/*.service "$pkg/lib/systemd/system/"
install -m 0644 "$repo/Appliance/systemd/dev-hugepages.mount.d/keel.conf" "$pkg/lib/systemd/system/dev-hugepages.mount.d/"
install -m 0644 "$repo/Config/keel.yaml" "$repo/Config/initial.yaml" "$pkg/etc/keel/"
install -m 0644 "$repo"/docs/*.md "$repo/docs/openapi.yaml" "$pkg/usr/share/doc/keel/"
printf '/etc/keel/keel.yaml\n/etc/keel/initial.yaml\n' > "$pkg/DEBIAN/conffiles"
# DPDK's libraries the binary links, the PMDs for common NICs (virtio, vmxnet3,
# Intel, TAP for the exception path) and the ring mempool driver DPDK loads as plugins.
depends="libc6, libnuma1, libsqlite3-0, libcurl4, bird2, dpdk, pciutils, kmod, iproute2, librte-eal23, librte-ethdev23, librte-mbuf23,
 librte-mempool23, librte-ring23, librte-lpm23, librte-fib23, librte-rib23, librte-hash23, librte-net23, librte-kvargs23,
 librte-telemetry23, librte-mempool-ring23, librte-net-virtio23, librte-net-tap23, librte-net-vmxnet3-23, librte-net-e1000-23,
 librte-net-ixgbe23, librte-net-i40e23, librte-net-ice23, librte-net-af-packet23"
cat > "$pkg/DEBIAN/control" <<EOF
Package: keel
Version: $version
Architecture: amd64
Maintainer: Keel <keel@localhost>
Depends: $depends
Section: net
Priority: optional
Description: Keel software router and L4 load balancer (DPDK)
 keel-dataplane (DPDK), keel-control (store, admin API, health checks) and
 keelctl, with systemd units for an appliance.
EOF
cat > "$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    mkdir -p /var/lib/keel && chmod 0700 /var/lib/keel
    systemctl daemon-reload >/dev/null 2>&1 || true
    systemctl enable keel-nics.service keel-firstboot.service keel-control.service keel-dataplane.service keel-bird.service >/dev/null 2>&1 || true
    # Keel runs BIRD itself (keel-bird.service, on keel-control's configuration):
    # Debian's own bird.service would hold the BGP port.
    systemctl disable bird.service >/dev/null 2>&1 || true
    [ -d /run/systemd/system ] && systemctl stop bird.service >/dev/null 2>&1 || true
    # An upgrade of a running appliance: the new binaries take over; the store
    # migrates forward when keel-control starts, the data plane re-attaches to
    # the current snapshot.
    if [ -n "$2" ] && [ -d /run/systemd/system ]; then
        systemctl try-restart keel-control.service keel-dataplane.service keel-bird.service || true
    fi
fi
EOF
cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop keel-bird.service keel-dataplane.service keel-control.service keel-nics.service || true
fi
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm"
rm -f "$out"/keel_*_amd64.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out/keel_${version}_amd64.deb" >/dev/null
rm -rf "$pkg"
echo "package: $out/keel_${version}_amd64.deb"
