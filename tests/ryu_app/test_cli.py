"""The ``lockstep`` command line, run as a real subprocess.

``lookup`` answers are checked against the library computed in this process, so the tool and a
gateway controller can never quietly disagree about where a flow goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from ryu_app.cli import commands as cli
from ryu_app.cli.commands import parse_backend_arg
from ryu_app.core import flowkey
from ryu_app.core.maglev import MAX_WEIGHT, build_table
from ryu_app.core.model import Vip
from topology import deployment as dep
from topology import schema

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "topology" / "examples" / "default.yaml"
EXAMPLE_ARG = "topology/examples/default.yaml"  # relative to ROOT, the subprocess's cwd
CONSOLE_SCRIPT = Path(sys.executable).parent / "lockstep"
HEADER = "src_ip,src_port,dst_ip,dst_port,proto"
WEB = ["--config", EXAMPLE_ARG, "--vip", "web"]
WEB_BACKENDS = [
    "vm1=192.168.100.11",
    "vm2=192.168.100.12:1",
    "vm3=192.168.100.13",
    "vm4=192.168.100.14:1",
]


def lockstep(*args: str, stdin: str = "", seed: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    return subprocess.run(
        [sys.executable, "-m", "ryu_app.cli", *args],
        input=stdin.encode(),
        capture_output=True,
        cwd=ROOT,
        env=env,
        timeout=300,
        check=False,
    )


def out(result: subprocess.CompletedProcess) -> list[str]:
    return result.stdout.decode().splitlines()


def err(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.decode().splitlines()


def random_rows(count: int, seed: int) -> list[str]:
    """CSV rows, mostly to the web VIP, some UDP, some IPv6, protocols spelled several ways."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        sport = rng.randrange(0, 65536)
        if rng.random() < 0.1:
            src = f"fd00:1::{rng.randrange(1, 0xFFFF):x}"
            dst = "fd00:100::80"
        else:
            src = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            dst = rng.choice(["10.0.0.100", "10.0.0.100", "10.0.0.101"])
        dport = rng.choice([80, 80, 443, rng.randrange(1, 65536)])
        proto = rng.choice(["tcp", "tcp", "udp", "6", "17", "TCP"])
        rows.append(f"{src},{sport},{dst},{dport},{proto}")
    return rows


def expected_backend(row: str, backends: list[tuple[str, int]], table_size: int, mode: str):
    flow = flowkey.flow_from_fields(*row.split(","))
    table = _table(tuple(backends), table_size)
    return table.lookup(flowkey.flow_hash(flowkey.hash_key(flow, mode)))


_TABLES: dict = {}


def _table(backends: tuple[tuple[str, int], ...], table_size: int):
    key = (backends, table_size)
    if key not in _TABLES:
        _TABLES[key] = build_table(backends, table_size)
    return _TABLES[key]


def answers(result: subprocess.CompletedProcess, rows: list[str]) -> list[str]:
    """The backend column, checking every output row echoes its input row."""
    lines = out(result)
    assert len(lines) == len(rows)
    chosen = []
    for row, line in zip(rows, lines, strict=True):
        prefix, _, backend = line.rpartition(",")
        assert prefix == row
        chosen.append(backend)
    return chosen


@pytest.fixture(scope="module")
def web() -> Vip:
    return dep.load(EXAMPLE).vip("web")


@pytest.fixture(scope="module")
def flows() -> list[str]:
    return random_rows(2000, seed=20240601)


