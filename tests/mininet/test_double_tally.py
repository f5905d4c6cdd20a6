"""The double-change scenario's bookkeeping (``mininet/double_tally.py``) on made-up runs: which
downloads count as broken, which as lost with a failed VM, what is judged, the table's rows."""

from __future__ import annotations

from double_tally import OFF, ON, TABLE_COLUMNS, Run, table_rows, verdict

MB = 1_000_000


def done(ok: bool, received: int = 2 * MB, error: str | None = None) -> dict:
    return {"ok": ok, "bytes": received, "error": None if ok else error or "ECONNRESET"}


def drain_run(setting: str, broken_ports=(1, 2)) -> Run:
    placed = {1: "vm1", 2: "vm1", 3: "vm2", 4: "vm3"}
    finals = {p: done(p not in broken_ports, MB if p in broken_ports else 2 * MB) for p in placed}
    return Run("drain", setting, "vm1", placed, finals, expected_bytes=2 * MB, moved_placed=4)


def test_downloads_that_did_not_complete_are_broken_where_they_were_placed():
    run = drain_run(OFF)
    assert run.started == 4 and run.completed == [3, 4]
    assert run.broken == [1, 2] and run.lost_with_vm == []
    assert run.broken_on() == {"vm1": 2}
    assert run.errors() == {"ECONNRESET": 2}
    assert run.bytes_received == 6 * MB
    assert run.touched()  # the drained VM held downloads


def test_the_failed_vms_downloads_are_lost_with_it_not_broken():
    placed = {1: "vm2", 2: "vm2", 3: "vm1", 4: "vm3"}
    finals = {1: done(False, error="short read"), 2: done(False), 3: done(True), 4: done(False)}
    run = Run("failure", ON, "vm2", placed, finals, expected_bytes=2 * MB)
    assert run.failed_vm == "vm2"
    assert run.lost_with_vm == [1, 2] and run.broken == [4]
    assert run.errors() == {"short read": 1, "ECONNRESET": 2}
    ok, detail = verdict(run)
    assert ok is False and "1 broken of 4 (2 lost with vm2)" in detail


def test_only_the_failure_case_has_a_failed_vm():
    run = drain_run(OFF)
    assert run.changed_vm == "vm1" and run.failed_vm is None
    assert run.lost_with_vm == []


def test_on_is_judged_off_is_reported():
    assert verdict(drain_run(ON, broken_ports=()))[0] is True
    assert verdict(drain_run(ON))[0] is False
    ok, detail = verdict(drain_run(OFF))
    assert ok is None and "2 broken of 4" in detail and "{'vm1': 2}" in detail


def test_a_download_without_a_result_is_impossible_even_off():
    run = drain_run(OFF, broken_ports=())
    del run.finals[3]
    ok, detail = verdict(run)
    assert ok is False and detail.startswith("1 downloads without a result")
    assert run.broken == [3]  # and it counts as broken


def test_an_add_shows_something_only_if_the_new_vm_held_nothing_yet():
    placed = {1: "vm1", 2: "vm2", 3: "vm3"}
    assert Run("add", OFF, "vm4", placed).touched()
    assert not Run("add", OFF, "vm4", {**placed, 4: "vm4"}).touched()
    assert not Run("add", OFF, "vm4", {**placed, 4: None}).touched()  # one never seen placed
    assert not Run("drain", OFF, "vm4", placed).touched()  # drained a VM that held none


def test_the_table_has_a_row_per_run_cases_in_order_off_before_on():
    failure = Run("failure", OFF, "vm2", {1: "vm2", 2: "vm1"}, {1: done(False), 2: done(True)},
                  expected_bytes=2 * MB)  # fmt: skip
    rows = table_rows([drain_run(ON, ()), failure, drain_run(OFF)])
    assert [row[:2] for row in rows] == [
        ["drain+move", "off"],
        ["drain+move", "on"],
        ["fail+restart", "off"],
    ]
    assert all(len(row) == len(TABLE_COLUMNS) for row in rows)
    drain_off = dict(zip(TABLE_COLUMNS, rows[0], strict=True))
    assert drain_off == {
        "case": "drain+move", "second chance": "off", "started": "4", "done": "2",
        "broken": "2", "lost w/ VM": "-", "MB": "6.0/8.0", "broken on": "vm1 x2",
    }  # fmt: skip
    assert dict(zip(TABLE_COLUMNS, rows[2], strict=True))["lost w/ VM"] == "1"


def test_a_restarted_gateway_that_lost_the_setting_fails_the_on_run():
    run = drain_run(ON, broken_ports=())
    assert verdict(run)[0] is True
    run.details["second_chance_after_restart"] = "off"
    ok, detail = verdict(run)
    assert ok is False and "after the restart" in detail
