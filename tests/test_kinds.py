"""The test kinds and guards of ``tests/kinds.py``, as pytest applies them (issue 12).

A guard skips a test whose machine lacks something and says exactly what; under CI the same
guard fails the test, so that a missing install step cannot pass for a green run.  The real
hooks are exercised by running pytest on this repository in a subprocess."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import kinds

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
MNEXEC_TEST = (
    "tests/mininet/test_lockstep_topo.py::test_underlay_bridge_keeps_its_addresses_and_neighbours"
)


def pytest_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsfE", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def environment(**changes: str | None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CI", None)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


# ---- the table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodeid", "kind", "needs"),
    [
        ("tests/mininet/test_demo.py::test_every_scenario_keeps_its_promise", "e2e", "mnexec"),
        ("tests/integration/test_datapath.py::test_x", "integration", "ovs"),
        ("tests/integration/test_ryu434.py::test_x", "integration", "ryu434"),
        ("tests/integration/test_rest_fuzz.py::test_x", "integration", None),
        ("tests/docs/test_deployment_guide.py::test_the_guide_end_to_end", "integration", "netns"),
        (MNEXEC_TEST, "integration", "mnexec"),
        ("tests/mininet/test_lockstep_topo.py::test_nodes", "unit", None),
        ("tests/ryu_app/core/test_maglev.py::test_x[1-2]", "unit", None),
    ],
)
def test_each_test_gets_the_kind_and_needs_of_the_first_place_that_holds_it(nodeid, kind, needs):
    place = kinds.place_of(nodeid)
    assert place.kind == kind
    assert (needs in place.needs) if needs else place.needs == ()


def test_a_test_named_like_a_listed_one_is_not_held_by_its_place():
    place = kinds.Place("tests/a.py::test_b", "integration")
    assert place.holds("tests/a.py::test_b") and place.holds("tests/a.py::test_b[x-1]")
    assert not place.holds("tests/a.py::test_b_and_more")
    assert not kinds.Place("tests/a.py", "e2e").holds("tests/a.pyc::test")


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def test_every_place_names_a_folder_file_or_test_that_exists():
    for place in kinds.PLACES:
        assert place.kind in kinds.KINDS, place
        assert set(place.needs) <= set(kinds.NEEDS), place
        path, _, test = place.where.partition("::")
        assert (ROOT / path).exists(), f"stale place: {place.where}"
        if test:
            assert test in defined_tests(ROOT / path), f"stale place: {place.where}"


def test_no_test_file_marks_its_kind_or_skips_itself():
    """Kinds and guards come from kinds.py alone: a skip of a test file's own would be green
    under CI too."""
    own = re.compile(
        r"pytest\.skip\(|skipif\(|importorskip\(|mark\.(" + "|".join(kinds.KINDS) + r")\b"
    )
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        if path.name in ("conftest.py", "kinds.py", "test_kinds.py"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if own.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def imported_test_files(path: Path) -> list[str]:
    """The test files (``test_*`` modules) that ``path`` imports from."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [name for name in names if name.rpartition(".")[2].startswith("test_")]


def test_lab_tests_share_helpers_through_helper_modules_not_each_other():
    """A lab test imported by another is run, read and changed as two (a helper renamed for one
    scenario breaks the other's): what they share lives in a module that is not a test file
    (``topo``, ``netlab``, ``pairhelpers``), which pytest does not collect."""
    offenders = {
        path.relative_to(ROOT).as_posix(): imported
        for path in sorted((TESTS / "integration").glob("*.py"))
        if (imported := imported_test_files(path))
    }
    assert offenders == {}


# ---- the guard ------------------------------------------------------------------------------


def fake_machine(**absent: str):
    return absent.get


