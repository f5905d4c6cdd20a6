"""lockstep status's comparison and table, from /v1/status answers."""

from ryu_app.cli.remote import disagreements, gateway_urls, skewed_slots, status_table


def status(gateway="gw1", config="c1", healthy=("vm1", "vm2"), connected=True, vips=None):
    vips = vips if vips is not None else {"web": (config, healthy)}
    return {
        "gateway": gateway,
        "config_digest": "+".join(c for c, _ in vips.values()),
        "switch_connected": connected,
        "vips": {
            name: {"config_digest": c, "healthy": list(h), "healthy_digest": ",".join(h)}
            for name, (c, h) in vips.items()
        },
    }


def test_identical_gateways_agree():
    assert disagreements({"a": status("gw1"), "b": status("gw2")}) == []


def test_a_different_healthy_set_is_named_with_both_sets():
    problems = disagreements({"a": status("gw1"), "b": status("gw2", healthy=("vm1",))})
    assert problems == ["VIP web: healthy sets differ (a: vm1 vm2; b: vm1)"]


def test_a_different_configuration_is_flagged_overall_and_per_vip():
    problems = disagreements({"a": status(), "b": status(config="c2")})
    assert problems == ["VIP configuration differs", "VIP web: configuration differs"]


def test_a_vip_missing_on_one_gateway():
    other = status(vips={"web": ("c1", ("vm1", "vm2")), "dns": ("d", ("vm1",))})
    problems = disagreements({"a": status(), "b": other})
    assert "VIP dns: missing on a" in problems


def test_a_disconnected_switch_is_reported():
    assert disagreements({"a": status(connected=False)}) == ["a: switch not connected"]


def test_table_has_one_column_per_gateway():
    text = status_table({"http://x:1": status("gw1"), "http://y:2": status("gw2", healthy=())})
    lines = text.splitlines()
    assert lines[0].split() == ["gw1", "gw2"]
    assert lines[-1].split() == ["web", "healthy", "vm1", "vm2", "-"]


def test_urls_from_a_deployment_file_and_flags():
    urls = gateway_urls("topology/examples/default.yaml", ["10.0.0.9:8081"])
    assert urls == ["http://10.0.0.9:8081", "http://127.0.0.1:8081", "http://127.0.0.1:8082"]


def test_a_switch_mode_vips_uneven_slots_are_flagged_from_the_warning_share():
    skewed = status()
    skewed["vips"]["web"]["slots"] = {"syn_packets": 9000, "max_mean_syn_share": 5.2}
    (warning,) = skewed_slots({"a": skewed, "b": status("gw2")})
    assert warning.startswith("VIP web on a: slots: max/mean SYN share 5.2x")
    skewed["vips"]["web"]["slots"]["max_mean_syn_share"] = 3.9  # under SKEW_WARN
    assert skewed_slots({"a": skewed}) == []
    skewed["vips"]["web"]["slots"]["max_mean_syn_share"] = None  # too few SYNs to tell
    assert skewed_slots({"a": skewed}) == []
