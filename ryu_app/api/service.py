"""What operators can ask of one gateway: the operations behind the REST API.

Framework-free.  Called on the REST server's threads; what touches the core runs on the app's
event loop, handed over with ``on_loop`` (Faucet's way: state changes on one thread of
control), and only that: every hand-over is short, because while it runs no packet-in is
handled (issue 11: a deep page of the flow table once held them up for ~190 ms).

- Reads take a snapshot on the loop and render it here (``views``, ``healthview``, ``metricsview``).
- Writes (one at a time: ``_one_write_at_a_time``) are validated by the same rules as the
  deployment file (``parse_vip``, and ``change_problems`` over the would-be deployment) and
  saved to the state file here, then applied on the loop: a bad request or a state file that
  cannot be written changes nothing.  A change that needs new Maglev tables waits for them
  (``tables_ready``, at most ``TABLE_WAIT_SECONDS``) so that new flows follow it from the
  moment the caller hears back; if they are not in by then the answer is ``Accepted`` (the
  REST API's 202), never a plain success.

Side effects come in as arguments: ``apply`` (what a change of the core asks for, its
``Effects``: messages to the switch, tables to build, log lines), ``save`` (the VIP list to the
state file), ``on_loop`` and ``tables_ready`` (the app's; by default, for tests, a direct call
and no waiting).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable

from ryu_app.api import healthview, metricsview, pinview, views
from ryu_app.core.effects import Effects
from ryu_app.core.flowkey import FieldError, flow_from_fields, flow_key
from ryu_app.core.gateway import GatewayCore
from ryu_app.core.model import HASH_5TUPLE, MODE_SWITCH, PLACEMENT_PORT_BITS, Backend, Gateway, Vip
from ryu_app.core.slots import port_slot, slot_bits_text
from topology import deployment as deployment_file
from topology.network import Deployment
from topology.schema import ConfigError, Problem

LOG = logging.getLogger("lockstep.service")
MAX_PAGE = 1000
DEFAULT_PAGE = 100
# How long a change that needs new Maglev tables (tens of ms each) waits for them before it
# answers 202 instead: well inside the 5 s a ``lockstep vip`` command waits for an answer.
TABLE_WAIT_SECONDS = 3.0


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


class BadRequest(ValueError):
    """A request that names the wrong thing; ``problems`` like a ConfigError's."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.problems = [Problem(path, reason)]


@dataclasses.dataclass(frozen=True)
class Accepted:
    """A change saved and applied whose Maglev tables were still being built when the answer
    was due (the REST API answers 202 with ``body``)."""

    body: dict


