"""Switch mode prototype on a private Open vSwitch (issue 14): one VIP, three backends, slot
rules on masked source-port bits and per-flow pins learned by the switch, with no controller.

    sudo flock /tmp/lockstep-ovs.lock env PYTHONPATH=$PWD python -m bench.switchmode_proto \
        [--bits 8] [--flows 1000] [--seconds 5]

1. installs the rules with ``ovs-ofctl`` (``rules``: the table docs/switch-mode.md designs);
2. traces ``--flows`` random flows with ``ovs-appctl ofproto/trace`` and checks that the
   switch's backend is ``bench.switchslots``' for every one (SYN and non-SYN);
3. floods the VIP with spoofed SYNs (``hping3 -S --flood --rand-source``) and reports SYNs/s
   reaching the VMs, pins created (expected: none) and datapath flows (expected: ~one per slot);
4. sends non-SYN packets of 200 distinct flows: one pin each, with the backend's cookie;
5. deletes one backend's pins with one cookie-masked delete.

Uses bench/ovslab.py's lab (underlay, VMs behind VXLAN, client namespace); no controller.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import re
import tempfile
import time
from pathlib import Path

from bench.ovslab import (
    CLIENT_ADDRESS,
    TUNNEL_IP,
    VIP,
    VIP_PORT,
    VNI,
    Lab,
    add_client,
    add_underlay_and_vms,
)
from bench.switchslots import SlotBits, build_pow2_table, slot_match, slot_of
from lab.ovs import sh
from ryu_app.core.pipeline import COOKIE_TAG, flow_cookie

BACKENDS = {f"vm{i}": (i, f"10.99.0.{10 + i}", f"02:00:00:00:01:{i:02x}") for i in (1, 2, 3)}
KIND_SLOT = 3
PRIORITY_SYN_SLOT, PRIORITY_PIN, PRIORITY_SLOT = 210, 200, 190
PIN_IDLE, PIN_FIN_IDLE = 60, 2


def slot_cookie(backend_id: int) -> int:
    return COOKIE_TAG | KIND_SLOT << 40 | backend_id


def rules(bits: SlotBits, uplink: int, tunnel: int) -> list[str]:
    """The VIP's slot rules, two per slot: pure SYNs (above the pins: placed, never learned,
    so one megaflow per slot carries a SYN flood) and every other packet (below the pins: the
    first non-SYN packet of a flow learns its pin)."""
    table = build_pow2_table([(name, 1) for name in BACKENDS], bits.width)
    out = []
    for slot, name in enumerate(table):
        backend_id, tun_dst, mac = BACKENDS[name]
        value, mask = slot_match(slot, bits)["src_port"]
        match = f"in_port={uplink},tcp,nw_dst={VIP},tp_dst={VIP_PORT},tp_src={value:#x}/{mask:#x}"
        send = f"set_field:{mac}->eth_dst,set_field:{tun_dst}->tun_dst,set_field:{VNI}->tun_id"
        send += f",output:{tunnel}"
        pin = (
            f"learn(table=0,priority={PRIORITY_PIN},idle_timeout={PIN_IDLE},"
            f"fin_idle_timeout={PIN_FIN_IDLE},cookie={flow_cookie(backend_id):#x},"
            "NXM_OF_IN_PORT[],eth_type=0x800,nw_proto=6,NXM_OF_IP_SRC[],NXM_OF_IP_DST[],"
            "NXM_OF_TCP_SRC[],NXM_OF_TCP_DST[],"
            f"load:{int.from_bytes(bytes.fromhex(mac.replace(':', ''))):#x}->NXM_OF_ETH_DST[],"
            f"load:{int(ipaddress.ip_address(tun_dst)):#x}->NXM_NX_TUN_IPV4_DST[],"
            f"load:{VNI:#x}->NXM_NX_TUN_ID[],output:NXM_NX_REG1[])"
        )
        cookie = f"cookie={slot_cookie(backend_id):#x}"
        syn = f"priority={PRIORITY_SYN_SLOT},{match},tcp_flags=+syn-ack"
        out.append(f"{cookie},{syn},actions={send}")
        out.append(
            f"{cookie},priority={PRIORITY_SLOT},{match},"
            f"actions=load:{tunnel}->NXM_NX_REG1[],{pin},{send}"
        )
    return out


def gateway_bridge(lab: Lab) -> tuple[str, int, int]:
    """The gateway bridge without a controller (secure: nothing passes but our rules)."""
    bridge, uplink, tunnel = lab.name("g"), lab.name("gu"), lab.name("gt")
    lab.bridge(bridge, "fail_mode=secure", "protocols=OpenFlow13")
    lab.ovs.vsctl("add-port", bridge, uplink)
    lab.ovs.vsctl(
        *f"add-port {bridge} {tunnel} -- set interface {tunnel} type=vxlan "
        f"options:remote_ip=flow options:local_ip={TUNNEL_IP} options:key=flow".split()
    )
    ofport = [int(lab.ovs.vsctl("get", "interface", name, "ofport")) for name in (uplink, tunnel)]
    return bridge, ofport[0], ofport[1]


def traced_backend(lab: Lab, bridge: str, uplink: int, flow: str) -> str | None:
    """The backend whose slot rule the switch applies to ``flow`` (by the rule's cookie)."""
    trace = lab.ovs.appctl("ofproto/trace", bridge, f"in_port={uplink},{flow}")
    found = re.search(r"cookie (0x[0-9a-f]+)", trace)
    ids = {slot_cookie(i): name for name, (i, _, _) in BACKENDS.items()}
    return ids.get(int(found.group(1), 16)) if found else None


def check_choices(lab, bridge, uplink, bits: SlotBits, count: int) -> tuple[int, int]:
    """(agreements, flows): the switch's choice against the Python function's."""
    table = build_pow2_table([(name, 1) for name in BACKENDS], bits.width)
    rng = random.Random(14)
    agree = 0
    for i in range(count):
        src = str(ipaddress.ip_address(rng.getrandbits(32) | 0x01000000))
        port = rng.randint(1024, 65535)
        flags = "syn" if i % 2 else "ack"
        flow = f"tcp,nw_src={src},nw_dst={VIP},tp_src={port},tp_dst={VIP_PORT},tcp_flags={flags}"
        agree += traced_backend(lab, bridge, uplink, flow) == table[slot_of(src, port, bits)]
    return agree, count


def vm_rx(lab: Lab) -> int:
    total = 0
    for i in BACKENDS.values():
        ns = lab.name(f"v{i[0]}")
        total += int(sh("cat", "/sys/class/net/vx0/statistics/rx_packets", ns=ns))
    return total


def pins(lab: Lab, bridge: str) -> int:
    """Learned pins: rules of the per-flow cookie kind (as controller mode's per-flow rules)."""
    kind = flow_cookie(0)
    found = lab.ovs.ofctl("dump-flows", bridge, f"cookie={kind:#x}/{0xFFFFFF << 40:#x}")
    return sum(1 for line in found.splitlines() if "cookie=" in line)


def datapath_flows(lab: Lab) -> int:
    return len(lab.ovs.appctl("dpctl/dump-flows").splitlines())


def flood(lab: Lab, bridge: str, client_ns: str, seconds: float) -> dict:
    """Spoofed SYNs as fast as hping3 sends them: what reached the VMs, pins, megaflows."""
    before = vm_rx(lab)
    process = lab.spawn(
        ["hping3", "-S", "--flood", "--rand-source", "-p", str(VIP_PORT), VIP], ns=client_ns
    )
    time.sleep(seconds / 2)
    megaflows = datapath_flows(lab)
    time.sleep(seconds / 2)
    lab.kill(process)
    through = vm_rx(lab) - before
    return {"syn_per_s": round(through / seconds), "pins": pins(lab, bridge), "dp_flows": megaflows}


def legit_flows(lab: Lab, bridge: str, client_ns: str, count: int) -> int:
    """Non-SYN packets of ``count`` distinct flows (hping3 moves the source port each packet)."""
    command = f"hping3 -A -q -c {count} -i u2000 -p {VIP_PORT} {VIP}"
    sh(*command.split(), ns=client_ns, check=False)
    return pins(lab, bridge)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--flows", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    bits = SlotBits(args.bits, 1)
    lab = Lab(Path(tempfile.mkdtemp(prefix="switchmode-")))
    try:
        lab.ovs.start()
        add_underlay_and_vms(lab)
        client_ns, _ = add_client(lab)
        bridge, uplink, tunnel = gateway_bridge(lab)
        path = lab.workdir / "rules.txt"
        path.write_text("\n".join(rules(bits, uplink, tunnel)) + "\n")
        started = time.monotonic()
        lab.ovs.ofctl("add-flows", bridge, str(path))
        print(f"rules: {2 << bits.width} in {time.monotonic() - started:.2f} s")
        agree, total = check_choices(lab, bridge, uplink, bits, args.flows)
        print(f"switch == python: {agree}/{total}")
        print(f"spoofed SYN flood {args.seconds} s: {flood(lab, bridge, client_ns, args.seconds)}")
        learned = legit_flows(lab, bridge, client_ns, 200)
        print(f"pins after 200 non-SYN flows from {CLIENT_ADDRESS}: {learned}")
        lab.ovs.ofctl("del-flows", bridge, f"cookie={flow_cookie(1):#x}/-1")
        print(f"pins after deleting vm1's by cookie: {pins(lab, bridge)}")
    finally:
        lab.close()
        print(f"leftovers: {lab.leftovers()}")


if __name__ == "__main__":
    main()
