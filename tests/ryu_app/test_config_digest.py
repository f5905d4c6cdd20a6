"""A VIP's configuration digest (``/v1/status``, compared by ``lockstep status``) is the same on
a gateway that knows the fields added since the first release and on one that does not, as long
as they hold their defaults: a fleet half way through an upgrade agrees."""

from __future__ import annotations

import dataclasses

from ryu_app.api.views import RenderCache, config_data, digest
from tests.ryu_app.core.rig import PROBED_VIP
from topology import deployment as deployment_file


def as_an_older_gateway_sees_it(vip) -> dict:
    data = deployment_file.vip_to_data(vip)
    del data["new_flow_rate"]
    del data["health"]["panic_threshold"]
    del data["placement"]  # issue 14
    del data["mode"]  # issue 14: never in the digest
    del data["max_pins_per_backend"]  # issue 14: per gateway, never in the digest
    del data["second_chance"]  # issue 16
    del data["second_chance_window"]  # issue 16
    return data


def test_newer_fields_at_their_defaults_leave_the_digest_as_it_was():
    assert config_data(PROBED_VIP) == as_an_older_gateway_sees_it(PROBED_VIP)
    assert RenderCache().config_digest(PROBED_VIP) == digest(
        as_an_older_gateway_sees_it(PROBED_VIP)
    )


def test_newer_fields_set_count():
    own_rate = dataclasses.replace(PROBED_VIP, new_flow_rate=500)
    panicky = dataclasses.replace(
        PROBED_VIP, health=dataclasses.replace(PROBED_VIP.health, panic_threshold=80)
    )
    by_port = dataclasses.replace(PROBED_VIP, placement="port-bits", table_size=256)
    second = dataclasses.replace(PROBED_VIP, second_chance="duplicate")  # issue 16
    vips = (PROBED_VIP, own_rate, panicky, by_port, second)
    digests = {RenderCache().config_digest(v) for v in vips}
    assert len(digests) == 5
    assert config_data(by_port)["placement"] == "port-bits"
    assert config_data(own_rate)["new_flow_rate"] == 500
    assert config_data(panicky)["health"]["panic_threshold"] == 80


def test_mode_is_left_out_of_the_digest_at_any_value():
    """A switch-mode gateway and a controller-mode one serving the same VIP (same placement)
    show one digest: the mode may differ per gateway (docs/switch-mode.md)."""
    by_port = dataclasses.replace(PROBED_VIP, placement="port-bits", table_size=256)
    in_switch = dataclasses.replace(by_port, mode="switch")
    assert "mode" not in config_data(in_switch)
    assert "mode" in deployment_file.vip_to_data(in_switch)  # the state file keeps it
    assert RenderCache().config_digest(in_switch) == RenderCache().config_digest(by_port)
