"""Every test gets its kind (``unit``, ``integration``, ``e2e``) and its guard from one table,
``tests/kinds.py``: no test file marks or skips itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import kinds

ROOT = Path(__file__).resolve().parents[1]
NEEDS = pytest.StashKey[tuple[str, ...]]()


def repository_nodeid(item: pytest.Item) -> str:
    """The test's node id from the repository's root, wherever pytest was started."""
    _, separator, rest = item.nodeid.partition("::")
    path = Path(item.path).resolve()
    if not path.is_relative_to(ROOT):
        return item.nodeid
    return path.relative_to(ROOT).as_posix() + separator + rest


def pytest_itemcollected(item: pytest.Item) -> None:
    place = kinds.place_of(repository_nodeid(item))
    item.add_marker(getattr(pytest.mark, place.kind))
    item.stash[NEEDS] = place.needs


@pytest.hookimpl(tryfirst=True)  # before its fixtures: a lab is not built for a skipped test
def pytest_runtest_setup(item: pytest.Item) -> None:
    verdict = kinds.guard(item.stash.get(NEEDS, ()), kinds.under_ci())
    if verdict is None:
        return
    action, reason = verdict
    if action == "fail":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