@pytest.fixture(scope="module")
def web_answers(flows) -> list[str]:
    result = lockstep("lookup", *WEB, stdin="\n".join(flows) + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == b""
    return answers(result, flows)


# ---- check ---------------------------------------------------------------------------------------


def test_console_script_check_on_the_example():
    assert CONSOLE_SCRIPT.exists()
    result = subprocess.run(
        [str(CONSOLE_SCRIPT), "check", EXAMPLE_ARG],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout == (f"OK: {EXAMPLE_ARG}: 1 VIP(s), 4 backend(s), 2 gateway(s)\n")
    assert result.stderr == ""


def test_check_on_the_example_via_module():
    result = lockstep("check", str(EXAMPLE))
    assert result.returncode == 0
    assert out(result)[0].startswith("OK: ")
    assert "1 VIP(s), 4 backend(s), 2 gateway(s)" in out(result)[0]


def test_check_reports_every_problem_with_its_path(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("port: 80\n", 'port: "80"\n')
    text = text.replace('mac: "02:00:00:00:01:02"', 'mac: "01:00:00:00:01:02"')
    text = text.replace("mtu: 1600", "mtu: 100")
    text += "colour: blue\n"
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")

    result = lockstep("check", str(path))
    assert result.returncode == 1
    assert result.stdout == b""
    lines = err(result)
    assert lines[0] == f"{path}: 4 problem(s)"
    problems = lines[1:]
    assert len(problems) == 4
    assert all(line.startswith("  ") for line in problems)
    expected = [
        ("colour: ", "unknown key"),
        ("vips[0].port: ", "must be an integer"),
        ("vips[0].backends[1].mac: ", "multicast"),
        ("underlay.mtu: ", "must be 1280..9000"),
    ]
    for prefix, fragment in expected:
        assert any(line.strip().startswith(prefix) and fragment in line for line in problems), (
            prefix,
            problems,
        )


def test_check_reports_cross_field_problems(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8")
    text = text.replace("tunnel_ip: 192.168.100.14", "tunnel_ip: 172.16.0.14")
    text = text.replace("dpid: 0x2", "dpid: 0x1")
    path = tmp_path / "cross.yaml"
    path.write_text(text, encoding="utf-8")
    result = lockstep("check", str(path))
    assert result.returncode == 1
    lines = err(result)
    assert lines[0] == f"{path}: 2 problem(s)"
    assert "  gateways[1].dpid: duplicate datapath id 1 (also gateways[0].dpid)" in lines
    assert any(
        line.startswith("  vips[0].backends[3].tunnel_ip: VM vm4 (172.16.0.14) cannot be reached")
        for line in lines
    )


def test_check_on_a_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    result = lockstep("check", str(path))
    assert result.returncode == 1
    assert err(result) == [
        f"{path}: 1 problem(s)",
        f"  cannot read {path}: No such file or directory",
    ]


def test_check_on_invalid_yaml(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("gateways:\n  - name: gw1\n   dpid: 1\n", encoding="utf-8")
    result = lockstep("check", str(path))
    assert result.returncode == 1
    assert "is not valid YAML at line 3" in result.stderr.decode()


def test_check_warns_when_a_table_is_under_100_times_its_backends(tmp_path):
    """Maglev's guidance (table_size > 100 x backends) is a warning: the file is still OK."""
    path = tmp_path / "small.yaml"
    path.write_text(
        EXAMPLE.read_text(encoding="utf-8").replace("table_size: 65537", "table_size: 251"),
        encoding="utf-8",
    )
    result = lockstep("check", str(path))
    assert result.returncode == 0 and out(result)[0].startswith("OK: ")
    (warning,) = err(result)
    assert warning.startswith("WARNING: vips[0].table_size: 251 is less than 100 x 4 backends")


# ---- lookup: rows in, rows out -------------------------------------------------------------------


def test_lookup_header_good_rows_and_bad_rows():
    rows = [
        HEADER,  # 1
        "10.1.0.11,40000,10.0.0.100,80,tcp",  # 2
        "10.1.0.11,abc,10.0.0.100,80,tcp",  # 3: bad port
        "10.1.0.11,40001,10.0.0.100,80",  # 4: four fields
        "",  # 5: blank, skipped silently
        "10.1.0.11,40002,fd00::1,80,tcp",  # 6: mixed versions
        "10.1.0.11,40003,10.0.0.100,80,icmp",  # 7: bad protocol
        "10.1.0.300,40004,10.0.0.100,80,tcp",  # 8: bad source address
        "10.1.0.11,70000,10.0.0.100,80,tcp",  # 9: port out of range
        "10.1.0.12,40005,10.0.0.100,80,udp",  # 10
        "10.1.0.12,40006,10.0.0.100,80,tcp,extra",  # 11: six fields
    ]
    result = lockstep("lookup", *WEB, stdin="\n".join(rows) + "\n")
    assert result.returncode == 1

    lines = out(result)
    assert lines[0] == HEADER + ",backend"
    assert [line.rpartition(",")[0] for line in lines[1:]] == [rows[1], rows[9]]
    assert all(line.rpartition(",")[2] in {"vm1", "vm2", "vm3", "vm4"} for line in lines[1:])

    errors = err(result)
    assert [line.split(":")[0] for line in errors] == [
        "line 3",
        "line 4",
        "line 6",
        "line 7",
        "line 8",
        "line 9",
        "line 11",
    ]
    assert "src_port" in errors[0]
    assert "expected 5 fields" in errors[1]
    assert "got 4" in errors[1]
    assert "dst_ip" in errors[2] and "but src_ip" in errors[2]
    assert "proto" in errors[3]
    assert "src_ip" in errors[4]
    assert "outside 0..65535" in errors[5]
    assert "got 6" in errors[6]


def test_lookup_all_good_rows_exit_zero_and_crlf_is_accepted(web):
    rows = ["10.1.0.11,40000,10.0.0.100,80,tcp", "10.1.0.12,40000,10.0.0.100,80,tcp"]
    result = lockstep("lookup", *WEB, stdin=HEADER + "\r\n" + "\r\n".join(rows) + "\r\n")
    assert result.returncode == 0
    assert result.stderr == b""
    lines = out(result)
    assert lines[0] == HEADER + ",backend"
    pairs = [(b.name, b.weight) for b in web.backends]
    assert lines[1:] == [
        f"{row},{expected_backend(row, pairs, web.table_size, web.hash)}" for row in rows
    ]
    assert b"\r" not in result.stdout


def test_lookup_header_with_spaces_is_passed_through_as_written():
    header = "src_ip, src_port, dst_ip, dst_port, proto"
    result = lockstep("lookup", *WEB, stdin=header + "\n10.1.0.11,1,10.0.0.100,80,tcp\n")
    assert result.returncode == 0
    assert out(result)[0] == header + ",backend"


def test_header_only_on_the_first_line():
    result = lockstep("lookup", *WEB, stdin="10.1.0.11,1,10.0.0.100,80,tcp\n" + HEADER + "\n")
    assert result.returncode == 1
    assert len(out(result)) == 1
    assert err(result)[0].startswith("line 2: ")


def test_lookup_without_input_prints_nothing():
    result = lockstep("lookup", *WEB)
    assert result.returncode == 0
    assert result.stdout == b""
    assert result.stderr == b""


def test_lookup_matches_the_library_for_2000_random_flows(web, flows, web_answers):
    pairs = [(b.name, b.weight) for b in web.backends]
    expected = [expected_backend(row, pairs, web.table_size, web.hash) for row in flows]
    assert web_answers == expected
    assert set(web_answers) == {"vm1", "vm2", "vm3", "vm4"}


def test_down_moves_the_down_backends_flows_and_hardly_any_other(web, flows, web_answers):
    """Every vm2 flow moves to a survivor.  Maglev is near-minimal, not minimal, disruption:
    removing vm2 also hands 29 of the 65,537 slots between the survivors, so a flow of another
    backend may move -- but only if its slot changed owner in the library's tables too."""
    result = lockstep("lookup", *WEB, "--down", "vm2", stdin="\n".join(flows) + "\n")
    assert result.returncode == 0
    after = answers(result, flows)
    assert "vm2" not in after
    vm2_flows = [i for i, name in enumerate(web_answers) if name == "vm2"]
    assert len(vm2_flows) > 300  # about a quarter of 2,000
    assert {after[i] for i in vm2_flows} == {"vm1", "vm3", "vm4"}

    others = [i for i, name in enumerate(web_answers) if name != "vm2"]
    moved_others = [i for i in others if after[i] != web_answers[i]]
    assert len(moved_others) <= 0.01 * len(others)

    full = _table(tuple((b.name, b.weight) for b in web.backends), web.table_size)
    down = _table(
        tuple((b.name, b.weight) for b in web.backends if b.name != "vm2"), web.table_size
    )
    changed = {
        slot
        for slot, (old, new) in enumerate(zip(full.slots, down.slots, strict=True))
        if full.names[old] != "vm2" and full.names[old] != down.names[new]
    }
    assert 0 < len(changed) <= 0.001 * web.table_size

    def slot(i: int) -> int:
        flow = flowkey.flow_from_fields(*flows[i].split(","))
        return flowkey.flow_hash(flowkey.hash_key(flow, web.hash)) % web.table_size

    assert moved_others == [i for i in others if slot(i) in changed]


def test_down_matches_the_library(web, flows):
    result = lockstep(
        "lookup", *WEB, "--down", "vm1", "--down", "vm4", stdin="\n".join(flows) + "\n"
    )
    assert result.returncode == 0
    pairs = [(b.name, b.weight) for b in web.backends if b.name not in {"vm1", "vm4"}]
    expected = [expected_backend(row, pairs, web.table_size, web.hash) for row in flows]
    assert answers(result, flows) == expected
    assert set(expected) == {"vm2", "vm3"}


def test_all_backends_down_without_panic_leaves_the_column_empty():
    downs = [arg for vm in ("vm1", "vm2", "vm3", "vm4") for arg in ("--down", vm)]
    backends = [arg for backend in WEB_BACKENDS for arg in ("--backend", backend)]
    row = "10.1.0.11,1,10.0.0.100,80,tcp\n"
    result = lockstep("lookup", *backends, "--panic-threshold", "0", *downs, stdin=row)
    assert result.returncode == 0 and result.stderr == b""
    assert out(result) == ["10.1.0.11,1,10.0.0.100,80,tcp,"]


def test_in_panic_lookup_answers_as_the_gateways_do(web, flows):
    """Three of four down is under the example's 50% panic threshold: like every gateway in
    panic, ``lookup`` hashes over all four (``core.serving``, the one rule), and says so."""
    downs = [arg for vm in ("vm1", "vm2", "vm4") for arg in ("--down", vm)]
    result = lockstep("lookup", *WEB, *downs, stdin="\n".join(flows) + "\n")
    assert result.returncode == 0
    assert "in panic" in result.stderr.decode()
    pairs = [(b.name, b.weight) for b in web.backends]
    assert answers(result, flows) == [
        expected_backend(row, pairs, web.table_size, web.hash) for row in flows
    ]
    # With the file's threshold passed as an argument too: refused (one source of truth).
    refused = lockstep("lookup", *WEB, "--panic-threshold", "0", stdin="")
    assert refused.returncode != 0 and b"panic threshold" in refused.stderr


def test_backend_arguments_equal_the_config_vip(flows, web_answers):
    shuffled = list(reversed(WEB_BACKENDS))  # order of --backend does not matter
    args = [arg for backend in shuffled for arg in ("--backend", backend)]
    result = lockstep("lookup", *args, stdin="\n".join(flows) + "\n")
    assert result.returncode == 0
    assert answers(result, flows) == web_answers


def test_backend_arguments_with_explicit_table_size_and_hash(flows, web_answers):
    args = [arg for backend in WEB_BACKENDS for arg in ("--backend", backend)]
    result = lockstep(
        "lookup",
        *args,
        "--table-size",
        "65537",
        "--hash",
        "5-tuple",
        stdin="\n".join(flows) + "\n",
    )
    assert result.returncode == 0
    assert answers(result, flows) == web_answers


def test_other_table_size_changes_answers_as_the_library_does(flows):
    args = [arg for backend in WEB_BACKENDS for arg in ("--backend", backend)]
    result = lockstep("lookup", *args, "--table-size", "251", stdin="\n".join(flows) + "\n")
    assert result.returncode == 0
    pairs = [(f"vm{i}", 1) for i in range(1, 5)]
    assert answers(result, flows) == [
        expected_backend(row, pairs, 251, flowkey.HASH_5TUPLE) for row in flows
    ]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("vm1=192.168.100.11", ("vm1", "192.168.100.11", 1)),
        ("vm1=192.168.100.11:7", ("vm1", "192.168.100.11", 7)),
        ("vm1=192.168.100.11:0", ("vm1", "192.168.100.11", 0)),
        ("v6=[fd00::1]:2", ("v6", "fd00::1", 2)),
        ("v6=[fd00::1]", ("v6", "fd00::1", 1)),
        ("v6=fd00::1", ("v6", "fd00::1", 1)),
        ("v6=FD00:0::0001", ("v6", "fd00::1", 1)),
        (f"big=10.0.0.1:{MAX_WEIGHT}", ("big", "10.0.0.1", MAX_WEIGHT)),
    ],
)
def test_parse_backend_arg(text, parsed):
    assert parse_backend_arg(text) == parsed


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("vm1", "expected NAME=TUNNEL_IP[:WEIGHT]"),
        ("=10.0.0.1", "expected NAME=TUNNEL_IP[:WEIGHT]"),
        ("vm1=", "expected NAME=TUNNEL_IP[:WEIGHT]"),
        ("vm1=10.0.0.300", "is not an IP address"),
        ("vm1=10.0.0.1:x", "weight must be an integer"),
        ("vm1=10.0.0.1:-1", "weight must be an integer"),
        (f"vm1=10.0.0.1:{MAX_WEIGHT + 1}", "weight must be an integer"),
        ("v6=[fd00::1]:x", "weight must be an integer"),
        ("vm1=10.0.0.1:²", "weight must be an integer"),  # isdigit, but int() refuses it
        ("vm1=10.0.0.1:٣", "weight must be an integer"),  # int() takes it
        ("v6=[fd00::zz]:1", "is not an IP address"),
    ],
)
def test_parse_backend_arg_rejects(text, fragment):
    with pytest.raises(ValueError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_backend_arg(text)


def test_ipv6_tunnel_backend_form_in_a_run():
    rows = random_rows(300, seed=7)
    result = lockstep(
        "lookup",
        "--backend",
        "a=[fd00::1]:2",
        "--backend",
        "b=fd00::2",
        "--backend",
        "c=192.0.2.3:1",
        stdin="\n".join(rows) + "\n",
    )
    assert result.returncode == 0, result.stderr
    pairs = [("a", 2), ("b", 1), ("c", 1)]
    assert answers(result, rows) == [
        expected_backend(row, pairs, 65537, flowkey.HASH_5TUPLE) for row in rows
    ]


def test_weight_zero_backend_is_never_chosen(flows):
    result = lockstep(
        "lookup",
        "--backend",
        "a=10.0.0.1:0",
        "--backend",
        "b=10.0.0.2",
        "--backend",
        "c=10.0.0.3:3",
        stdin="\n".join(flows) + "\n",
    )
    assert result.returncode == 0
    chosen = answers(result, flows)
    assert "a" not in chosen
    assert set(chosen) == {"b", "c"}
    assert chosen == [
        expected_backend(row, [("b", 1), ("c", 3)], 65537, flowkey.HASH_5TUPLE) for row in flows
    ]


def test_src_ip_hash_gives_one_backend_per_client():
    clients = [f"10.1.{i // 250}.{i % 250 + 1}" for i in range(40)]
    rows = [
        f"{client},{port},10.0.0.100,{dport},{proto}"
        for client in clients
        for port, dport, proto in ((1, 80, "tcp"), (2222, 80, "tcp"), (65535, 443, "udp"))
    ]
    args = [arg for backend in WEB_BACKENDS for arg in ("--backend", backend)]
    result = lockstep("lookup", *args, "--hash", "src-ip", stdin="\n".join(rows) + "\n")
    assert result.returncode == 0
    chosen = answers(result, rows)
    per_client: dict[str, set[str]] = {}
    for row, backend in zip(rows, chosen, strict=True):
        per_client.setdefault(row.split(",")[0], set()).add(backend)
    assert all(len(backends) == 1 for backends in per_client.values())
    assert len(set(chosen)) > 1  # different clients do spread
    pairs = [(f"vm{i}", 1) for i in range(1, 5)]
    assert chosen == [expected_backend(row, pairs, 65537, flowkey.HASH_SRC_IP) for row in rows]


def test_five_tuple_hash_spreads_one_clients_ports():
    rows = [f"10.1.0.11,{port},10.0.0.100,80,tcp" for port in range(1000, 1100)]
    result = lockstep("lookup", *WEB, stdin="\n".join(rows) + "\n")
    assert len(set(answers(result, rows))) > 1


def test_output_is_identical_across_hash_seeds(flows):
    stdin = "\n".join([HEADER, *flows[:500], "bad,row"]) + "\n"
    backend_args = ["--backend", "zeta=10.0.0.9:3", "--backend", "alpha=10.0.0.1"]
    backend_args += ["--backend", "mid=10.0.0.5:2", "--backend", "omega=10.0.0.8"]
    backend_args += ["--down", "omega", "--down", "mid"]
    for args in (backend_args, [*WEB, "--down", "vm3", "--down", "vm1"]):
        first = lockstep("lookup", *args, stdin=stdin, seed="0")
        second = lockstep("lookup", *args, stdin=stdin, seed="3141592")
        assert first.returncode == second.returncode == 1  # the bad row
        assert first.stdout == second.stdout
        assert first.stderr == second.stderr
        assert len(out(first)) == 501


def test_unknown_down_names_are_listed_identically_across_hash_seeds():
    args = ["lookup", *WEB, "--down", "zz", "--down", "aa", "--down", "mm"]
    first = lockstep(*args, seed="1")
    second = lockstep(*args, seed="2")
    assert first.returncode == second.returncode == 2
    assert first.stderr == second.stderr
    assert "aa, mm, zz" in first.stderr.decode()


def test_twenty_thousand_rows(web):
    rows = random_rows(20_000, seed=99)
    result = lockstep("lookup", *WEB, stdin=HEADER + "\n" + "\n".join(rows) + "\n")
    assert result.returncode == 0
    assert result.stderr == b""
    lines = out(result)
    assert lines[0] == HEADER + ",backend"
    assert len(lines) == 20_001
    pairs = [(b.name, b.weight) for b in web.backends]
    sample = range(0, 20_000, 97)
    for i in sample:
        assert lines[i + 1] == f"{rows[i]},{expected_backend(rows[i], pairs, 65537, web.hash)}"


# ---- lookup: usage errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "give --backend NAME=TUNNEL_IP[:WEIGHT]"),
        (["--vip", "web"], "--vip needs --config FILE"),
        (["--backend", "a=10.0.0.1", "--vip", "web"], "--vip needs --config FILE"),
        (["--config", EXAMPLE_ARG], "--config needs --vip NAME"),
        ([*WEB, "--down", "vm9"], "--down names unknown backend(s): vm9"),
        (["--backend", "a=10.0.0.1", "--down", "b"], "--down names unknown backend(s): b"),
        (["--backend", "a=10.0.0.1", "--table-size", "100"], "must be prime, got 100"),
        (["--backend", "a=10.0.0.1", "--table-size", "65536"], "must be prime"),
        (["--backend", "a=10.0.0.1", "--table-size", "5"], "must be at least 7"),
        (["--backend", "a=10.0.0.1", "--table-size", "1"], "must be at least 7"),
        (["--backend", "a=10.0.0.1", "--table-size", "-7"], "must be at least 7"),
        (["--backend", "a=10.0.0.1", "--table-size", "seven"], "invalid int value"),
        (["--backend", "a"], "expected NAME=TUNNEL_IP[:WEIGHT]"),
        (["--backend", "a=10.0.0.1:x"], "weight must be an integer"),
        (["--backend", "a=10.0.0.1", "--backend", "a=10.0.0.2"], "appears twice"),
        (["--backend", "a=10.0.0.1", "--hash", "3-tuple"], "invalid choice"),
        ([*WEB, "--backend", "a=10.0.0.1"], "drop the others"),
        ([*WEB, "--hash", "src-ip"], "drop the others"),
        ([*WEB, "--table-size", "251"], "drop the others"),
        (["--config", EXAMPLE_ARG, "--vip", "api"], "no VIP named 'api' (known: web)"),
        (["--config", "does/not/exist.yaml", "--vip", "web"], "cannot read"),
    ],
)
def test_lookup_usage_errors(args, fragment):
    result = lockstep("lookup", *args, stdin="10.1.0.11,1,10.0.0.100,80,tcp\n")
    assert result.returncode == 2
    assert result.stdout == b""
    assert fragment in result.stderr.decode()


