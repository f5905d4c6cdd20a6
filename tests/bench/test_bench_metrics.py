"""The scrape-cost benchmark on a small gateway: it measures what it says it measures."""

from __future__ import annotations

import json

from bench import bench_metrics


def test_a_small_run_counts_one_backend_series_per_configured_backend(capsys):
    assert (
        bench_metrics.main(["--vips", "3", "--backends", "4", "--flows", "10", "--repeat", "2"])
        == 0
    )
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # 12 lockstep_backend_up series, 3 probe results, 3 lockstep_vip_panic series, 14 other
    # unlabelled series; the flood guard's 7 (3 modes, its rate, 2 places of drop, probe
    # answers dropped); per VIP its configured and healthy backends (issue 15), the limit
    # of per-backend series and how many were omitted; switch mode's pin reads (issue 14: their
    # age, truncated, 4 outcomes, series omitted); second chance's 4 (issue 16: 2 kinds,
    # flows, evictions).
    assert figures["series"] == 3 * 4 + 3 + 3 + 14 + 7 + 2 * 3 + 2 + 7 + 4
    assert figures["flow_entries"] == 10
    for name in ("snapshot_ms", "render_first_ms", "render_ms", "request_ms"):
        assert figures[name] > 0, name
