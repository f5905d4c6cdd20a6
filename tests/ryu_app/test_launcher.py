"""launcher.resolve(): the deployment file, command-line overrides, the state file and the
bearer token, turned into Settings, or a ConfigError that names where the problem is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ryu_app.api import statefile
from ryu_app.core.balancer import SavedId, SavedIds
from ryu_app.core.model import Backend, Vip
from ryu_app.shell import launcher
from topology import deployment as deployment_file
from topology.schema import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "topology" / "examples" / "default.yaml"
CONFIG = deployment_file.load(EXAMPLE)
API = Vip(
    "api",
    "10.0.0.101",
    443,
    table_size=251,
    backends=(Backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),),
)


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch):
    monkeypatch.delenv("LOCKSTEP_TOKEN", raising=False)


def resolve(*extra: str):
    return launcher.resolve(launcher.parse_args(["--config", str(EXAMPLE), *extra]))


def paths(caught) -> list[str]:
    return [p.path for p in caught.value.problems]


def test_without_a_state_file_the_config_files_vips_are_used(tmp_path):
    state = tmp_path / "gw1.json"
    settings = resolve("--gateway", "gw1", "--state-file", str(state))
    assert settings.deployment == CONFIG and settings.gateway.name == "gw1"
    assert settings.state_file == state and settings.token is None
    assert not state.exists()  # reading does not create it


def test_state_file_vips_replace_the_config_files(tmp_path):
    state = tmp_path / "gw1.json"
    statefile.write(state, [API])
    settings = resolve("--gateway", "gw1", "--state-file", str(state))
    assert settings.deployment.vips == (API,)
    assert settings.deployment.gateways == CONFIG.gateways  # only the VIPs come from it


def test_saved_backend_ids_reach_the_app_with_or_without_saved_vips(tmp_path):
    state = tmp_path / "gw1.json"
    ids = SavedIds({"api": {"vm1": SavedId(4, "192.168.100.11", "02:00:00:00:01:01")}}, 5)
    statefile.write(state, None, ids)  # no REST change: the config file's VIPs hold
    settings = resolve("--gateway", "gw1", "--state-file", str(state))
    assert settings.deployment == CONFIG and settings.saved_ids == ids
    assert not settings.vips_saved
    statefile.write(state, [API], ids)
    settings = resolve("--gateway", "gw1", "--state-file", str(state))
    assert settings.deployment.vips == (API,) and settings.saved_ids == ids
    assert settings.vips_saved
    assert resolve("--gateway", "gw1", "--state-file", str(tmp_path / "none")).saved_ids is None


def test_an_empty_state_file_means_no_vips(tmp_path):
    state = tmp_path / "gw1.json"
    statefile.write(state, [])
    assert resolve("--gateway", "gw1", "--state-file", str(state)).deployment.vips == ()


def test_without_state_file_option_the_default_path_is_read(tmp_path, monkeypatch):
    default = tmp_path / "default-gw2.json"
    statefile.write(default, [API])
    monkeypatch.setattr(statefile, "default_path", lambda name: tmp_path / f"default-{name}.json")
    settings = resolve("--gateway", "gw2")
    assert settings.state_file == default and settings.deployment.vips == (API,)


@pytest.mark.parametrize(
    ("content", "inner"),
    [
        ("{broken", ""),
        ('{"version": 9, "vips": []}', "version"),
        (
            '{"version": 1, "vips": [{"name": "x", "address": "10.0.0.9", "port": "80"}]}',
            "vips[0].port",
        ),
    ],
    ids=["not-json", "version", "bad-vip"],
)
def test_a_bad_state_file_is_a_config_error_about_the_state_file(tmp_path, content, inner):
    state = tmp_path / "gw1.json"
    state.write_text(content)
    with pytest.raises(ConfigError) as caught:
        resolve("--gateway", "gw1", "--state-file", str(state))
    expected = f"state file {state}: {inner}" if inner else f"state file {state}"
    assert paths(caught) == [expected]


def test_state_file_vips_the_deployment_cannot_serve_are_refused(tmp_path):
    state = tmp_path / "gw1.json"
    statefile.write(state, [Vip("v6", "fd00:100::80", 80, table_size=251)])
    with pytest.raises(ConfigError) as caught:
        resolve("--gateway", "gw1", "--state-file", str(state))
    assert all(p.startswith(f"state file {state}: gateways[") for p in paths(caught))
    assert len(paths(caught)) == 2  # both gateways lack an IPv6 address


def test_token_file_is_read_and_stripped(tmp_path):
    token = tmp_path / "token"
    token.write_text("  s3cret\n")
    settings = resolve(
        "--gateway", "gw1", "--state-file", str(tmp_path / "s"), "--token-file", str(token)
    )
    assert settings.token == "s3cret"


@pytest.mark.parametrize("content", [None, "", " \n\t\n"], ids=["missing", "empty", "blank"])
def test_token_file_missing_or_empty_is_a_config_error(tmp_path, content):
    token = tmp_path / "token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(ConfigError) as caught:
        resolve("--gateway", "gw1", "--state-file", str(tmp_path / "s"), "--token-file", str(token))
    assert paths(caught) == ["--token-file"]


def test_token_from_the_environment_when_there_is_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCKSTEP_TOKEN", "from-env")
    assert resolve("--gateway", "gw1", "--state-file", str(tmp_path / "s")).token == "from-env"
    monkeypatch.setenv("LOCKSTEP_TOKEN", "")
    assert resolve("--gateway", "gw1", "--state-file", str(tmp_path / "s")).token is None


def test_listen_overrides_and_their_errors(tmp_path):
    state = str(tmp_path / "s")
    settings = resolve("--gateway", "gw1", "--state-file", state, "--rest", "0.0.0.0:9000")
    assert settings.gateway.rest == ("0.0.0.0", 9000)
    assert settings.gateway.openflow == CONFIG.gateway("gw1").openflow
    for flag in ("--rest", "--openflow"):
        with pytest.raises(ConfigError) as caught:
            resolve("--gateway", "gw1", "--state-file", state, flag, "nowhere")
        assert paths(caught) == [flag]


def test_unknown_gateway_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        resolve("--gateway", "gw9", "--state-file", str(tmp_path / "s"))
    assert paths(caught) == ["--gateway"] and "gw1" in str(caught.value)


def test_main_reports_config_problems_and_exits_2(tmp_path, capsys):
    state = tmp_path / "gw1.json"
    state.write_text(json.dumps({"version": 3}))
    code = launcher.main(["--config", str(EXAMPLE), "--gateway", "gw1", "--state-file", str(state)])
    assert code == launcher.EXIT_CONFIG
    err = capsys.readouterr().err
    assert "1 problem(s)" in err and f"state file {state}: version" in err
