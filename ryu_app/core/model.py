"""The domain model: what one gateway serves (VIPs, their backends and health checks) and the
gateway itself, as frozen records, with the constants and rules that say what a valid one is.

The bottom of the code: this module imports nothing of Lockstep's, so everything may import
it, and nothing it holds depends on a file format, a framework or a clock.  The pure core
(``ryu_app/core``) works on these records; the deployment file's validator
(``topology/deployment.py``) builds them from YAML or a REST body and checks the rules that
span several of them; the shell and the CLI pass them around.

Each fact about a VIP is computed here once: its service key (what its switch rules match
on, ``service_key``), whether its backends are probed (``Vip.probed``), the port its checks
use (``Vip.check_port``).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from dataclasses import dataclass, field
from typing import NamedTuple

# ---- hashing and tables -------------------------------------------------------------------------

# What a flow is hashed on (``flowkey.hash_key``): the 5-tuple, or the addresses alone (client
# affinity: every connection of one client to one VIP address lands on the same backend).
HASH_5TUPLE = "5-tuple"
HASH_SRC_IP = "src-ip"
HASH_MODES = (HASH_5TUPLE, HASH_SRC_IP)

# Where a VIP's new flows go (``core.slots``): by a hash of the flow key into a prime Maglev
# table (``hash``, every release's behaviour), or by bits 1..k of the TCP source port into a
# Maglev table of 2**k slots (``port-bits``): what a switch can match with wildcard rules, so a
# switch-mode gateway and a controller-mode one place a flow alike (docs/switch-mode.md).
PLACEMENT_HASH = "hash"
PLACEMENT_PORT_BITS = "port-bits"
PLACEMENTS = (PLACEMENT_HASH, PLACEMENT_PORT_BITS)
# port-bits tables: 2**8..2**12 slots, each two switch rules (docs/switch-mode.md, "Limits").
MIN_SLOT_BITS, MAX_SLOT_BITS = 8, 12
# Slots per backend: below 16 a port-bits VIP is refused, below 32 it is warned about (the
# table's own granularity is within about 3% from 32 on: bench/switchmode_balance.py).
MIN_SLOTS_PER_BACKEND = 16

# Who places a VIP's new flows (docs/switch-mode.md): the controller, on a packet-in (every
# release's behaviour), or the switch itself, by slot rules the controller writes from the
# VIP's ``port-bits`` table (``core.switchrules``), pinning each flow with a learned rule.
# Either executor picks the same backend for the same flow, so gateways may differ in mode.
MODE_CONTROLLER = "controller"
# A switch-mode VIP's pins per backend, at most (``learn``'s limit, docs/switch-mode.md "Pins"):
# an ACK flood with spoofed sources learns pins until then, and no further.  ~100 bytes of
# switch memory per rule and a megaflow per pinned flow: 100k pins is ~10 MB per backend.
DEFAULT_MAX_PINS_PER_BACKEND = 100_000
MAX_PINS_PER_BACKEND = 2**32 - 1
MODE_SWITCH = "switch"
MODES = (MODE_CONTROLLER, MODE_SWITCH)
BALANCED_SLOTS_PER_BACKEND = 32

# What a gateway does with a TCP segment (no SYN) of a connection it never saw, in a slot its
# recent table changes moved (``core.secondchance``): the current owner only (every release's
# behaviour), the slot's previous owner (no VM configuration; breaks connections begun on the
# new owner after the change), or both (needs the VMs to drop segments of connections they do
# not know instead of answering RST: docs/deployment.md).  A gateway remembers the tables it
# replaced for ``second_chance_window`` seconds.
SECOND_CHANCE_OFF = "off"
SECOND_CHANCE_PREVIOUS = "previous"
SECOND_CHANCE_DUPLICATE = "duplicate"
SECOND_CHANCE_MODES = (SECOND_CHANCE_OFF, SECOND_CHANCE_PREVIOUS, SECOND_CHANCE_DUPLICATE)
DEFAULT_SECOND_CHANCE_WINDOW = 900  # seconds: a drain's minutes, and the flows' tail
MAX_SECOND_CHANCE_WINDOW = 86_400

DEFAULT_TABLE_SIZE = 65537
MIN_TABLE_SIZE = 7
# The larger of the two table sizes the Maglev paper evaluates.  Built in Python in ~0.3-0.5 s
# (100 to 1,000 backends, measured); 16,777,259, the bound before, took 10 s and stalled a
# REST change.
MAX_TABLE_SIZE = 655_373
# Maglev's guidance (section 3.4): table_size > 100 x backends keeps the difference between
# backends' shares of the table within about 1%; ``lockstep check`` warns below it.
BALANCE_FACTOR = 100
MAX_WEIGHT = 10_000  # a backend's share of new flows; 0 drains it

# ---- services ---------------------------------------------------------------------------------

# The protocols a VIP serves, with their IP protocol numbers (what a packet carries).
PROTO_TCP = 6
PROTO_UDP = 17
PROTOCOLS = {"tcp": PROTO_TCP, "udp": PROTO_UDP}
DEFAULT_IDLE_TIMEOUT = {"tcp": 60, "udp": 30}  # seconds, by protocol
DEFAULT_VNI = 100

# Health check types: a TCP connect, an HTTP GET, or none (static backends, never probed and
# always counted healthy).
CHECK_TCP = "tcp"
CHECK_HTTP = "http"
NO_CHECKS = "none"
CHECK_TYPES = (CHECK_TCP, CHECK_HTTP, NO_CHECKS)


@dataclass(frozen=True)
class HealthCheck:
    type: str = CHECK_TCP  # CHECK_TYPES
    port: int | None = None  # None: the VIP's port
    path: str = "/"  # the http check's request path
    expect_status: int = 200
    interval: float = 2.0  # seconds between the starts of two probes
    timeout: float = 1.0  # seconds a probe may take
    rise: int = 3  # consecutive successes that bring a DOWN backend UP
    fall: int = 3  # consecutive failures that take an UP backend DOWN
    # Percent (0-100) of the VIP's serving backends (weight > 0) that must be healthy; below
    # it the VIP is in panic and new flows are hashed over all of them (``core.serving``).
    # 50 like Envoy's ``healthy_panic_threshold``; 0 never panics.
    panic_threshold: int = 50

    @property
    def worst_detection_time(self) -> float:
        """Longest time from a backend dying to a gateway marking it down."""
        return self.interval * self.fall + self.timeout


@dataclass(frozen=True)
class Backend:
    name: str
    tunnel_ip: str  # the VM's VXLAN tunnel endpoint
    mac: str  # inner destination MAC (the VM's VXLAN device)
    weight: int = 1  # 0 = draining: keeps its flows, takes no new ones


@dataclass(frozen=True)
class Vip:
    name: str
    address: str
    port: int
    protocol: str = "tcp"  # PROTOCOLS
    hash: str = HASH_5TUPLE  # HASH_MODES
    table_size: int = DEFAULT_TABLE_SIZE  # prime for hash, 2**k for port-bits
    idle_timeout: int = DEFAULT_IDLE_TIMEOUT["tcp"]
    vni: int = DEFAULT_VNI
    health: HealthCheck = field(default_factory=HealthCheck)
    backends: tuple[Backend, ...] = ()
    # New connections per second of this VIP let through to the controller, in a budget of
    # its own (None: the gateway's ``flood_guard``, shared with every VIP without one).
    new_flow_rate: int | None = None
    placement: str = PLACEMENT_HASH  # PLACEMENTS
    mode: str = MODE_CONTROLLER  # MODES; may differ per gateway (left out of the digest)
    # Switch mode: pins the switch learns per backend at most (0: no bound).  Open vSwitch
    # counts a learn's limit over the rules with the learned rule's cookie: the backend's.
    max_pins_per_backend: int = DEFAULT_MAX_PINS_PER_BACKEND
    # Controller mode: what a TCP non-SYN miss of a recently changed slot gets (see above).
    second_chance: str = SECOND_CHANCE_OFF  # SECOND_CHANCE_MODES
    second_chance_window: int = DEFAULT_SECOND_CHANCE_WINDOW

    @property
    def ip_version(self) -> int:
        return ipaddress.ip_address(self.address).version

    @property
    def check_port(self) -> int:
        """The TCP port health checks connect to."""
        return self.health.port or self.port

    @property
    def probed(self) -> bool:
        """Whether the backends are health-checked (``health.type`` ``none``: static backends,
        never probed and always counted healthy; weight 0 still drains)."""
        return self.health.type != NO_CHECKS

    def backend(self, backend_name: str) -> Backend | None:
        return next((b for b in self.backends if b.name == backend_name), None)


class ServiceKey(NamedTuple):
    """What a VIP's switch rules match on: its service, and the port its health checks use.

    Two VIPs with equal keys need the same rules; a VIP whose key changes needs its old rules
    removed.  The address is packed (4 or 16 bytes), as a parsed packet's ``Flow.dst``."""

    address: bytes
    port: int
    protocol: int  # PROTO_TCP or PROTO_UDP
    check_port: int | None  # None: static backends, no probe answers come back

    @property
    def destination(self) -> tuple[bytes, int, int]:
        """What a client's packet to the VIP carries: ``(Flow.dst, Flow.dst_port,
        Flow.proto)``."""
        return self.address, self.port, self.protocol


