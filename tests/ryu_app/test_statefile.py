"""The state file: atomic writes, exact round trips, and key-naming errors when it is bad."""

from __future__ import annotations

import dataclasses
import errno
import json
import os

import pytest

from ryu_app.api import statefile
from ryu_app.core.balancer import SavedId, SavedIds
from ryu_app.core.maglev import table_spec
from ryu_app.core.model import Backend, HealthCheck, Vip
from ryu_app.core.secondchance import KeptTable
from topology import deployment as deployment_file
from topology.deployment import vip_to_data
from topology.schema import ConfigError

VIPS = (
    Vip(
        "web",
        "10.0.0.100",
        80,
        health=HealthCheck(type="http", path="/healthz", interval=1.0, timeout=0.5),
        backends=(
            Backend("vm1", "192.168.100.11", "02:00:00:00:01:01"),
            Backend("vm2", "192.168.100.12", "02:00:00:00:01:02", weight=0),
        ),
    ),
    Vip(
        "dns6",
        "fd00:100::53",
        53,
        protocol="udp",
        hash="src-ip",
        table_size=251,
        idle_timeout=30,
        vni=200,
        health=HealthCheck(type="tcp", port=5353, rise=1, fall=5),
        backends=(Backend("vm3", "192.168.100.13", "02:00:00:00:01:03", weight=7),),
    ),
)


def problems(caught) -> list[tuple[str, str]]:
    return [(p.path, p.reason) for p in caught.value.problems]


def test_write_then_read_gives_the_same_vips(tmp_path):
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS)
    assert statefile.read(path) == list(VIPS)
    data = json.loads(path.read_text())
    assert data["version"] == statefile.FORMAT_VERSION and len(data["vips"]) == 2
    assert os.listdir(tmp_path) == ["gw1.json"]  # no temporary file left


def test_write_replaces_and_creates_the_folder(tmp_path):
    path = tmp_path / "var" / "lib" / "gw1.json"
    statefile.write(path, VIPS)
    statefile.write(path, VIPS[:1])
    assert statefile.read(path) == [VIPS[0]]
    statefile.write(path, ())
    assert statefile.read(path) == []
    assert os.listdir(path.parent) == ["gw1.json"]


def test_a_failed_write_leaves_the_old_file_whole_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS)
    old = path.read_bytes()

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)  # the data never reached the disk
    with pytest.raises(OSError):
        statefile.write(path, VIPS[:1])
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["gw1.json"]


def test_a_folder_that_cannot_be_synced_does_not_report_a_change_as_failed(tmp_path, monkeypatch):
    """Once the rename is done the change has happened: raising then would make the caller
    report "nothing changed" while the file holds the change."""
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS)
    real_fsync = os.fsync

    def folder_fsync_fails(fd):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", folder_fsync_fails)
    statefile.write(path, VIPS[:1])
    assert statefile.read(path) == list(VIPS[:1])


def test_a_target_that_cannot_be_replaced_fails_cleanly(tmp_path):
    path = tmp_path / "gw1.json"
    path.mkdir()  # a directory where the file should be: rename() cannot replace it
    (path / "keep").write_text("x")
    with pytest.raises(OSError):
        statefile.write(path, VIPS)
    assert (path / "keep").read_text() == "x"
    assert sorted(os.listdir(tmp_path)) == ["gw1.json"]


def test_reading_a_missing_file_is_none(tmp_path):
    assert statefile.read(tmp_path / "nothing.json") is None


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("{not json", "", "is not JSON"),
        ("", "", "is not JSON"),
        ('{"version": 3, "vips": []}', "version", "expected version 1 or 2"),
        ('{"vips": []}', "version", "expected version 1 or 2"),
        ("[]", "version", "expected version 1 or 2"),
        ('{"version": 1}', "vips", "must be a list"),
        ('{"version": 1, "vips": {}}', "vips", "must be a list"),
    ],
)
def test_a_bad_file_is_a_config_error_naming_the_key(tmp_path, text, path, words):
    target = tmp_path / "gw1.json"
    target.write_text(text)
    with pytest.raises(ConfigError) as caught:
        statefile.read(target)
    ((where, reason),) = problems(caught)
    assert where == path and words in reason and str(target) in reason


def test_bad_vips_are_each_named(tmp_path):
    target = tmp_path / "gw1.json"
    statefile.write(target, VIPS)
    good = json.loads(target.read_text())
    good["vips"][0]["port"] = "80"
    good["vips"][1]["backends"][0]["colour"] = "red"
    target.write_text(json.dumps(good))
    with pytest.raises(ConfigError) as caught:
        statefile.read(target)
    assert [where for where, _ in problems(caught)] == [
        "vips[0].port",
        "vips[1].backends[0].colour",
    ]