def test_lookup_with_an_invalid_config_lists_its_problems(tmp_path):
    text = EXAMPLE.read_text(encoding="utf-8").replace("table_size: 65537", "table_size: 65536")
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    result = lockstep("lookup", "--config", str(path), "--vip", "web")
    assert result.returncode == 2
    stderr = result.stderr.decode()
    assert f"{path} is not valid" in stderr
    assert "vips[0].table_size: must be prime, got 65536" in stderr


def test_table_size_zero_is_a_usage_error():
    """BUG: cli._lookup_table uses ``args.table_size or DEFAULT_TABLE_SIZE`` (and tests
    ``args.table_size`` for truthiness in the --config guard), so ``--table-size 0`` -- not a
    prime -- is silently replaced by 65537 and the lookup succeeds instead of exiting 2."""
    result = lockstep(
        "lookup",
        "--backend",
        "a=10.0.0.1",
        "--table-size",
        "0",
        stdin="10.1.0.11,1,10.0.0.1,80,tcp\n",
    )
    assert result.returncode == 2
    assert result.stdout == b""
    assert "table_size" in result.stderr.decode() or "table-size" in result.stderr.decode()


def test_no_command_is_a_usage_error():
    result = lockstep()
    assert result.returncode == 2
    assert b"usage: lockstep" in result.stderr