def service_key(vip: Vip) -> ServiceKey:
    """The one place a VIP's service key is computed (balancer, gateway and rule building)."""
    address = ipaddress.ip_address(vip.address).packed
    check_port = vip.check_port if vip.probed else None
    return ServiceKey(address, vip.port, PROTOCOLS[vip.protocol], check_port)


# ---- the flood guard ---------------------------------------------------------------------------

# New connections a gateway's switch lets through to its controller per second (an OpenFlow
# meter on the VIP punts; the rest are dropped in the datapath and counted).  An OVS 3.1
# userspace gateway on the 2-core lab machine sets up ~5,200 new flows/s before its main thread
# saturates (bench/bench_ovs.py).  Measured with bench/bench_flood.py: at 5,000 the main thread
# is saturated by the flood's flow set-ups and drops legitimate SYNs in the kernel before the
# meter (2x: 58% of a legitimate client's connections); at 3,000 the meter drops legitimate SYNs
# below capacity (1x: 89%); 4,000 gave 98% at 1x and 71% at 2x.  Raise it on a faster gateway.
DEFAULT_NEW_FLOW_RATE = 4000
DEFAULT_NEW_FLOW_BURST = 1000  # packets above the rate let through at once
MAX_NEW_FLOW_RATE = 10_000_000