def test_a_file_that_is_not_text_is_a_config_error(tmp_path):
    target = tmp_path / "gw1.json"
    target.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError) as caught:
        statefile.read(target)
    assert "cannot read state file" in problems(caught)[0][1]


def test_default_path_is_per_gateway():
    assert str(statefile.default_path("gw2")) == "/var/lib/lockstep/gw2.json"


# ---- temporaries left by a save that was killed (issue 11, finding 8) -------------------------


def test_stale_temporaries_of_the_state_file_are_removed_and_nothing_else(tmp_path):
    state = tmp_path / "gw10.json"
    statefile.write(state, [])
    stale = [tmp_path / ".gw10.json.4242.tmp", tmp_path / ".gw10.json.1.tmp"]
    others = [
        tmp_path / ".gw1.json.4242.tmp",  # another gateway's
        tmp_path / ".gw10.json.abc.tmp",
        tmp_path / ".gw10.json.4242.tmp.keep",
        tmp_path / "gw10.json.4242.tmp",
        tmp_path / "notes.txt",
    ]
    for path in stale + others:
        path.write_text("{")
    assert sorted(statefile.remove_stale_temporaries(state)) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others) and state.exists()
    assert statefile.remove_stale_temporaries(state) == []


def test_no_folder_means_nothing_to_remove(tmp_path):
    assert statefile.remove_stale_temporaries(tmp_path / "missing" / "gw1.json") == []


def test_the_file_is_the_json_of_the_vips_one_per_line_rewritten_from_the_cache(tmp_path):
    path = tmp_path / "state.json"
    statefile.write(path, VIPS)
    lines = path.read_text().splitlines()
    assert len(lines) == len(VIPS) + 2  # the opening, one line per VIP, the closing
    expected = {"version": statefile.FORMAT_VERSION, "vips": [vip_to_data(v) for v in VIPS]}
    assert json.loads(path.read_text()) == expected
    changed = dataclasses.replace(VIPS[0], port=VIPS[0].port + 1)
    statefile.write(path, (changed, *VIPS[1:]))
    assert json.loads(path.read_text())["vips"][0]["port"] == VIPS[0].port + 1
    assert statefile.read(path)[0] == changed
    assert {id(v) for v, _ in statefile._fragments.values()} == {id(changed)} | {
        id(v) for v in VIPS[1:]
    }


IDS = SavedIds(
    {
        "web": {
            "vm1": SavedId(3, "192.168.100.11", "02:00:00:00:01:01"),
            "vm2": SavedId(9, "192.168.100.12", "02:00:00:00:01:02"),
        },
        "dns6": {"vm3": SavedId(2, "192.168.100.13", "02:00:00:00:01:03")},
    },
    next_id=10,
)


def test_version_2_keeps_vips_and_backend_ids_exactly(tmp_path):
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS, IDS)
    assert statefile.read_state(path) == statefile.SavedState(list(VIPS), IDS)
    data = json.loads(path.read_text())
    assert data["version"] == 2 and data["next_backend_id"] == 10
    assert data["backend_ids"]["web"]["vm2"] == {
        "id": 9,
        "tunnel_ip": "192.168.100.12",
        "mac": "02:00:00:00:01:02",
    }


def test_ids_without_rest_changes_leave_the_deployment_files_vips_in_force(tmp_path):
    path = tmp_path / "gw1.json"
    statefile.write(path, None, IDS)
    assert "vips" not in json.loads(path.read_text())
    assert statefile.read_state(path) == statefile.SavedState(None, IDS)
    assert statefile.read(path) is None  # no VIPs saved: the deployment file's hold
    statefile.write(path, (), IDS)  # every VIP removed through REST is not "none saved"
    assert statefile.read_state(path).vips == []


def test_a_version_1_file_is_read_with_no_ids(tmp_path):
    path = tmp_path / "gw1.json"
    vips = [deployment_file.vip_to_data(v) for v in VIPS]
    path.write_text(json.dumps({"version": 1, "vips": vips}))
    assert statefile.read_state(path) == statefile.SavedState(list(VIPS), None)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d.update(next_backend_id=0), "next_backend_id"),
        (lambda d: d.pop("next_backend_id"), "next_backend_id"),
        (lambda d: d.update(backend_ids=[]), "backend_ids"),
        (lambda d: d["backend_ids"]["web"]["vm2"].update(id=3), "backend_ids.web.vm2"),
        (lambda d: d["backend_ids"]["web"]["vm1"].update(id=True), "backend_ids.web.vm1"),
        (lambda d: d["backend_ids"]["web"]["vm1"].update(id=1 << 20), "backend_ids.web.vm1"),
        (lambda d: d["backend_ids"]["web"]["vm1"].pop("mac"), "backend_ids.web.vm1"),
        (lambda d: d["backend_ids"]["web"].update(vm1=3), "backend_ids.web.vm1"),
    ],
)
def test_bad_ids_are_a_config_error_naming_the_key(tmp_path, change, key):
    """A controller that took such ids would attribute the switch's rules wrongly."""
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS, IDS)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        statefile.read_state(path)
    assert [where for where, _ in problems(caught)] == [key]


