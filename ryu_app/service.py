"""What operators can ask of one gateway: the operations behind the REST API.

Framework-free and run on the app's event loop (the REST server hands each call over), so it
may touch the core directly.  Side effects come in as arguments: ``send`` (OpenFlow messages to
the switch) and ``save`` (the VIP list to the state file).

Every change is validated by the same rules as the deployment file (``parse_vip`` and
``deployment_problems`` over the would-be deployment), then saved, then applied: a bad request
or a state file that cannot be written changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Callable

from ryu_app.core.flowkey import FieldError, describe_key, flow_from_fields, table_key
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.health import HealthState
from topology import deployment as deployment_file
from topology.deployment import Backend, Deployment, Gateway, Vip
from topology.schema import ConfigError, Problem

MAX_PAGE = 1000


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class BadRequest(ValueError):
    """A request that names the wrong thing; ``problems`` like a ConfigError's."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.problems = [Problem(path, reason)]


def digest(data) -> str:
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class GatewayService:
    def __init__(
        self,
        core: GatewayCore,
        deployment: Deployment,
        gateway: Gateway,
        send: Callable[[list], None],
        save: Callable[[tuple[Vip, ...]], None],
    ):
        self.core = core
        self.deployment = deployment
        self.gateway = gateway
        self.send = send
        self.save = save
        self.handler_errors = lambda: 0  # the shell replaces this with its counter

    # ---- VIPs ------------------------------------------------------------------------------

    def vips(self) -> list[dict]:
        return [deployment_file.vip_to_data(v) for v in self.deployment.vips]

    def vip(self, name: str) -> Vip:
        for vip in self.deployment.vips:
            if vip.name == name:
                return vip
        raise NotFound(f"no VIP named {name!r}")

    def create_vip(self, data, now: float) -> dict:
        vip = deployment_file.parse_vip(data)
        if any(v.name == vip.name for v in self.deployment.vips):
            raise Conflict(f"VIP {vip.name!r} exists (PUT /v1/vips/{vip.name} replaces it)")
        return self._apply((*self.deployment.vips, vip), vip, now)

    def replace_vip(self, name: str, data, now: float) -> dict:
        if isinstance(data, dict) and data.get("name", name) != name:
            raise BadRequest("name", f"{data['name']!r} does not match the URL's {name!r}")
        vip = deployment_file.parse_vip({**data, "name": name} if isinstance(data, dict) else data)
        vips = [vip if v.name == name else v for v in self.deployment.vips]
        if all(v.name != name for v in self.deployment.vips):
            vips.append(vip)
        return self._apply(tuple(vips), vip, now)

    def delete_vip(self, name: str, now: float) -> None:
        self.vip(name)
        vips = tuple(v for v in self.deployment.vips if v.name != name)
        self._commit(vips)
        self.send(self.core.remove_vip(name, now))

    # ---- backends --------------------------------------------------------------------------

    def add_backend(self, vip_name: str, data, now: float) -> dict:
        vip = self.vip(vip_name)
        backend = deployment_file.parse_backend(data)
        if vip.backend(backend.name):
            raise Conflict(f"VIP {vip_name!r} already has backend {backend.name!r}")
        return self._with_backends(vip, (*vip.backends, backend), now)

    def update_backend(self, vip_name: str, name: str, data, now: float, merge: bool) -> dict:
        """PUT (``merge`` False: the whole backend) or PATCH (only the fields given)."""
        vip = self.vip(vip_name)
        old = vip.backend(name)
        if old is None and merge:
            raise NotFound(f"VIP {vip_name!r} has no backend {name!r}")
        if not isinstance(data, dict):
            raise BadRequest("", "the body must be a JSON object")
        if data.get("name", name) != name:
            raise BadRequest("name", f"{data['name']!r} does not match the URL's {name!r}")
        base = dataclasses.asdict(old) if merge else {}
        backend = deployment_file.parse_backend({**base, **data, "name": name})
        if old is None:
            backends = (*vip.backends, backend)
        else:
            backends = tuple(backend if b.name == name else b for b in vip.backends)
        return self._with_backends(vip, backends, now)

    def delete_backend(self, vip_name: str, name: str, now: float) -> dict:
        vip = self.vip(vip_name)
        if vip.backend(name) is None:
            raise NotFound(f"VIP {vip_name!r} has no backend {name!r}")
        return self._with_backends(vip, tuple(b for b in vip.backends if b.name != name), now)

    def _with_backends(self, vip: Vip, backends: tuple[Backend, ...], now: float) -> dict:
        changed = dataclasses.replace(vip, backends=backends)
        problems = deployment_file.vip_problems(changed, "")
        if problems:
            raise ConfigError(problems)
        vips = tuple(changed if v.name == vip.name else v for v in self.deployment.vips)
        return self._apply(vips, changed, now)

    # ---- applying a change -----------------------------------------------------------------

    def _apply(self, vips: tuple[Vip, ...], vip: Vip, now: float) -> dict:
        self._commit(vips)
        self.send(self.core.set_vip(vip, now))
        return deployment_file.vip_to_data(vip)

    def _commit(self, vips: tuple[Vip, ...]) -> None:
        """Validate the would-be deployment, save it; only then is it current."""
        candidate = dataclasses.replace(self.deployment, vips=vips)
        problems = deployment_file.deployment_problems(candidate)
        if problems:
            raise ConfigError(problems)
        self.save(vips)  # OSError propagates: nothing has changed yet
        self.deployment = candidate

    # ---- views -----------------------------------------------------------------------------

    def health(self, now: float, wall: float) -> dict:
        """This gateway's own view of every backend, with its last probe."""
        balancer = self.core.balancer
        view: dict[str, list] = {}
        for vip in self.deployment.vips:
            state = balancer.vips.get(vip.name)
            rows = view[vip.name] = []
            for backend in vip.backends:
                health = self.core.prober.states.get((vip.name, backend.name))
                rows.append(
                    {
                        "backend": backend.name,
                        "healthy": bool(state and backend.name in state.healthy),
                        "weight": backend.weight,
                        **_probe_view(health, now, wall),
                    }
                )
        return {"gateway": self.gateway.name, "vips": view}

    def lookup(self, params, now: float) -> dict:
        fields = ("src_ip", "src_port", "dst_ip", "dst_port")
        missing = [f for f in fields if not params.get(f)]
        if missing:
            raise BadRequest(missing[0], "required query parameter")
        try:
            flow = flow_from_fields(*(params[f] for f in fields), params.get("proto", "tcp"))
        except FieldError as error:
            raise BadRequest(error.field, error.reason) from None
        balancer = self.core.balancer
        state = balancer.match(flow)
        if state is None:
            raise NotFound(f"no VIP serves {flow.dst_ip} port {flow.dst_port} {flow.protocol_name}")
        answer = {"vip": state.vip.name, "gateway": self.gateway.name}
        backend_id = balancer.flows.peek(table_key(flow, state.vip.hash), now)
        owner = balancer.backend_of(backend_id) if backend_id is not None else None
        if owner is not None and owner[0] == state.vip.name and owner[1].name in state.healthy:
            return {**answer, "backend": owner[1].name, "source": "table"}
        return {**answer, "backend": balancer.predict(flow), "source": "hash"}

    def flows(self, params, now: float) -> dict:
        offset = _int_param(params, "offset", 0, 0, 2**40)
        limit = _int_param(params, "limit", 100, 1, MAX_PAGE)
        balancer = self.core.balancer
        table = balancer.flows
        names = {}
        for backend_id, count in table.count_by_backend().items():
            owner = balancer.backend_of(backend_id)
            key = f"{owner[0]}/{owner[1].name}" if owner else f"gone/{backend_id}"
            names[key] = names.get(key, 0) + count
        page = []
        for key, backend_id, expires_in in itertools.islice(
            table.items(now), offset, offset + limit
        ):
            owner = balancer.backend_of(backend_id)
            page.append(
                {
                    **describe_key(key),
                    "vip": owner[0] if owner else None,
                    "backend": owner[1].name if owner else None,
                    # None: pinned until the switch reports the rule gone
                    "expires_in": None if expires_in is None else round(expires_in, 3),
                }
            )
        total = len(table)
        following = offset + len(page)
        return {
            "count": total,
            "by_backend": names,
            "counters": dataclasses.asdict(table.counters),
            "offset": offset,
            "flows": page,
            "next_offset": following if following < total and page else None,
        }

    def status(self) -> dict:
        """Digests an operator compares across gateways: same config, same healthy sets."""
        balancer = self.core.balancer
        vips = {}
        for vip in self.deployment.vips:
            state = balancer.vips.get(vip.name)
            healthy = sorted(state.healthy) if state else []
            vips[vip.name] = {
                "config_digest": digest(deployment_file.vip_to_data(vip)),
                "healthy": healthy,
                "healthy_digest": digest(healthy),
                "table_current": bool(state and state.table_key == state.wanted_key()),
            }
        return {
            "gateway": self.gateway.name,
            "config_digest": digest(sorted(self.vips(), key=lambda v: v["name"])),
            "switch_connected": self.core.ports is not None,
            "vips": vips,
        }

    def metrics(self) -> str:
        return render_metrics(self.core, self.handler_errors())