def _one_write_at_a_time(method):
    """Writes read the current deployment, validate, save and apply: one at a time, so that
    none works from a deployment another is replacing."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self._writes:
            return method(self, *args, **kwargs)

    return wrapper


def _direct(function):
    return function()


class GatewayService:
    def __init__(
        self,
        core: GatewayCore,
        deployment: Deployment,
        gateway: Gateway,
        apply: Callable[[Effects], None],
        save: Callable[[tuple[Vip, ...]], None],
        on_loop: Callable[[Callable], object] = _direct,
        tables_ready: Callable[[list[str], float], bool] | None = None,
        lock=None,
    ):
        self.core = core
        self.deployment = deployment  # replaced (on the loop) by each change, never changed
        self.gateway = gateway
        self.apply = apply
        self.save = save
        self.on_loop = on_loop
        self.tables_ready = tables_ready
        self._writes = lock or threading.Lock()  # the app's suits its hub (green or not)
        self._renders = views.RenderCache()
        self._renders.warm(deployment.vips)  # the first status's digests, before serving
        self.handler_errors = lambda: 0  # the shell replaces this with its counter
        self.rest_pacing = lambda: None  # ... and this with its REST server's ``PacingStats``

    # ---- VIPs ------------------------------------------------------------------------------

    def vips(self) -> list[dict]:
        return [deployment_file.vip_to_data(v) for v in self.deployment.vips]

    def vips_page(self, params: dict[str, str]) -> dict:
        """At most ``limit`` (100 by default) VIPs in name order, those named after ``cursor``;
        ``next_cursor`` names the last one shown while more follow (else None).  Only the page
        is rendered."""
        limit = _int_param(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        after = params.get("cursor")
        rest = sorted(
            (v for v in self.deployment.vips if after is None or v.name > after),
            key=lambda v: v.name,
        )
        page, more = rest[:limit], len(rest) > limit
        return {
            "vips": [deployment_file.vip_to_data(v) for v in page],
            "next_cursor": page[-1].name if more else None,
        }

    def vip(self, name: str) -> Vip:
        for vip in self.deployment.vips:
            if vip.name == name:
                return vip
        raise NotFound(f"no VIP named {name!r}")

    @_one_write_at_a_time
    def create_vip(self, data, now: float) -> dict | Accepted:
        vip = deployment_file.parse_vip(data)
        if any(v.name == vip.name for v in self.deployment.vips):
            raise Conflict(f"VIP {vip.name!r} exists (PUT /v1/vips/{vip.name} replaces it)")
        return self._change_vip((*self.deployment.vips, vip), vip, now)

    @_one_write_at_a_time
    def replace_vip(self, name: str, data, now: float) -> dict | Accepted:
        if isinstance(data, dict) and data.get("name", name) != name:
            raise BadRequest("name", f"{data['name']!r} does not match the URL's {name!r}")
        vip = deployment_file.parse_vip({**data, "name": name} if isinstance(data, dict) else data)
        vips = [vip if v.name == name else v for v in self.deployment.vips]
        if all(v.name != name for v in self.deployment.vips):
            vips.append(vip)
        return self._change_vip(tuple(vips), vip, now)

    @_one_write_at_a_time
    def delete_vip(self, name: str, now: float) -> None:
        self.vip(name)
        vips = tuple(v for v in self.deployment.vips if v.name != name)
        self._commit(vips, lambda: self.core.remove_vip(name, now))

    # ---- backends --------------------------------------------------------------------------

    @_one_write_at_a_time
    def add_backend(self, vip_name: str, data, now: float) -> dict | Accepted:
        vip = self.vip(vip_name)
        backend = deployment_file.parse_backend(data)
        if vip.backend(backend.name):
            raise Conflict(f"VIP {vip_name!r} already has backend {backend.name!r}")
        return self._with_backends(vip, (*vip.backends, backend), now)

    @_one_write_at_a_time
    def update_backend(
        self, vip_name: str, name: str, data, now: float, merge: bool
    ) -> dict | Accepted:
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

    @_one_write_at_a_time
    def delete_backend(self, vip_name: str, name: str, now: float) -> dict | Accepted:
        vip = self.vip(vip_name)
        if vip.backend(name) is None:
            raise NotFound(f"VIP {vip_name!r} has no backend {name!r}")
        return self._with_backends(vip, tuple(b for b in vip.backends if b.name != name), now)

    def _with_backends(self, vip: Vip, backends: tuple[Backend, ...], now: float):
        changed = dataclasses.replace(vip, backends=backends)
        problems = deployment_file.vip_problems(changed, "")
        if problems:
            raise ConfigError(problems)
        vips = tuple(changed if v.name == vip.name else v for v in self.deployment.vips)
        return self._change_vip(vips, changed, now)

    # ---- applying a change -----------------------------------------------------------------

    def _change_vip(self, vips: tuple[Vip, ...], vip: Vip, now: float) -> dict | Accepted:
        self._commit(vips, lambda: self.core.set_vip(vip, now))
        data = deployment_file.vip_to_data(vip)
        if self.tables_ready is None or self.tables_ready([vip.name], TABLE_WAIT_SECONDS):
            return data
        return Accepted(
            {
                "vip": data,
                "tables_pending": [vip.name],
                "detail": (
                    f"saved and applied, but the Maglev table of VIP {vip.name} is still being "
                    f"built after {TABLE_WAIT_SECONDS:g} s: until it is in, new flows are "
                    "placed by the table the VIP had before (none for a new VIP); "
                    "GET /v1/status shows table_current true once it is in"
                ),
            }
        )

    def _commit(self, vips: tuple[Vip, ...], change: Callable[[], Effects]) -> None:
        """Validate the would-be deployment and save it here; then, on the loop, make it
        current and make ``change`` to the core (applying the Effects it returns)."""
        candidate = dataclasses.replace(self.deployment, vips=vips)
        problems = deployment_file.change_problems(self.deployment, candidate)
        if problems:
            raise ConfigError(problems)
        previous = self.deployment
        self.save(vips)  # OSError propagates: nothing has changed yet

        def apply() -> None:
            self.deployment = candidate
            self.apply(change())

        try:
            self.on_loop(apply)
        except TimeoutError:  # the loop never started it: the change did not happen
            self._save_back(previous)
            raise

    def _save_back(self, previous: Deployment) -> None:
        try:
            self.save(previous.vips)
        except OSError as error:
            LOG.error("the state file keeps a change that did not happen: %s", error)

    # ---- views (snapshot on the loop, rendered here) ---------------------------------------

    def health(self, now: float, wall: float) -> dict:
        """This gateway's own view of every backend, with its last probe."""
        snapshot = self.on_loop(lambda: healthview.health_snapshot(self.core, self.deployment.vips))
        return healthview.render_health(snapshot, self.gateway.name, now, wall)

    def lookup(self, params, now: float) -> dict:
        fields = ("src_ip", "src_port", "dst_ip", "dst_port")
        missing = [f for f in fields if not params.get(f)]
        if missing:
            raise BadRequest(missing[0], "required query parameter")
        try:
            flow = flow_from_fields(*(params[f] for f in fields), params.get("proto", "tcp"))
        except FieldError as error:
            raise BadRequest(error.field, error.reason) from None
        return self.on_loop(lambda: self._lookup(flow, now))

    def _lookup(self, flow, now: float) -> dict:
        """On the loop: a few dictionary look-ups."""
        balancer = self.core.balancer
        state = balancer.match(flow)
        if state is None:
            raise NotFound(f"no VIP serves {flow.dst_ip} port {flow.dst_port} {flow.protocol_name}")
        vip = state.vip
        answer = {"vip": vip.name, "gateway": self.gateway.name}
        if vip.placement == PLACEMENT_PORT_BITS:
            slot = port_slot(flow.src_port, vip.table_size)
            answer.update(slot=slot, slot_bits=slot_bits_text(vip.table_size))
        backend_id = balancer.flows.peek(flow_key(flow, state.vip.hash), now)
        held = balancer.held_backend(state, backend_id) if backend_id is not None else None
        if held is not None:
            return {**answer, "backend": held.name, "source": "table"}
        if vip.mode == MODE_SWITCH:  # the switch's own pin, as last read back (``pinread``)
            pinned = pinview.pinned_to(self.core, vip.name, flow_key(flow, HASH_5TUPLE))
            if pinned is not None:
                answer["pinned_to"] = pinned
        source = "slot" if vip.placement == PLACEMENT_PORT_BITS else "hash"
        return {**answer, "backend": balancer.predict(flow), "source": source}

    def flows(self, params, now: float) -> dict:
        """Counts and one page of the flow table.  Pages follow ``next_cursor`` (opaque); an
        ``offset`` (kept for older clients; with a cursor, counted from it) is located from the
        shards' sizes: either way a page costs the event loop the same, however deep it is
        (``views.flows_snapshot``)."""
        limit = _int_param(params, "limit", 100, 1, MAX_PAGE)
        offset = _int_param(params, "offset", 0, 0, 2**40)
        cursor = params.get("cursor")
        position = pin_after = None
        if cursor not in (None, ""):
            position = views.parse_cursor(cursor)
            pin_after = pinview.parse_pin_cursor(cursor)
            if position is None and pin_after is None:
                raise BadRequest("cursor", f"{cursor[:40]!r} is not a cursor from next_cursor")

        def snapshot():
            table = self.core.balancer.flows
            if pin_after is not None:  # past the controller's entries: their counts only
                start = (table.shard_count, 0)
                flows = views.flows_snapshot(self.core, start, 0, now)
            elif position is None:
                flows = views.flows_snapshot(self.core, offset, limit, now)
            elif offset:  # both: the offset counts from the cursor
                start = table.offset_of(position) + offset
                flows = views.flows_snapshot(self.core, start, limit, now)
            else:
                flows = views.flows_snapshot(self.core, position, limit, now)
            return flows, pinview.pin_view(self.core, flows.owners)

        flows, pins = self.on_loop(snapshot)
        answer = views.render_flows(flows)
        switch = pinview.switch_summary(pins, now)
        if switch is None:
            return answer
        answer["switch"] = switch
        if flows.following is None:  # the controller's entries are over: the switch's pins
            room = limit - len(flows.listed)
            rows, answer["next_cursor"] = pinview.pin_rows(pins, pin_after or b"", room)
            answer["flows"] += rows
            if room <= 0 and pin_after is None and switch["kept"]:
                answer["next_cursor"] = pinview.PIN_CURSOR
        return answer

    def status(self) -> dict:
        """Digests an operator compares across gateways: same config, same healthy sets."""
        snapshot = self.on_loop(lambda: views.status_snapshot(self.core, self.deployment.vips))
        return views.render_status(snapshot, self.gateway.name, self._renders)

    def metrics(self, server_stats=None, now: float | None = None) -> str:
        """``/metrics``: the gateway's counters and, if given, the REST server's (``now``: the
        controller's clock, for the age of what was read back from the switch)."""
        now = time.monotonic() if now is None else now
        snapshot = self.on_loop(lambda: metricsview.metrics_snapshot(self.core))
        return metricsview.render_metrics(
            snapshot, self.handler_errors(), self._renders, self.rest_pacing(), server_stats, now
        )


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