@dataclass(frozen=True)
class FloodGuard:
    """The gateway's budget of new connections per second to its controller (0: no guard)."""

    rate: int = DEFAULT_NEW_FLOW_RATE
    burst: int = DEFAULT_NEW_FLOW_BURST


@dataclass(frozen=True)
class Gateway:
    name: str
    dpid: int
    addresses: tuple[str, ...]  # its own addresses on the uplink (answered for ARP/ND)
    tunnel_ip: str  # local VXLAN endpoint
    openflow: tuple[str, int]  # where its controller listens for the switch
    rest: tuple[str, int]  # where its controller serves the REST API
    uplink_port: str
    tunnel_port: str = "vxlan0"
    mac: str | None = None
    state_file: str | None = None
    host: str | None = None  # the machine its controller runs on; None: the one all others share
    flood_guard: FloodGuard = field(default_factory=FloodGuard)
    # Overrides every VIP's ``mode`` on this gateway (None: each VIP's own), so that one
    # deployment file describes a mixed fleet.  Wins over a REST body's mode: the CLI sends the
    # same body to every gateway (``GatewayCore.set_vip``: ``gateway_mode``).
    vip_mode: str | None = None


# ---- rules of one value -------------------------------------------------------------------------


def is_prime(number: int) -> bool:
    """Deterministic primality test, fine for table sizes (trial division up to sqrt)."""
    if number < 2:
        return False
    if number % 2 == 0:
        return number == 2
    divisor = 3
    while divisor * divisor <= number:
        if number % divisor == 0:
            return False
        divisor += 2
    return True


