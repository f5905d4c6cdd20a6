"""The compiled fill (``maglev_numba``) gives the plain loop's table slot for slot, for any
backends, weights, prime or power-of-two size; ``build_table`` uses it only once loaded or for
big tables, and falls back to the plain loop without numba."""

import random
import subprocess
import sys
import textwrap
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_maglev import GOLDEN, GOLDEN_WEIGHTED_251, THREE, letters

import ryu_app.core
from ryu_app.core import maglev, maglev_numba
from ryu_app.core.maglev import PERMUTATIONS, _populate, build_table, claim_schedule
from ryu_app.core.maglev_reference import reference_table
from ryu_app.core.model import PLACEMENT_HASH, PLACEMENT_PORT_BITS

PRIMES = [7, 11, 17, 101, 251, 1009, 4099, 10007]
POWERS_OF_TWO = [2, 4, 16, 256, 1024, 4096, 16384]


@pytest.fixture(autouse=True)
def fill_state(monkeypatch):
    """Each test sees (and leaves) this process's choice of fill as it found it: ``warm_up`` is
    once per process, and other tests' builds must not depend on this file's order."""
    monkeypatch.setattr(maglev, "_compiled", maglev._compiled)
    monkeypatch.setattr(maglev, "_not_compiled", maglev._not_compiled)


@pytest.fixture
def compiled(monkeypatch):
    monkeypatch.setattr(maglev, "_compiled", maglev_numba)


def both_fills(weights: dict[str, int], size: int, placement: str):
    names = sorted(weights)
    permutations = [PERMUTATIONS[placement](name, size) for name in names]
    schedule = claim_schedule([weights[name] for name in names])
    plain = _populate(permutations, schedule, size)
    return plain, maglev_numba.populate(permutations, schedule, size)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), placement=st.sampled_from([PLACEMENT_HASH, PLACEMENT_PORT_BITS]))
def test_property_compiled_fill_equals_the_plain_loop(data, placement):
    size = data.draw(st.sampled_from(PRIMES if placement == PLACEMENT_HASH else POWERS_OF_TWO))
    names = data.draw(
        st.lists(
            st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
            min_size=2,
            max_size=min(size, 60),
            unique=True,
        )
    )
    weights = {name: data.draw(st.integers(min_value=1, max_value=9)) for name in names}
    plain, compiled = both_fills(weights, size, placement)
    assert compiled.typecode == "h" and compiled.tolist() == plain


@settings(max_examples=60, deadline=None)
@given(
    weights=st.dictionaries(
        st.text(alphabet="abcdefghij0123456789-", min_size=1, max_size=8),
        st.integers(min_value=0, max_value=9),
        max_size=40,
    ),
    size=st.sampled_from(PRIMES),
)
def test_property_compiled_tables_match_the_papers_pseudocode(weights, size):
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maglev, "_compiled", maglev_numba)
        table = build_table(weights.items(), size)
    assert list(table.owners()) == reference_table(weights, size)


@pytest.mark.parametrize(
    ("count", "size", "placement"),
    [
        (100, 65537, PLACEMENT_HASH),
        (1000, 65537, PLACEMENT_HASH),
        (300, 262147, PLACEMENT_HASH),
        (100, 65536, PLACEMENT_PORT_BITS),
    ],
)
def test_big_tables_equal_the_plain_loop(count, size, placement):
    rng = random.Random(count + size)
    weights = {f"vm{i}": rng.choice([1, 1, 2, 5, 100]) for i in range(count)}
    plain, compiled = both_fills(weights, size, placement)
    assert compiled.tolist() == plain


def test_tables_of_2_to_the_15_backends_and_more_are_int_arrays():
    plain, compiled = both_fills({f"b{i}": 1 for i in range(2**15 + 5)}, 40009, PLACEMENT_HASH)
    assert compiled.typecode == "i" and compiled.tolist() == plain


@pytest.mark.parametrize("size", sorted(GOLDEN))
def test_golden_tables_through_the_compiled_fill(compiled, size):
    assert letters(build_table(THREE, size)) == GOLDEN[size]


def test_golden_weighted_table_through_the_compiled_fill(compiled):
    table = build_table([("vm-a", 1), ("vm-b", 2), ("vm-c", 3)], 251)
    assert letters(table) == GOLDEN_WEIGHTED_251


def test_big_tables_load_the_compiled_fill_and_keep_an_array(monkeypatch):
    monkeypatch.setattr(maglev, "_compiled", None)
    monkeypatch.setattr(maglev, "_not_compiled", None)
    build_table([("a", 1), ("b", 1)], 65537)
    assert maglev._compiled is None  # a default-size table alone does not load numba
    table = build_table([(f"vm{i}", 1 + i % 3) for i in range(200)], 262147)
    assert maglev._compiled is maglev_numba
    assert isinstance(table.slots, array) and table.slots.typecode == "h"
    assert table.slot_counts()["vm2"] > table.slot_counts()["vm0"]


def test_without_numba_the_plain_loop_builds_every_table(monkeypatch):
    monkeypatch.setattr(maglev, "_compiled", None)
    monkeypatch.setattr(maglev, "_not_compiled", None)
    monkeypatch.delitem(sys.modules, "ryu_app.core.maglev_numba")
    monkeypatch.delattr(ryu_app.core, "maglev_numba")  # or ``from ... import`` finds it there
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba raises ImportError
    assert maglev.warm_up().startswith("plain Python (ModuleNotFoundError")
    table = build_table([(f"vm{i}", 1) for i in range(50)], 262147)
    assert maglev._compiled is None
    permutations = [maglev.backend_permutation(name, 262147) for name in table.names]
    assert table.slots.tolist() == _populate(permutations, list(range(50)), 262147)


def test_warm_up_says_which_fill_builds_tables():
    assert maglev.warm_up() == f"compiled (numba {maglev_numba.numba.__version__})"
    assert maglev._compiled is maglev_numba


def test_no_writable_cache_compiles_in_memory():
    """numba refuses ``cache=True`` where it has nowhere to write (here: source from a string,
    as for a read-only package with no writable home); the loop is then compiled per process."""
    namespace = {}
    exec("def double(x):\n    return 2 * x\n", namespace)  # noqa: S102 - no file: no locator
    assert maglev_numba._jit(namespace["double"])(21) == 42


def test_importing_the_core_or_a_default_size_build_does_not_import_numba():
    script = textwrap.dedent(
        """
        import sys
        from ryu_app.cli import commands
        from ryu_app.core.maglev import build_table
        build_table([("vm1", 1), ("vm2", 2)], 65537)
        print("numba" in sys.modules)
        """
    )
    answer = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert answer.stdout.strip() == "False"
