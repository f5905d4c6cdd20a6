"""The deployment file: VIPs with their backends, gateways, and (for emulation) clients, router
and underlay.  Parsed by one validator used everywhere (``lockstep check``, controller start-up
and the REST API, which reads a single VIP with ``parse_vip``) into frozen records: the domain
model's (``ryu_app.core.model``: Vip, Backend, HealthCheck, Gateway) inside a
``topology.network.Deployment``.

Types are declared once, in the field tables below, and defaults once, in the records (the
tables read them from there).  ``load``/``parse`` report every problem at once, each with its
key path, as a ``ConfigError``.  A REST write checks its would-be deployment with
``change_problems``: the same rules, without walking the underlay's graph again for VMs it
already had.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Collection
from pathlib import Path
from typing import Any

import yaml

from ryu_app.core.model import (
    BALANCE_FACTOR,
    BALANCED_SLOTS_PER_BACKEND,
    CHECK_HTTP,
    CHECK_TYPES,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_TABLE_SIZE,
    HASH_5TUPLE,
    HASH_MODES,
    MAX_NEW_FLOW_RATE,
    MAX_PINS_PER_BACKEND,
    MAX_SECOND_CHANCE_WINDOW,
    MAX_SLOT_BITS,
    MAX_TABLE_SIZE,
    MAX_WEIGHT,
    MIN_SLOT_BITS,
    MIN_SLOTS_PER_BACKEND,
    MIN_TABLE_SIZE,
    MODE_SWITCH,
    MODES,
    PLACEMENT_PORT_BITS,
    PLACEMENTS,
    PROTOCOLS,
    SECOND_CHANCE_MODES,
    SECOND_CHANCE_OFF,
    Backend,
    FloodGuard,
    Gateway,
    HealthCheck,
    Vip,
    is_power_of_two,
    placement_table_size_problem,
    policy_problem,
    slot_table_size,
    switch_mode_problem,
    table_size_problem,
)
from topology.addresses import ip_network, mac_address, unicast_address, unicast_ipv4
from topology.graph import reachability_problems
from topology.listeners import listener_problems
from topology.network import Client, Deployment, Router, Underlay
from topology.schema import (
    REQUIRED,
    ConfigError,
    Field,
    Invalid,
    ListOf,
    Problem,
    Section,
    choice,
    datapath_id,
    described,
    endpoint,
    endpoint_text,
    host_name,
    integer,
    join,
    name,
    number,
    optional,
    text,
    url_path,
)

# A VIP's backends: 2,000 fit the REST API's body cap (rest.MAX_BODY) with room to spare, and
# are 20 times what the default table balances well (65537 > 100 x 655).
MAX_BACKENDS = 2000


# ---- the schema ---------------------------------------------------------------------------------


@described(
    {
        "type": "integer",
        "minimum": MIN_TABLE_SIZE,
        "maximum": MAX_TABLE_SIZE,
        "nullable": True,
        "description": "Maglev lookup table size.  placement hash: a prime, at least the "
        f"number of backends ({BALANCE_FACTOR} x backends or more balances them within ~1%; "
        f"default {DEFAULT_TABLE_SIZE}).  placement port-bits: a power of two "
        f"{1 << MIN_SLOT_BITS}..{1 << MAX_SLOT_BITS}, one slot per value of the source port's "
        f"bits 1..k (default: {BALANCED_SLOTS_PER_BACKEND} slots per backend or more, "
        f"clamped to that range)",
    }
)
def _table_size(value: Any) -> int | None:
    """A prime or a power of two: a size one of the placements may take (which one is the
    placement's rule, ``placement_problems``, which sees both fields)."""
    if value is None or (is_power_of_two(value) and value <= MAX_TABLE_SIZE):
        return value
    problem = table_size_problem(value)
    if problem:
        if problem.startswith("must be prime"):
            problem += (
                f"; with placement {PLACEMENT_PORT_BITS}, a power of two "
                f"{1 << MIN_SLOT_BITS}..{1 << MAX_SLOT_BITS}"
            )
        raise Invalid(problem)
    return value


# The field tables.  ``doc`` becomes the field's description in the REST API's document.
HEALTH_FIELDS = Section(
    {
        "type": Field(
            choice(*CHECK_TYPES),
            HealthCheck.type,
            "tcp: a SYN-ACK; http: GET path, a status; none: a static backend, never probed",
        ),
        "port": Field(optional(integer(1, 65535)), None, "default: the VIP's port"),
        "path": Field(url_path, HealthCheck.path, "the http check's request path"),
        "expect_status": Field(
            integer(100, 599), HealthCheck.expect_status, "the status an http check needs"
        ),
        "interval": Field(number(0.05, 3600), HealthCheck.interval, "seconds between probes"),
        "timeout": Field(
            number(0.01, 3600), HealthCheck.timeout, "seconds a probe may take (< interval)"
        ),
        "rise": Field(integer(1, 100), HealthCheck.rise, "successes that bring a backend up"),
        "fall": Field(integer(1, 100), HealthCheck.fall, "failures that take a backend down"),
        "panic_threshold": Field(
            integer(0, 100),
            HealthCheck.panic_threshold,
            "percent of the serving backends (weight > 0) that must be healthy; below it new "
            "flows are hashed over all of them (fail-open); 0: never",
        ),
    }
)

BACKEND_FIELDS = Section(
    {
        "name": Field(name),
        # The underlay is IPv4 (OVS tun_ipv4_dst).
        "tunnel_ip": Field(unicast_ipv4, REQUIRED, "the VM's VXLAN tunnel endpoint"),
        "mac": Field(mac_address, REQUIRED, "inner destination MAC (the VM's VXLAN device)"),
        "weight": Field(
            integer(0, MAX_WEIGHT),
            Backend.weight,
            "share of new flows; 0 drains (existing flows stay)",
        ),
    }
)

VIP_FIELDS = Section(
    {
        "name": Field(name),
        "address": Field(unicast_address),
        "port": Field(integer(1, 65535)),
        "protocol": Field(choice(*PROTOCOLS), Vip.protocol),
        "hash": Field(choice(*HASH_MODES), Vip.hash, "flow key: 5-tuple, or src-ip"),
        "table_size": Field(_table_size, None),
        "idle_timeout": Field(
            optional(integer(1, 4095)),
            None,
            "seconds; default "
            + ", ".join(f"{s} for {p}" for p, s in DEFAULT_IDLE_TIMEOUT.items()),
        ),
        "vni": Field(integer(0, 2**24 - 1), Vip.vni, "VXLAN id of the VMs' devices"),
        "health": Field(HEALTH_FIELDS, None, "health checks (null: every default)"),
        "backends": Field(ListOf(BACKEND_FIELDS, max_items=MAX_BACKENDS), []),
        "new_flow_rate": Field(
            optional(integer(1, MAX_NEW_FLOW_RATE)),
            None,
            "new connections/s let through to the controller in a budget of this VIP's own"
            " (default: the gateway's flood_guard, shared)",
        ),
        "placement": Field(
            choice(*PLACEMENTS),
            Vip.placement,
            "where new flows go: hash (of the flow key, into a prime table) or port-bits "
            "(bits 1..k of the TCP source port, into a table of 2**k slots: what a switch can "
            "place itself, docs/switch-mode.md; tcp, IPv4 and hash 5-tuple only)",
        ),
        "mode": Field(
            choice(*MODES),
            Vip.mode,
            "who places new flows: controller (on a packet-in) or switch (slot rules of the "
            "VIP's table in the switch, pins learned there; needs placement port-bits, tcp, "
            "IPv4).  May differ per gateway: left out of the configuration digest",
        ),
        "max_pins_per_backend": Field(
            integer(0, MAX_PINS_PER_BACKEND),
            Vip.max_pins_per_backend,
            "switch mode: pins the switch learns per backend at most, so that an ACK flood "
            "cannot fill its flow table (learn's limit, Open vSwitch >= 2.12; 0: no bound, "
            "for older switches).  May differ per gateway: left out of the digest",
        ),
        "second_chance": Field(
            choice(*SECOND_CHANCE_MODES),
            Vip.second_chance,
            "controller mode, tcp: where a non-SYN segment of a connection this gateway never "
            "saw goes when its slot changed owner lately (a drain, add or failure, then an "
            "ECMP move): off (the current owner), previous (the slot's earlier owner), or "
            "duplicate (both; the VMs must drop segments of unknown connections instead of "
            "answering RST, docs/deployment.md)",
        ),
        "second_chance_window": Field(
            integer(1, MAX_SECOND_CHANCE_WINDOW),
            Vip.second_chance_window,
            "seconds a gateway remembers a table it replaced, for second_chance",
        ),
    }
)

FLOOD_GUARD_FIELDS = Section(
    {
        "rate": Field(
            integer(0, MAX_NEW_FLOW_RATE),
            FloodGuard.rate,
            "new connections/s the switch lets through to the controller (0: no guard)",
        ),
        "burst": Field(
            integer(0, MAX_NEW_FLOW_RATE), FloodGuard.burst, "packets above the rate at once"
        ),
    }
)

GATEWAY_FIELDS = Section(
    {
        "name": Field(name),
        "dpid": Field(datapath_id),
        "addresses": Field(ListOf(unicast_address, min_items=1)),
        "tunnel_ip": Field(unicast_ipv4),
        "openflow": Field(endpoint, REQUIRED),
        "rest": Field(endpoint, REQUIRED),
        "uplink_port": Field(text(15)),
        "tunnel_port": Field(text(15), Gateway.tunnel_port),
        "mac": Field(optional(mac_address), None),
        "state_file": Field(optional(text(4096)), None),
        "host": Field(optional(host_name), None),
        "flood_guard": Field(FLOOD_GUARD_FIELDS, None, "the switch's budget of packet-ins"),
        "vip_mode": Field(
            optional(choice(*MODES)),
            None,
            "overrides every VIP's mode on this gateway (a mixed fleet in one file); wins over "
            "a REST body's mode.  Never in the configuration digest",
        ),
    }
)

CLIENT_FIELDS = Section({"name": Field(name), "address": Field(unicast_address)})

ROUTER_FIELDS = Section(
    {
        "name": Field(name, Router.name),
        "client_subnet": Field(ip_network, Router.client_subnet),
        "uplink_subnet": Field(ip_network, Router.uplink_subnet),
        "address": Field(optional(unicast_address), None),
    }
)

UNDERLAY_FIELDS = Section(
    {"subnet": Field(ip_network), "mtu": Field(integer(1280, 9000), Underlay.mtu)}
)

DEPLOYMENT_FIELDS = Section(
    {
        "version": Field(choice(1), 1),
        "vips": Field(ListOf(VIP_FIELDS), []),
        "gateways": Field(ListOf(GATEWAY_FIELDS, min_items=1)),
        "clients": Field(ListOf(CLIENT_FIELDS), []),
        "router": Field(ROUTER_FIELDS, None),
        "underlay": Field(UNDERLAY_FIELDS, None),
    }
)


# ---- parsing ------------------------------------------------------------------------------------


def load(path: str | Path) -> Deployment:
    """Read and validate a deployment file; raises ConfigError naming every problem."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError([Problem("", f"cannot read {path}: {error.strerror}")]) from None
    except UnicodeDecodeError:
        raise ConfigError([Problem("", f"{path} is not UTF-8 text")]) from None
    return parse_text(source, str(path))


# libyaml's loader where PyYAML was built with it (its wheels are): the pure-Python one took
# ~30 s of a gateway's start-up at 1,000 VIPs x 100 backends (bench_scale), libyaml ~1-2 s.
# Both load the same safe subset of YAML into the same values.
_SAFE_BASE = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _SafeLoader(_SAFE_BASE):  # type: ignore[misc,valid-type]
    """The safe loader, remembering which tag each plain scalar's text resolves to: a file of
    1,000 VIPs x 100 backends repeats the same few hundred texts (keys, VM names, addresses)
    275,000 times, and resolving each by the implicit resolvers' regular expressions was a
    third of its load.  The tag depends on the text alone (no path resolvers here)."""

    _scalar_tags: dict[tuple[str, tuple[bool, bool]], str] = {}

    def resolve(self, kind, value, implicit):
        if kind is not yaml.ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (value, tuple(implicit))
        tag = self._scalar_tags.get(key)
        if tag is None:
            if len(self._scalar_tags) >= 1 << 16:
                self._scalar_tags.clear()
            tag = self._scalar_tags[key] = super().resolve(kind, value, implicit)
        return tag


def parse_text(source: str, origin: str = "<text>") -> Deployment:
    try:
        data = yaml.load(source, Loader=_SafeLoader)  # noqa: S506 - a safe loader, see above
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(error, "problem", None) or str(error)
        raise ConfigError([Problem("", f"{origin} is not valid YAML{where}: {reason}")]) from None
    return parse(data)


def parse(data: Any) -> Deployment:
    problems: list[Problem] = []
    raw = DEPLOYMENT_FIELDS.read(data, "", problems)
    if raw is None:
        raise ConfigError(problems)
    vips = tuple(_build_vip(v) for v in raw["vips"])
    gateways = tuple(_build_gateway(g) for g in raw["gateways"])
    deployment = Deployment(
        vips=vips,
        gateways=gateways,
        clients=tuple(Client(**c) for c in raw["clients"]),
        router=Router(**raw["router"]) if raw["router"] is not None else None,
        underlay=Underlay(**raw["underlay"]) if raw["underlay"] is not None else None,
    )
    for index, vip in enumerate(vips):
        problems.extend(vip_problems(vip, join("vips", index)))
    problems.extend(deployment_problems(deployment))
    if problems:
        raise ConfigError(problems)
    return deployment


def parse_vip(data: Any, path: str = "") -> Vip:
    """One VIP, as the REST API receives it; same schema and rules as in the file."""
    problems: list[Problem] = []
    raw = VIP_FIELDS.read(data, path, problems)
    if raw is None:
        raise ConfigError(problems)
    vip = _build_vip(raw)
    problems.extend(vip_problems(vip, path))
    if problems:
        raise ConfigError(problems)
    return vip


def parse_backend(data: Any, path: str = "") -> Backend:
    problems: list[Problem] = []
    raw = BACKEND_FIELDS.read(data, path, problems)
    if raw is None:
        raise ConfigError(problems)
    return Backend(**raw)


def vip_to_data(vip: Vip) -> dict:
    """The VIP as plain data in the file's shape: ``parse_vip(vip_to_data(v)) == v``.  What
    ``dataclasses.asdict`` gives, without its deep copy of every string and number (at 1,000
    VIPs x 100 backends asdict took ~1 s for each status digest and state-file write)."""
    data = _plain(vip)
    data["backends"] = list(data["backends"])
    return data


_PLAIN_ATOMS = frozenset((str, int, float, bool, type(None)))
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _plain(value: Any) -> Any:
    """``dataclasses.asdict``'s conversion of one value: records to dicts, tuples and lists
    item by item, immutable atoms as they are (a deep copy of one is itself), anything else
    deep-copied as asdict does."""
    kind = type(value)
    if kind in _PLAIN_ATOMS:
        return value
    if dataclasses.is_dataclass(value):
        names = _FIELD_NAMES.get(kind)
        if names is None:
            names = _FIELD_NAMES[kind] = tuple(f.name for f in dataclasses.fields(value))
        return {name: _plain(getattr(value, name)) for name in names}
    if kind in (tuple, list):
        return kind(_plain(item) for item in value)
    return dataclasses.asdict(_Holder(value))["value"]


@dataclasses.dataclass
class _Holder:
    """One value of a kind ``_plain`` does not know, for asdict to convert the way it does."""

    value: Any


def deployment_to_data(deployment: Deployment) -> dict:
    """The deployment as plain data in the file's shape: ``parse(deployment_to_data(d)) == d``."""
    gateways = []
    for gateway in deployment.gateways:
        data = dataclasses.asdict(gateway)
        data["addresses"] = list(gateway.addresses)
        data["openflow"] = endpoint_text(*gateway.openflow)
        data["rest"] = endpoint_text(*gateway.rest)
        gateways.append({k: v for k, v in data.items() if v is not None})
    data = {
        "version": 1,
        "vips": [vip_to_data(v) for v in deployment.vips],
        "gateways": gateways,
        "clients": [dataclasses.asdict(c) for c in deployment.clients],
    }
    if deployment.router is not None:
        data["router"] = dataclasses.asdict(deployment.router)
    if deployment.underlay is not None:
        data["underlay"] = dataclasses.asdict(deployment.underlay)
    return data


def dump(deployment: Deployment) -> str:
    """YAML text that ``parse_text`` reads back into the same deployment."""
    return yaml.safe_dump(deployment_to_data(deployment), sort_keys=False)


def _build_vip(raw: dict) -> Vip:
    idle = raw["idle_timeout"] or DEFAULT_IDLE_TIMEOUT[raw["protocol"]]
    health = HealthCheck(**(raw["health"] or {}))
    backends = tuple(Backend(**b) for b in raw["backends"])
    table_size = raw["table_size"]
    if table_size is None:
        # port-bits: derived once, from the configured backends, and kept in the VIP (so the
        # state file and the digest hold it and a restart cannot change it).
        by_placement = raw["placement"] == PLACEMENT_PORT_BITS
        table_size = slot_table_size(len(backends)) if by_placement else DEFAULT_TABLE_SIZE
    return Vip(
        **{
            **raw,
            "idle_timeout": idle,
            "health": health,
            "backends": backends,
            "table_size": table_size,
        }
    )


def _build_gateway(raw: dict) -> Gateway:
    guard = FloodGuard(**(raw["flood_guard"] or {}))
    return Gateway(**{**raw, "addresses": tuple(raw["addresses"]), "flood_guard": guard})


# ---- rules that span fields ---------------------------------------------------------------------


def vip_problems(vip: Vip, path: str) -> list[Problem]:
    problems = placement_problems(vip, path) + mode_problems(vip, path)
    if vip.second_chance != SECOND_CHANCE_OFF and vip.protocol != "tcp":
        problems.append(
            Problem(
                join(path, "second_chance"),
                "second chance tells a moved connection from a new one by the SYN flag: it "
                "needs protocol tcp",
            )
        )
    if vip.second_chance != SECOND_CHANCE_OFF and vip.hash != HASH_5TUPLE:
        problems.append(
            Problem(
                join(path, "second_chance"),
                f"second chance sends one connection to earlier owners: it needs hash "
                f"{HASH_5TUPLE} (a src-ip rule would take every connection of the client)",
            )
        )
    if vip.table_size < len(vip.backends):
        problems.append(
            Problem(
                join(path, "table_size"),
                f"{vip.table_size} is less than the number of backends ({len(vip.backends)}): "
                "each backend needs a slot",
            )
        )
    health = vip.health
    problem = policy_problem(health.interval, health.timeout, health.rise, health.fall)
    if problem:
        problems.append(Problem(join(path, "health"), problem))
    if health.type == CHECK_HTTP and vip.protocol != "tcp":
        problems.append(Problem(join(path, "health.type"), "http checks need a tcp VIP"))
    if vip.protocol == "udp" and health.port is None and vip.probed:
        problems.append(
            Problem(join(path, "health.port"), "a udp VIP needs the TCP port its checks connect to")
        )
    seen: dict[str, int] = {}
    seen_tunnel: dict[str, str] = {}
    for index, backend in enumerate(vip.backends):
        where = join(join(path, "backends"), index)
        if backend.name in seen:
            problems.append(
                Problem(
                    join(where, "name"),
                    f"duplicate backend {backend.name!r} (also #{seen[backend.name]})",
                )
            )
        seen.setdefault(backend.name, index)
        if backend.tunnel_ip in seen_tunnel:
            other = seen_tunnel[backend.tunnel_ip]
            problems.append(
                Problem(
                    join(where, "tunnel_ip"), f"{backend.tunnel_ip} is already backend {other!r}"
                )
            )
        seen_tunnel.setdefault(backend.tunnel_ip, backend.name)
    return problems


def placement_problems(vip: Vip, path: str) -> list[Problem]:
    """The rules of the VIP's placement (docs/switch-mode.md): a table size of its kind, and
    for port-bits a VIP whose flows have source ports that vary (TCP: a UDP client may keep
    one fixed port, and every flow of it would share one slot), a 5-tuple key (src-ip has no
    port to place by), IPv4 (the switch's rules are only built for IPv4 so far), and at least
    ``MIN_SLOTS_PER_BACKEND`` slots per backend."""
    size_problem = placement_table_size_problem(vip.table_size, vip.placement)
    if size_problem:
        return [Problem(join(path, "table_size"), size_problem)]
    if vip.placement != PLACEMENT_PORT_BITS:
        return []
    where = join(path, "placement")
    problems = []
    if vip.protocol != "tcp":
        problems.append(
            Problem(where, "port-bits places by TCP source port: it needs protocol tcp")
        )
    if vip.hash != HASH_5TUPLE:
        problems.append(
            Problem(where, f"port-bits places by source port: it needs hash {HASH_5TUPLE}")
        )
    if vip.ip_version != 4:
        problems.append(Problem(where, "port-bits is IPv4-only in this release"))
    wanted = MIN_SLOTS_PER_BACKEND * len(vip.backends)
    if vip.table_size < wanted:
        problems.append(
            Problem(
                join(path, "table_size"),
                f"{vip.table_size} slots for {len(vip.backends)} backends: port-bits needs "
                f"{MIN_SLOTS_PER_BACKEND} x backends = {wanted} or more "
                f"(at most {1 << MAX_SLOT_BITS}, so {(1 << MAX_SLOT_BITS) // MIN_SLOTS_PER_BACKEND}"
                " backends)",
            )
        )
    return problems


def mode_problems(vip: Vip, path: str) -> list[Problem]:
    """The rules of switch mode (docs/switch-mode.md): the switch matches source-port bits,
    so the VIP places by them (on every gateway, so that both modes agree), and its rules
    match IPv4 TCP (``model.switch_mode_problem``)."""
    if vip.mode != MODE_SWITCH:
        return []
    where = join(path, "mode")
    problems = []
    if vip.placement != PLACEMENT_PORT_BITS:
        problems.append(
            Problem(
                where,
                f"switch mode places by source-port bits: set placement: {PLACEMENT_PORT_BITS}"
                " on every gateway",
            )
        )
    problem = switch_mode_problem(vip)
    if problem:
        problems.append(Problem(where, problem))
    return problems


def gateway_mode_problems(deployment: Deployment) -> list[Problem]:
    """A gateway's ``vip_mode: switch`` holds for every VIP: each must be able to run in
    switch mode (``mode_problems``), named under the gateway's key."""
    problems = []
    for gi, gateway in enumerate(deployment.gateways):
        if gateway.vip_mode != MODE_SWITCH:
            continue
        where = join(join("gateways", gi), "vip_mode")
        for vip in deployment.vips:
            as_switch = dataclasses.replace(vip, mode=MODE_SWITCH)
            problems += [
                Problem(where, f"VIP {vip.name!r}: {p.reason}")
                for p in mode_problems(as_switch, "")
            ]
    return problems


def change_problems(current: Deployment, candidate: Deployment) -> list[Problem]:
    """The problems of ``candidate``: ``current`` (a deployment that passed these rules) with
    other VIPs, as a REST write makes it.  Every rule of ``deployment_problems``, but the
    underlay's reachability only for VMs whose tunnel IPs ``current`` did not have: a VM's
    reachability depends on its tunnel IP and the gateways and underlay alone (``graph``), and
    those are as they were.  Anything else changed: every rule, in full."""
    if _surroundings(candidate) != _surroundings(current):
        return deployment_problems(candidate)
    reachable = {b.tunnel_ip for vip in current.vips for b in vip.backends}
    return deployment_problems(candidate, reachable)


def _surroundings(deployment: Deployment) -> tuple:
    """All of a deployment that is not its VIPs."""
    return deployment.gateways, deployment.clients, deployment.router, deployment.underlay


def deployment_problems(
    deployment: Deployment, reachable: Collection[str] = frozenset()
) -> list[Problem]:
    """Every problem that spans fields.  ``reachable``: tunnel IPs known to be reached from
    every gateway (``change_problems``); the underlay's graph is walked for the others."""
    problems: list[Problem] = []

    def unique(items, key, label):
        owners: dict[Any, str] = {}
        for where, item in items:
            value = key(item)
            if value in owners:
                problems.append(
                    Problem(where, f"duplicate {label} {value!r} (also {owners[value]})")
                )
            else:
                owners[value] = where

    vips = [(join("vips", i), v) for i, v in enumerate(deployment.vips)]
    gateways = [(join("gateways", i), g) for i, g in enumerate(deployment.gateways)]
    clients = [(join("clients", i), c) for i, c in enumerate(deployment.clients)]
    unique([(f"{w}.name", v) for w, v in vips], lambda v: v.name, "VIP name")
    unique(
        [(f"{w}.address", v) for w, v in vips],
        lambda v: (v.address, v.port, v.protocol),
        "VIP address, port and protocol",
    )
    unique([(f"{w}.dpid", g) for w, g in gateways], lambda g: g.dpid, "datapath id")
    tunnels = [(f"{w}.tunnel_ip", g.tunnel_ip) for w, g in gateways]
    seen_backends: set[str] = set()
    for vi, vip in enumerate(deployment.vips):
        for bi, backend in enumerate(vip.backends):
            if backend.tunnel_ip not in seen_backends:  # a VM in several VIPs counts once
                seen_backends.add(backend.tunnel_ip)
                tunnels.append((f"vips[{vi}].backends[{bi}].tunnel_ip", backend.tunnel_ip))
    unique(tunnels, lambda t: t, "tunnel_ip")
    problems.extend(listener_problems(gateways))
    addresses = [
        (f"{w}.addresses[{i}]", a) for w, g in gateways for i, a in enumerate(g.addresses)
    ] + [(f"{w}.address", c.address) for w, c in clients]
    unique(addresses, lambda a: a, "address")
    # Probes and neighbour answers for a VIP come from a gateway address of its IP version.
    for where, gateway in gateways:
        versions = {ipaddress.ip_address(a).version for a in gateway.addresses}
        for vip in deployment.vips:
            if vip.ip_version not in versions:
                problems.append(
                    Problem(
                        f"{where}.addresses",
                        f"no IPv{vip.ip_version} address for VIP {vip.name!r} "
                        "(health probes are sent from one)",
                    )
                )
    problems += gateway_mode_problems(deployment)
    # Every node of the model graph needs its own name.
    names = [(f"{w}.name", g.name) for w, g in gateways] + [
        (f"{w}.name", c.name) for w, c in clients
    ]
    if deployment.router:
        names.append(("router.name", deployment.router.name))
    names += _backend_names(deployment, problems)
    before_names = len(problems)
    unique(names, lambda n: n, "name")
    # The graph needs one node per name: check reachability only when the names are sound.
    if deployment.underlay and len(problems) == before_names:
        problems.extend(reachability_problems(deployment, reachable))
    return problems


def deployment_warnings(deployment: Deployment) -> list[Problem]:
    """What is valid but unwise: ``lockstep check`` prints these and still says OK."""
    warnings = []
    for index, vip in enumerate(deployment.vips):
        if vip.second_chance != SECOND_CHANCE_OFF and (
            vip.mode == MODE_SWITCH
            or any(gateway.vip_mode == MODE_SWITCH for gateway in deployment.gateways)
        ):
            warnings.append(
                Problem(
                    join(join("vips", index), "second_chance"),
                    "switch-mode gateways do not apply second chance (the switch places "
                    "segments itself): a connection moved to one follows its current table",
                )
            )
        factor = (
            BALANCED_SLOTS_PER_BACKEND if vip.placement == PLACEMENT_PORT_BITS else BALANCE_FACTOR
        )
        wanted = factor * len(vip.backends)
        if vip.backends and vip.table_size < wanted:
            warnings.append(
                Problem(
                    join(join("vips", index), "table_size"),
                    f"{vip.table_size} is less than {factor} x {len(vip.backends)} "
                    f"backends = {wanted}: backends' shares of new flows may differ by more "
                    + (
                        "than ~3% (port-bits: 32 slots per backend or more)"
                        if vip.placement == PLACEMENT_PORT_BITS
                        else "than ~1% (Maglev's guidance: table_size > 100 x backends; a "
                        "prime such as 65537 or 655373)"
                    ),
                )
            )
    return warnings


def _backend_names(deployment: Deployment, problems: list[Problem]) -> list[tuple[str, str]]:
    """One entry per distinct VM; a VM that serves several VIPs must be described the same way."""
    first: dict[str, tuple[str, Backend]] = {}
    by_tunnel: dict[str, str] = {}
    for vi, vip in enumerate(deployment.vips):
        for bi, backend in enumerate(vip.backends):
            where = f"vips[{vi}].backends[{bi}]"
            if backend.name in first:
                other_where, other = first[backend.name]
                if (other.tunnel_ip, other.mac) != (backend.tunnel_ip, backend.mac):
                    problems.append(
                        Problem(
                            where,
                            f"backend {backend.name!r} differs from {other_where} "
                            "(same name must mean the same tunnel_ip and mac)",
                        )
                    )
                continue
            owner = by_tunnel.get(backend.tunnel_ip)
            if owner is not None and owner != backend.name:
                problems.append(
                    Problem(
                        f"{where}.tunnel_ip", f"{backend.tunnel_ip} belongs to backend {owner!r}"
                    )
                )
            first[backend.name] = (where, backend)
            by_tunnel.setdefault(backend.tunnel_ip, backend.name)
    return [(f"{where}.name", backend_name) for backend_name, (where, _) in first.items()]