def table_size_problem(table_size: object) -> str | None:
    """Why ``table_size`` cannot be a Maglev table's size, or None if it can: prime, so that
    every backend's preference list visits every slot (``maglev``).  Shared by config and API."""
    if isinstance(table_size, bool) or not isinstance(table_size, int):
        return f"must be an integer, got {type(table_size).__name__}"
    if table_size < MIN_TABLE_SIZE:
        return f"must be at least {MIN_TABLE_SIZE}, got {table_size}"
    if table_size > MAX_TABLE_SIZE:
        return f"must be at most {MAX_TABLE_SIZE}, got {table_size}"
    if not is_prime(table_size):
        return f"must be prime, got {table_size} (e.g. 251, 4099, 65537, 655373)"
    return None


def is_power_of_two(number: object) -> bool:
    """Whether ``number`` is an integer 2**n (n >= 0); False for anything else."""
    if isinstance(number, bool) or not isinstance(number, int):
        return False
    return number > 0 and number & (number - 1) == 0


def slot_table_size_problem(table_size: object) -> str | None:
    """Why ``table_size`` cannot be a port-bits table's size, or None if it can: ``2**k``
    slots, one per value of k source-port bits, k in MIN_SLOT_BITS..MAX_SLOT_BITS."""
    if isinstance(table_size, bool) or not isinstance(table_size, int):
        return f"must be an integer, got {type(table_size).__name__}"
    if not is_power_of_two(table_size) or not (
        MIN_SLOT_BITS <= table_size.bit_length() - 1 <= MAX_SLOT_BITS
    ):
        return (
            f"must be a power of two 2**{MIN_SLOT_BITS}..2**{MAX_SLOT_BITS} "
            f"({1 << MIN_SLOT_BITS}..{1 << MAX_SLOT_BITS}) with placement {PLACEMENT_PORT_BITS}, "
            f"got {table_size}"
        )
    return None


def placement_table_size_problem(table_size: object, placement: str) -> str | None:
    """The table-size rule of ``placement``: prime for hash, a power of two for port-bits."""
    if placement == PLACEMENT_PORT_BITS:
        return slot_table_size_problem(table_size)
    return table_size_problem(table_size)


def slot_table_size(backends: int) -> int:
    """The default size of a port-bits table for this many configured backends: 2**k with
    k = clamp(ceil(log2(backends)) + 5, 8, 12), i.e. at least 32 slots per backend up to 128
    backends (docs/switch-mode.md, "The table size rule"), and no more rules than that."""
    bits = max(backends, 1).bit_length() - (1 if is_power_of_two(max(backends, 1)) else 0)
    return 1 << min(max(bits + 5, MIN_SLOT_BITS), MAX_SLOT_BITS)


def switch_mode_problem(vip: Vip) -> str | None:
    """Why ``vip``'s flows cannot be placed by its switch, or None: the slot rules match IPv4
    TCP (``core.switchrules``).  The placement rule (port-bits) is the deployment file's."""
    if vip.ip_version != 4:
        return "switch mode is IPv4-only in this release"
    if vip.protocol != "tcp":
        return "switch mode places TCP flows only (its slots are TCP source-port bits)"
    return None


def gateway_mode(vip: Vip, gateway: Gateway) -> Vip:
    """``vip`` as ``gateway`` runs it: its ``vip_mode`` over the VIP's own, when set and when
    the VIP can run in that mode (the deployment file refuses one that cannot: ``lockstep
    check`` names the gateway's key and the VIP)."""
    wanted = gateway.vip_mode
    if wanted is None or wanted == vip.mode:
        return vip
    if wanted == MODE_SWITCH and (
        vip.placement != PLACEMENT_PORT_BITS or switch_mode_problem(vip) is not None
    ):
        return vip
    return dataclasses.replace(vip, mode=wanted)


def policy_problem(interval, timeout, rise, fall) -> str | None:
    """Why these health-check timings cannot be used, or None if they can (the deployment
    file's rule and ``health.HealthPolicy``'s)."""
    for name, value in (("interval", interval), ("timeout", timeout)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            return f"{name} must be a positive number of seconds, got {value!r}"
    if timeout > interval:
        return f"timeout ({timeout}) must not exceed interval ({interval})"
    for name, value in (("rise", rise), ("fall", fall)):
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
            return f"{name} must be an integer 1..100, got {value!r}"
    return None