def test_a_missing_need_skips_with_what_is_missing_and_fails_under_ci():
    check = fake_machine(hping3="hping3 on PATH (Debian package hping3)", root="root (uid 1000)")
    needs = ("root", "ovs", "hping3")
    assert kinds.guard(needs, ci=False, check=check) == (
        "skip",
        "needs root (uid 1000); hping3 on PATH (Debian package hping3)",
    )
    action, reason = kinds.guard(needs, ci=True, check=check)
    assert action == "fail" and "hping3 on PATH" in reason and "CI" in reason
    assert kinds.guard(("ovs",), ci=True, check=check) is None


def test_ci_is_what_ci_services_set():
    assert kinds.under_ci({"CI": "true"}) and kinds.under_ci({"CI": "1"})
    assert not kinds.under_ci({}) and not kinds.under_ci({"CI": "false"})


def test_commands_are_looked_up_on_path(monkeypatch, tmp_path):
    check = kinds.NEEDS["hping3"]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert check() == "hping3 on PATH (Debian package hping3)"
    tool = tmp_path / "hping3"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    assert check() is None


def test_the_ryu_interpreter_must_be_named_and_executable(monkeypatch, tmp_path):
    monkeypatch.delenv("LOCKSTEP_RYU_PYTHON", raising=False)
    assert "LOCKSTEP_RYU_PYTHON" in kinds.NEEDS["ryu434"]()
    monkeypatch.setenv("LOCKSTEP_RYU_PYTHON", str(tmp_path / "python"))
    assert "not an executable" in kinds.NEEDS["ryu434"]()
    monkeypatch.setenv("LOCKSTEP_RYU_PYTHON", sys.executable)
    assert kinds.NEEDS["ryu434"]() is None


# ---- in pytest, for real --------------------------------------------------------------------


def test_pytest_skips_a_guarded_test_and_under_ci_fails_it(tmp_path):
    """A test that needs mnexec, run with an empty PATH: skipped, saying so; under CI, failed
    before it starts (its fixtures are not set up either)."""
    bare = environment(PATH=str(tmp_path))
    skipped = pytest_run(MNEXEC_TEST, env=bare)
    assert skipped.returncode == 0, skipped.stdout + skipped.stderr
    assert "1 skipped" in skipped.stdout
    assert "needs mnexec on PATH (Debian package mininet)" in skipped.stdout
    failed = pytest_run(MNEXEC_TEST, env={**bare, "CI": "true"})
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "1 error" in failed.stdout and "mnexec on PATH" in failed.stdout
    assert "under CI every test must run" in failed.stdout


def test_markers_select_each_kind():
    collected = {}
    for kind in kinds.KINDS:
        result = pytest_run("--collect-only", "-m", kind, "tests/mininet", env=environment(CI=None))
        assert result.returncode == 0, result.stdout + result.stderr
        collected[kind] = {line for line in result.stdout.splitlines() if "::" in line}
    assert collected["e2e"] == {
        f"tests/mininet/test_demo.py::{name}"
        for name in (
            "test_every_scenario_keeps_its_promise",
            "test_every_scenario_keeps_its_promise_in_switch_mode",
            "test_gateways_of_both_modes_take_over_each_others_connections",
        )
    }
    assert collected["integration"] == {
        place.where for place in kinds.PLACES if place.where.startswith("tests/mininet/")
    } - {"tests/mininet/test_demo.py"}
    assert "tests/mininet/test_lockstep_topo.py::test_nodes" in collected["unit"]
    assert not collected["unit"] & (collected["integration"] | collected["e2e"])


def test_an_unregistered_marker_is_an_error(tmp_path):
    (tmp_path / "test_typo.py").write_text(
        "import pytest\n\n@pytest.mark.intgration\ndef test_x():\n    pass\n"
    )
    result = pytest_run(
        "--rootdir",
        str(ROOT),
        "-c",
        str(ROOT / "pyproject.toml"),
        str(tmp_path / "test_typo.py"),
        env=environment(),
    )
    assert result.returncode != 0
    assert "'intgration' not found in `markers` configuration option" in result.stdout
