"""The flood guard as an operator sees it: ``/v1/status``'s ``flood_guard`` and ``/metrics``,
from a gateway whose switch has meters and dropped some of a flood."""

from __future__ import annotations

from ryu_app.api.guardview import GuardCollector, guard_snapshot, render_guard
from ryu_app.api.metricsview import exposition
from ryu_app.core.floodguard import GATEWAY_METER, PROBE_METER
from ryu_app.core.model import DEFAULT_NEW_FLOW_RATE
from ryu_app.shell.compat import ofproto_v1_3 as ofp
from tests.ryu_app.core.rig import GatewayRig
from tests.ryu_app.fake_oftable import raw_error, raw_meter_stats
from tests.ryu_app.promtext import value


def flooded() -> GatewayRig:
    rig = GatewayRig()
    stats = raw_meter_stats({GATEWAY_METER: 12_345, PROBE_METER: 2})
    error = raw_error(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, b"\x04\x0e" + bytes(62))
    rig.run(rig.core.on_messages([stats, error, error], 3.0))
    return rig


def test_status_says_where_the_guard_runs_and_what_it_dropped():
    view = render_guard(guard_snapshot(flooded().core))
    assert view == {
        "mode": "switch",
        "rate": DEFAULT_NEW_FLOW_RATE,
        "burst": 1000,
        "dropped_in_switch": 12_345,
        "dropped_in_controller": 0,
        "probe_answers_dropped": 2,
        "vip_budgets": {},
    }


def test_metrics_carry_the_guards_counts_and_the_switchs_errors():
    text = exposition(GuardCollector(guard_snapshot(flooded().core)))
    assert value(text, "lockstep_flood_guard_mode", mode="switch") == 1
    assert value(text, "lockstep_flood_guard_mode", mode="controller") == 0
    assert value(text, "lockstep_flood_guard_dropped_total", where="switch") == 12_345
    assert value(text, "lockstep_probe_answers_dropped_total") == 2
    code = str(ofp.OFPFMFC_TABLE_FULL)
    assert value(text, "lockstep_switch_errors_total", type="5", code=code) == 2


def test_the_status_document_has_the_guard(harness):
    status = harness.request("GET", "/v1/status").json
    assert set(status["flood_guard"]) >= {"mode", "rate", "dropped_in_switch"}
    assert status["switch_errors"] == 0
