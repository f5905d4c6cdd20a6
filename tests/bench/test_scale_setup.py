"""bench_scale's pure parts: the deployment (distinct tables, one shared VM, valid addresses) and
the arithmetic of its figures (quantiles, per-unit slopes, probe ticks, series counts)."""

from __future__ import annotations

from bench import bench_scale, scale_setup
from topology import deployment as deployment_file


def test_vip_addresses_skip_network_and_broadcast():
    assert scale_setup.vip_address(0) == "10.0.0.1"
    assert scale_setup.vip_address(253) == "10.0.0.254"
    assert scale_setup.vip_address(254) == "10.0.1.1"
    addresses = {scale_setup.vip_address(i) for i in range(1000)}
    assert len(addresses) == 1000
    assert not any(a.endswith((".0", ".255")) for a in addresses)


def test_every_vip_has_its_own_weights_and_the_dead_vm():
    vips = scale_setup.vips_data(250, 100)
    weight_sets = {tuple(b["weight"] for b in vip["backends"]) for vip in vips}
    assert len(weight_sets) == 250
    assert all(vip["backends"][0]["name"] == scale_setup.DEAD for vip in vips)


def test_the_deployment_is_a_valid_configuration():
    data = scale_setup.deployment(300, 5, "127.0.0.1:6653", "127.0.0.1:8080", "/tmp/s.json")
    parsed = deployment_file.parse(data)
    assert len(parsed.vips) == 300
    assert len(parsed.vips[299].backends) == 5


def test_percentile_is_nearest_rank():
    values = [float(i) for i in range(1, 101)]
    assert scale_setup.percentile(values, 0.99) == 99.0
    assert scale_setup.percentile(values, 1.0) == 100.0
    assert scale_setup.percentile([], 0.99) is None


def test_per_unit_is_the_slope_between_two_sizes():
    assert scale_setup.per_unit((500, 1_000_000), (1000, 2_000_000)) == 2000
    assert scale_setup.per_unit((10, 5), (10, 9)) is None


def test_a_burst_shows_against_a_spread():
    burst = scale_setup.tick_counts([0.0] * 100, 0.0, 1.0, 0.02)
    spread = scale_setup.tick_counts([(i + 0.5) / 100 for i in range(100)], 0.0, 1.0, 0.02)
    assert len(burst) == len(spread) == 50
    assert scale_setup.burstiness(burst)["max_per_tick"] == 100
    assert scale_setup.burstiness(spread)["max_per_tick"] == 2
    assert scale_setup.burstiness(spread)["peak_over_mean"] == 1.0


def test_series_count_skips_comments():
    text = '# HELP a x\n# TYPE a counter\na 1\nb{x="1"} 2\n\n'
    assert scale_setup.series_count(text) == 2


def test_table_shows_missing_figures_as_dashes():
    sides = {"before": {"startup_s": 12.5, "vips_paginated": False}, "after": {"startup_s": 1.25}}
    text = bench_scale.table(sides)
    assert "| (a) start-up to every table in (s) | 12.5 | 1.25 |" in text
    assert "| (c) GET /v1/vips paginated | no | - |" in text
