#!/usr/bin/env bash
# Installs everything Keel's tests need on Debian 12, builds in release, and
# runs every test. Run as root from anywhere: sudo bash Tests/run.sh
# (.ci/run calls exactly this.)
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "Tests/run.sh: run as root (it installs packages and reserves huge pages)" >&2
    exit 1
fi

# The Swift toolchain is not a Debian package; these machines carry it in /opt/swift.
[ -x /opt/swift/usr/bin/swift ] && export PATH="/opt/swift/usr/bin:$PATH"
if ! command -v swift >/dev/null; then
    echo "Tests/run.sh: no Swift toolchain on PATH (Swift 6.3 expected, e.g. in /opt/swift/usr/bin)" >&2
    exit 1
fi

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    libdpdk-dev dpdk librte-meta-net libnuma-dev libsqlite3-dev libpcap-dev pkg-config gzip \
    iproute2 ethtool iputils-ping traceroute curl iperf3 python3 python3-pip python3-venv procps util-linux prometheus \
    bird2 mmdebstrap qemu-system-x86 qemu-utils grub-pc-bin grub-common e2fsprogs fdisk xz-utils dpkg-dev patchelf openssh-client libcurl4-openssl-dev >/dev/null

echo "== schemathesis (PyPI, for the admin API tests)"
if ! /opt/keel-venv/bin/schemathesis --version 2>/dev/null | grep -q "4.32.5"; then
    python3 -m venv /opt/keel-venv
    /opt/keel-venv/bin/pip install -q "schemathesis==4.32.5"
fi

echo "== huge pages"
# 2 MiB pages for the huge-page tests and benchmark smoke tests; tests also run without.
want=1536
have=$(cat /proc/sys/vm/nr_hugepages)
if [ "$have" -lt "$want" ]; then echo "$want" > /proc/sys/vm/nr_hugepages; fi
mkdir -p /dev/hugepages
mountpoint -q /dev/hugepages || mount -t hugetlbfs nodev /dev/hugepages
grep -E "HugePages_(Total|Free)" /proc/meminfo

if [ ! -f ../shared/data/full-table-2024.txt.gz ] && [ -z "${KEEL_SHARED_DATA:-}" ]; then
    echo "Tests/run.sh: ../shared/data/full-table-2024.txt.gz not found beside the repository (or set KEEL_SHARED_DATA)" >&2
    exit 1
fi

echo "== build (release)"
swift build -c release --build-tests
# The epoch-swap helper again, under the thread sanitizer (EpochSwapProcessTests runs it).
swift build -c release --sanitize=thread --product keel-swaptest --scratch-path .build-tsan

# The appliance image (the boot test in KeelApplianceTests boots it), with
# the release binaries just built and the Swift runtime libraries they link.
echo "== appliance image"
KEEL_IMAGE_XZ=0 bash Appliance/image/build.sh .build/image

echo "== tests"
swift test -c release --skip-build

# The packet path and the tables readers under libFuzzer and the address
# sanitizer, from the corpus in Tests/Fuzz, for a bounded time each.
echo "== fuzzing"
bash Tests/fuzz.sh 60