def _probe_view(health: HealthState | None, now: float, wall: float) -> dict:
    if health is None:
        return {"probing": False}
    at = health.last_result_at
    return {
        "probing": True,
        "state": health.state,
        "since": round(wall - (now - health.changed_at), 3),
        "last_result": None
        if health.last_result is None
        else ("ok" if health.last_result else "fail"),
        "last_probe_at": None if at is None else round(wall - (now - at), 3),
        "last_detail": health.last_detail,
    }


def _int_param(params, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(name, f"{raw!r} is not an integer") from None
    if not low <= value <= high:
        raise BadRequest(name, f"{value} is outside {low}..{high}")
    return value


# ---- Prometheus text exposition ---------------------------------------------------------------


def render_metrics(core: GatewayCore, handler_errors: int = 0) -> str:
    counters = core.counters
    balancer = core.balancer
    table = balancer.flows.counters

    def one(value):
        return [({}, value)]

    families = [
        ("packet_ins_total", "counter", "Packet-ins received.", one(counters.packet_ins)),
        ("flows_installed_total", "counter", "Per-flow rules installed.",
         one(counters.flows_installed)),
        ("packet_outs_total", "counter", "Packet-outs of client packets.",
         one(counters.packet_outs)),
        ("flows_removed_total", "counter", "Per-flow rules the switch expired.",
         one(counters.flows_removed)),
        ("malformed_packets_total", "counter",
         "Packet-ins dropped as not load-balanceable, by reason.",
         [({"reason": r}, n) for r, n in sorted(counters.malformed.items())]),
        ("flow_table_hits_total", "counter", "Flow-table hits.", one(table.hits)),
        ("flow_table_misses_total", "counter", "Flow-table misses.", one(table.misses)),
        ("flow_table_non_syn_misses_total", "counter",
         "Misses of TCP packets that cannot open a connection (moved flows, restarts).",
         one(table.tcp_non_syn_misses)),
        ("flow_table_evictions_total", "counter", "Entries evicted at capacity.",
         one(table.evictions)),
        ("flow_table_entries", "gauge", "Flows in this gateway's table.",
         one(len(balancer.flows))),
        ("probes_total", "counter", "Health probe results.",
         [({"result": "ok"}, core.prober.results[True]),
          ({"result": "fail"}, core.prober.results[False])]),
        ("backend_up", "gauge", "1 if this gateway considers the backend healthy.",
         [({"vip": name, "backend": b.name}, int(b.name in state.healthy))
          for name, state in sorted(balancer.vips.items()) for b in state.vip.backends]),
        ("table_rebuilds_total", "counter",
         "Maglev tables swapped in after a change of healthy set or weights.",
         one(balancer.counters.table_installs)),
        ("handler_errors_total", "counter", "Event handlers that raised (event dropped).",
         one(handler_errors)),
    ]  # fmt: skip
    lines: list[str] = []
    for name, kind, help_text, samples in families:
        lines.append(f"# HELP lockstep_{name} {help_text}")
        lines.append(f"# TYPE lockstep_{name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(
                f"lockstep_{name}{{{label_text}}} {value}" if labels else f"lockstep_{name} {value}"
            )
    return "\n".join(lines) + "\n"


def _escape(value) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