def fresh_copy(ids: SavedIds) -> SavedIds:
    """Equal ids in new objects, as the saver makes for every save."""
    return SavedIds({vip: dict(backends) for vip, backends in ids.backends.items()}, ids.next_id)


def test_the_ids_are_the_json_of_the_whole_joined_from_each_vips_cached_text(tmp_path):
    reference = {
        vip: {name: saved._asdict() for name, saved in backends.items()}
        for vip, backends in IDS.backends.items()
    }
    expected = f'"backend_ids": {json.dumps(reference, sort_keys=True)},'
    for _ in range(2):  # rendered, then from the cache: the same bytes
        assert expected in statefile.file_text(None, fresh_copy(IDS))


def test_a_save_renders_again_only_the_ids_of_the_vips_that_changed(tmp_path, monkeypatch):
    """At 1,000 VIPs x 100 backends rendering every id took ~145 ms of the worker per save."""
    monkeypatch.setattr(statefile, "_id_fragments", {}, raising=False)  # (other tests' left)
    rendered = []
    as_dict = SavedId._asdict
    monkeypatch.setattr(SavedId, "_asdict", lambda saved: rendered.append(saved) or as_dict(saved))
    path = tmp_path / "gw1.json"
    statefile.write(path, None, IDS)
    assert len(rendered) == 3
    rendered.clear()
    statefile.write(path, None, fresh_copy(IDS))
    assert rendered == []
    moved = SavedId(4, "192.168.100.14", "02:00:00:00:01:04")
    changed = SavedIds({**fresh_copy(IDS).backends, "dns6": {"vm3": moved}}, next_id=10)
    statefile.write(path, None, changed)
    assert rendered == [moved]
    assert statefile.read_state(path).ids == changed


def test_the_ids_cache_follows_the_content_not_the_objects(tmp_path):
    """A dict changed after it was written, and a VIP gone then back with other ids, are
    written as they are now."""
    path = tmp_path / "gw1.json"
    ids = fresh_copy(IDS)
    statefile.write(path, None, ids)
    ids.backends["web"]["vm1"] = SavedId(5, "192.168.100.11", "02:00:00:00:01:01")
    statefile.write(path, None, ids)
    assert statefile.read_state(path).ids.backends["web"]["vm1"].id == 5
    statefile.write(path, None, SavedIds({"web": IDS.backends["web"]}, next_id=10))
    assert set(statefile._id_fragments) == {"web"}  # a VIP no longer written is dropped
    back = SavedIds({**IDS.backends, "dns6": {"vm3": SavedId(1, "192.168.100.13", "m")}}, 10)
    statefile.write(path, None, back)
    assert statefile.read_state(path).ids == back


def test_a_file_that_holds_the_content_already_is_not_written_again(tmp_path, monkeypatch):
    path = tmp_path / "gw1.json"
    assert statefile.write(path, VIPS, IDS) is True
    before = path.stat()

    def no_write(*args):
        raise AssertionError("written again")

    monkeypatch.setattr(statefile.os, "replace", no_write)
    monkeypatch.setattr(statefile.os, "fsync", no_write)
    assert statefile.write(path, tuple(VIPS), fresh_copy(IDS)) is False
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text.replace('"id": 9', '"id": 8'),  # the same size
        lambda text: text[:-1],
        lambda text: "",
    ],
    ids=["same-size", "shorter", "empty"],
)
def test_a_file_that_differs_in_any_byte_is_written(tmp_path, damage):
    path = tmp_path / "gw1.json"
    statefile.write(path, VIPS, IDS)
    whole = path.read_text()
    path.write_text(damage(whole))
    assert path.read_text() != whole
    assert statefile.write(path, VIPS, IDS) is True
    assert path.read_text() == whole
    path.unlink()
    assert statefile.write(path, VIPS, IDS) is True and path.read_text() == whole


def test_second_chance_history_round_trips_and_a_bad_entry_is_named(tmp_path):
    spec = table_spec(251, [("vm1", 1), ("vm2", 2)], "hash")
    history = {
        "web": (
            KeptTable(None, spec, ("hash", "5-tuple", 251)),
            KeptTable(1_000_010.5, spec, ("hash", "5-tuple", 251)),
        )
    }
    ids = SavedIds({"web": {}}, 7, history)
    path = tmp_path / "state.json"
    assert statefile.write(path, None, ids)
    assert statefile.read_state(path).ids == ids
    data = json.loads(path.read_text())
    data["second_chance_history"]["web"][1]["backends"] = [["vm1", "one"]]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as caught:
        statefile.read_state(path)
    assert caught.value.problems[0].path == "second_chance_history.web[1]"
