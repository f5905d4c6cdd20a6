"""TableBuilder: tables from a worker process equal the ones built here, a failing build hands
its error back, and the worker never outlives the controller (closed or killed)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from types import SimpleNamespace

import pytest

from ryu_app.core import maglev
from ryu_app.core.maglev import TableSpec, build_table
from ryu_app.shell.builder import TableBuilder, _serve

SPEC = TableSpec(251, (("vm1", 1), ("vm2", 2), ("vm3", 1)))


def gone(pid: int, within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_worker_builds_the_same_table_as_this_process():
    builder = TableBuilder()
    try:
        table = builder.build(SPEC)
        assert builder._process is not None and builder._process.is_alive()
        assert table == build_table(SPEC.backends, SPEC.table_size)
        assert builder.build(TableSpec(7, (("a", 1),))) == build_table(
            (("a", 1),), 7
        )  # the same worker
    finally:
        builder.close()


def test_a_build_error_comes_back_and_the_worker_stays():
    builder = TableBuilder()
    try:
        with pytest.raises(ValueError, match="prime"):
            builder.build(TableSpec(10, (("vm1", 1),)))
        pid = builder._process.pid
        assert builder.build(SPEC) == build_table(SPEC.backends, SPEC.table_size)
        assert builder._process.pid == pid and not builder.in_process
    finally:
        builder.close()


def test_close_ends_the_worker():
    builder = TableBuilder()
    builder.build(SPEC)
    pid = builder._process.pid
    builder.close()
    assert gone(pid)


def test_a_dead_worker_means_building_here_from_then_on(caplog):
    builder = TableBuilder()
    builder.build(SPEC)
    os.kill(builder._process.pid, signal.SIGKILL)
    builder._process.join(5)
    assert builder.build(SPEC) == build_table(SPEC.backends, SPEC.table_size)
    assert builder.in_process and builder._process is None
    assert "building in this one" in caplog.text


def test_in_process_builds_start_no_worker():
    builder = TableBuilder(in_process=True)
    assert builder.build(SPEC) == build_table(SPEC.backends, SPEC.table_size)
    assert builder._process is None


def test_the_worker_ends_when_the_controller_is_killed(tmp_path):
    """A controller killed with SIGKILL runs no clean-up: the worker must see its pipe close."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from ryu_app.shell.builder import TableBuilder
        from ryu_app.core.maglev import TableSpec
        builder = TableBuilder()
        builder.build({SPEC!r})
        print(builder._process.pid, flush=True)
        time.sleep(60)
        """
    )
    controller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(controller.stdout.readline())
        assert not gone(worker, within=0.2)
        controller.kill()
        controller.wait(5)
        assert gone(worker), "the worker outlived the controller"
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait(5)


@pytest.fixture
def fill_not_loaded(monkeypatch):
    """This process as if no build had loaded the compiled fill yet (and restored after)."""
    monkeypatch.setattr(maglev, "_compiled", None)
    monkeypatch.setattr(maglev, "_not_compiled", None)


class ClosedPipe:
    def recv(self):
        raise EOFError


def test_the_worker_loads_the_compiled_fill_before_its_first_build(fill_not_loaded):
    _serve(ClosedPipe())
    assert maglev._compiled is not None


def test_building_in_process_loads_the_compiled_fill_at_start(fill_not_loaded, caplog):
    caplog.set_level(logging.INFO, logger="lockstep.builder")
    TableBuilder(in_process=True).start()
    assert maglev._compiled is not None
    assert "fill: compiled (numba" in caplog.text


def test_build_many_builds_on_every_worker_in_the_order_given_and_skips_the_superseded():
    builder = TableBuilder(workers=2)
    specs = [TableSpec(251, (("vm1", 1), ("vm2", weight))) for weight in range(1, 9)]
    requests = [SimpleNamespace(spec=spec, number=n) for n, spec in enumerate(specs)]
    built, skipped, lock = {}, [], threading.Lock()

    def deliver(request, table, error):
        with lock:
            built[request.number] = (table, error)

    try:
        builder.start()
        builder.build_many(
            requests, deliver, lambda r: r.number != 3, skipped=lambda r: skipped.append(r.number)
        )
        assert len(builder._helpers) == 1 and builder._helpers[0]._process.is_alive()
    finally:
        builder.close()
    assert skipped == [3]
    assert sorted(built) == [0, 1, 2, 4, 5, 6, 7]
    for number, (table, error) in built.items():
        assert error is None and table == build_table(specs[number].backends, 251)
    assert builder._helpers == []


def test_build_many_hands_each_error_back():
    builder = TableBuilder(workers=2)
    outcomes = []
    try:
        builder.build_many(
            [SimpleNamespace(spec=TableSpec(10, (("vm1", 1),))), SimpleNamespace(spec=SPEC)],
            lambda request, table, error: outcomes.append((table is None, type(error).__name__)),
        )
    finally:
        builder.close()
    assert sorted(outcomes) == [(False, "NoneType"), (True, "ValueError")]
