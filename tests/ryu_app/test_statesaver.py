"""The state file's writer: REST changes at once, changed backend ids at most once per interval,
off the loop, retried after a failure; neither kind of write undoes the other."""

from __future__ import annotations

import errno
import logging

import pytest

from ryu_app.api import statefile
from ryu_app.core.balancer import Balancer
from ryu_app.shell import statesaver
from tests.ryu_app.core.test_balancer import down_and_retired, make_vip


class Disk:
    """Records each write (path, vips, ids); ``failing`` writes raise ENOSPC first."""

    def __init__(self):
        self.writes = []
        self.failing = 0

    def write(self, path, vips, ids):
        if self.failing:
            self.failing -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        self.writes.append((path, vips, ids))


def saver_for(disk: Disk, vips=None, ids=None) -> statesaver.StateSaver:
    return statesaver.StateSaver("gw1.json", vips, ids, write=disk.write)


def balancer_with_web() -> Balancer:
    balancer = Balancer()
    balancer.rebuild_now(balancer.set_vip(make_vip()))
    return balancer


def tick(saver, balancer, now: float) -> bool:
    """One health tick's look, and the worker's write if one was due (here, at once)."""
    due = saver.due(balancer, now)
    if due is not None:
        saver.write_ids(*due)
    return due is not None


def test_ids_are_written_at_start_then_only_when_they_change_at_most_once_per_interval():
    disk, balancer = Disk(), balancer_with_web()
    saver = saver_for(disk)
    assert tick(saver, balancer, 100.0)  # this run's ids: written once at start
    assert not any(tick(saver, balancer, 100.0 + t / 10) for t in range(1, 30))  # no change
    down_and_retired(balancer, "web", "vm2")
    assert not tick(saver, balancer, 100.5)  # within the interval of the last write
    down_and_retired(balancer, "web", "vm3")
    assert tick(saver, balancer, 101.0)  # both retirements: one write
    assert not tick(saver, balancer, 105.0)
    assert len(disk.writes) == 2 and saver.saves == 2
    _, vips, ids = disk.writes[-1]
    assert vips is None  # no REST change: the deployment file's VIPs stay in force
    assert ids == balancer.saved_ids()
    assert {n: s.id for n, s in ids.backends["web"].items()} == balancer.vips["web"].backend_ids


def test_no_second_write_starts_while_one_runs():
    disk, balancer = Disk(), balancer_with_web()
    saver = saver_for(disk)
    version, ids, wall = saver.due(balancer, 0.0)
    down_and_retired(balancer, "web", "vm2")
    assert saver.due(balancer, 50.0) is None  # the first is still being written
    saver.write_ids(version, ids, wall)
    assert saver.due(balancer, 50.0) is not None  # the change it did not hold


def test_a_failed_write_is_counted_logged_once_and_tried_again_an_interval_later(caplog):
    disk, balancer = Disk(), balancer_with_web()
    saver = saver_for(disk)
    disk.failing = 3
    caplog.set_level(logging.INFO, logger="lockstep.gateway")
    assert tick(saver, balancer, 10.0) and saver.failures == 1 and not disk.writes
    assert not tick(saver, balancer, 10.5)
    assert tick(saver, balancer, 11.0) and tick(saver, balancer, 12.0)
    assert saver.failures == 3 and not disk.writes
    assert tick(saver, balancer, 13.0) and len(disk.writes) == 1
    assert not tick(saver, balancer, 20.0)  # saved: nothing more to do
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot save backend ids" in line for line in lines) == 1
    assert "No space left" in lines[0] and "saved to gw1.json again" in lines[-1]


def test_rest_changes_and_id_saves_each_keep_what_the_other_wrote():
    disk, balancer = Disk(), balancer_with_web()
    saver = saver_for(disk)
    tick(saver, balancer, 0.0)
    first_ids = disk.writes[-1][2]
    vips = (make_vip(count=2),)
    saver.save_vips(vips)  # a REST change: its VIPs, the ids written last
    assert disk.writes[-1] == ("gw1.json", vips, first_ids)
    down_and_retired(balancer, "web", "vm2")
    tick(saver, balancer, 5.0)
    assert disk.writes[-1] == ("gw1.json", vips, balancer.saved_ids())  # the REST VIPs stay
    disk.failing = 1
    with pytest.raises(OSError):
        saver.save_vips(())
    tick(saver, balancer, 6.0)  # nothing changed since: nothing written
    down_and_retired(balancer, "web", "vm3")
    tick(saver, balancer, 7.0)
    assert disk.writes[-1][1] == vips  # the failed REST change is not in the file


def test_restored_state_is_what_a_rest_change_writes_before_the_first_id_save():
    disk = Disk()
    saved = balancer_with_web().saved_ids()
    saver = saver_for(disk, vips=[make_vip()], ids=saved)
    saver.save_vips(())
    assert disk.writes == [("gw1.json", (), saved)]


def test_a_start_whose_ids_did_not_change_leaves_the_file_as_it_was(tmp_path):
    """The first save of a run is its ids, mostly the ones it read: no write, no fsync."""
    path = tmp_path / "gw1.json"
    statefile.write(path, None, balancer_with_web().saved_ids())
    before = path.stat()
    restarted = statesaver.StateSaver(path, None, statefile.read_state(path).ids)
    balancer = balancer_with_web()  # the same VIP: the same ids
    assert tick(restarted, balancer, 100.0) and restarted.saves == 1
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    down_and_retired(balancer, "web", "vm2")  # a real change: written as before
    assert tick(restarted, balancer, 102.0)
    assert path.stat().st_ino != before.st_ino
    assert statefile.read_state(path).ids == balancer.saved_ids()
