#!/usr/bin/env python3
"""Decapsulates IPIP and GUE for a lab backend whose kernel cannot.

Linux does this itself with CONFIG_NET_IPIP / CONFIG_NET_FOU (`ip link set
tunl0 up`, `ip fou add port 6080 gue`); lab.sh uses the kernel when it has
them. The kernels of these build machines have neither, so this helper takes
the outer header off and hands the inner packet to the kernel through a TUN
device: from there on the real kernel delivers it to the VIP on lo and its
TCP/UDP stack answers the client directly (direct server return).

    decap.py TUN_NAME GUE_PORT
"""
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys

TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000

name, gue_port = sys.argv[1], int(sys.argv[2])
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
subprocess.run(["ip", "link", "set", name, "up"], check=True)
subprocess.run(["sysctl", "-qw", f"net.ipv4.conf.{name}.rp_filter=0"], check=True)

ipip4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 4)    # IPv4 in IPv4
ipip6 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 41)   # IPv6 in IPv4
gue = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
gue.bind(("0.0.0.0", gue_port))
print("decap ready", flush=True)

while True:
    ready, _, _ = select.select([ipip4, ipip6, gue], [], [])
    for s in ready:
        data = s.recv(65535)
        if s is gue:
            # GUE version 0: 4-byte header plus hlen words of options.
            if len(data) < 4 or data[0] >> 6 != 0:
                continue
            inner = data[4 + (data[0] & 0x1F) * 4:]
        else:
            inner = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets see the outer header
        if inner:
            os.write(tun, inner)