class _Answering:
    """A gateway that answers every call with one status and body."""

    def __init__(self, code, answer):
        self.url, self.code, self.answer = f"http://gw{code}", code, answer

    def call(self, method, path, body=None):
        return self.code, self.answer


def test_a_change_whose_tables_are_still_building_is_reported_as_such(capsys):
    accepted = {"vip": "web", "tables_pending": ["web"], "detail": "its table is being built"}
    remotes = [_Answering(202, accepted), _Answering(200, {})]
    assert cli._each(remotes, "PATCH", "/v1/vips/web/backends/vm1", {"weight": 0}) == cli.EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "http://gw202: 202 accepted, tables still being built: its table is being built",
        "http://gw200: 200 OK",
    ]


def test_lookup_checks_the_panic_threshold_with_the_deployment_files_rule(monkeypatch):
    """``--panic-threshold`` is checked by ``health.panic_threshold``'s own converter, so the
    two cannot drift apart: a narrower rule in the file's table applies to the flag too."""
    field = dep.HEALTH_FIELDS.fields["panic_threshold"]
    args = argparse.Namespace(
        config=None, vip=None, backend=["vm1=192.168.100.11"], table_size=251, hash=None,
        panic_threshold=95, down=[], placement=None,
    )  # fmt: skip
    cli._lookup_table(args)  # 0..100: accepted
    narrower = dataclasses.replace(field, convert=schema.integer(0, 90))
    monkeypatch.setitem(dep.HEALTH_FIELDS.fields, "panic_threshold", narrower)
    with pytest.raises(ValueError, match=r"^--panic-threshold must be 0\.\.90, got 95$"):
        cli._lookup_table(args)
