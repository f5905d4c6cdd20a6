"""The import graph of Lockstep's own code, read from the source with ``ast``: no cycles, and the
layers kept (the domain model at the bottom, the pure core above it, everything else on top).

Every import statement counts, wherever it stands: at module level, inside a function (a
deferred import still runs, only later) and under ``if TYPE_CHECKING:`` (it never runs, but it
is a dependency of the design all the same: the cycle ``topology.deployment`` <->
``topology.model`` hid behind one).  Importing ``a.b.c`` also runs ``a`` and ``a.b`` (their
``__init__``); ours are empty, so an edge to a package is counted only when a statement names the
package alone.  Scripts in folders without an ``__init__`` (``bench/``, ``mininet/``) import
their neighbours by bare name (``import report``): such a name is resolved to the neighbour.
"""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ryu_app", "topology", "lab", "bench", "mininet", "fleetsim")
FRAMEWORKS = ("os_ken", "ryu", "eventlet", "webob", "waitress")  # the core imports none

# ---- the graph ------------------------------------------------------------------------------


def our_modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``PACKAGES`` under ``root``."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def named_by(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """Every dotted name one import statement may mean, relative imports resolved: for
    ``from a.b import c`` both ``a.b`` and ``a.b.c`` (c may be a module or a name in a.b)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, base] if base else package)
    return [base, *(f"{base}.{alias.name}" for alias in node.names)]


def resolve(name: str, importer: str, modules: dict[str, Path]) -> str | None:
    """The module of ours that ``name`` is or lies in (the longest such prefix), else None.
    A bare name in a script folder (no ``__init__``) may be a neighbour of the importer."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    folder = modules[importer].parent
    if not (folder / "__init__.py").exists():
        neighbour = ".".join([*importer.split(".")[:-1], parts[0]])
        if neighbour in modules:
            return neighbour
    return None


def imports_of(module: str, modules: dict[str, Path]) -> Iterator[tuple[str, str, int]]:
    """(imported module of ours or external top-level name, kind, line) of one module; kind is
    ``ours`` or ``external``."""
    path = modules[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        names = named_by(node, module, is_package)
        targets = {resolve(name, module, modules) for name in names} - {None, module}
        # ``from a import b``: the package ``a`` stands for itself only when nothing deeper is meant
        deeper = {t for t in targets if any(o.startswith(t + ".") for o in targets)}
        for target in sorted(targets - deeper):
            yield target, "ours", node.lineno
        if not targets and not getattr(node, "level", 0):
            yield names[0].split(".")[0], "external", node.lineno


def import_graph(root: Path) -> nx.DiGraph:
    """Modules of ours as nodes; an edge per import, with the line(s) it is made on."""
    modules = our_modules(root)
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for module in modules:
        for target, kind, line in imports_of(module, modules):
            if kind == "ours":
                lines = (
                    graph.edges[module, target]["lines"] if graph.has_edge(module, target) else []
                )
                graph.add_edge(module, target, lines=[*lines, line])
    return graph


def external_imports(root: Path, module: str) -> set[str]:
    modules = our_modules(root)
    return {name for name, kind, _ in imports_of(module, modules) if kind == "external"}


def cycles(graph: nx.DiGraph) -> list[str]:
    """One cycle per tangle of modules (strongly connected component), spelled out with the
    file and line of each import, e.g. ``a -> b -> a (a.py:3, b.py:9)``, and the tangle's other
    modules."""
    found = []
    for component in nx.strongly_connected_components(graph):
        tangle = graph.subgraph(component)
        if len(component) == 1 and not any(tangle.edges):
            continue
        edges = nx.find_cycle(tangle, source=min(component))
        chain = " -> ".join([edges[0][0], *(target for _, target in edges)])
        where = ", ".join(
            f"{source.replace('.', '/')}.py:{graph.edges[source, target]['lines'][0]}"
            for source, target in edges
        )
        others = sorted(component - {source for source, _ in edges})
        found.append(
            f"{chain} ({where})" + (f"; tangled with it: {', '.join(others)}" if others else "")
        )
    return sorted(found)


def core_imports_outside_the_core(graph: nx.DiGraph) -> set[tuple[str, str]]:
    return {
        (source, target)
        for source, target in graph.edges
        if _in(source, "ryu_app.core") and not _in(target, "ryu_app.core")
    }


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


# ---- the rules --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    return import_graph(ROOT)


def test_the_graph_covers_every_package(graph):
    for package in PACKAGES:
        assert any(_in(module, package) for module in graph), package
    assert graph.has_edge("topology.deployment", "ryu_app.core.model")
    assert graph.has_edge("mininet.demo", "mininet.scenarios")  # a script's neighbour


def test_there_are_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_domain_model_imports_nothing_of_ours(graph):
    assert list(graph.successors("ryu_app.core.model")) == []


def test_the_core_imports_only_the_core(graph):
    """``ryu_app.core`` imports nothing of ``ryu_app`` outside it, nor ``topology`` or any
    other package of ours."""
    outside = core_imports_outside_the_core(graph)
    assert outside == set()


@pytest.mark.parametrize(
    "module", sorted(m for m in our_modules(ROOT) if _in(m, "ryu_app.core")), ids=str
)
def test_the_core_imports_no_framework(module):
    assert external_imports(ROOT, module) & set(FRAMEWORKS) == set()


def test_topology_uses_only_the_domain_model_of_ryu_app(graph):
    """The deployment file builds the model; the core's workings are none of its business."""
    used = {t for s, t in graph.edges if _in(s, "topology") and _in(t, "ryu_app")}
    assert used == {"ryu_app.core.model"}


# The rooms of ``ryu_app`` (docs/architecture.md) and what each may import of ours, besides
# itself: the shell composes the process on top; the API and the CLI never reach up into it.
ROOMS = {
    "ryu_app.core": {"ryu_app.core"},
    "ryu_app.api": {"ryu_app.core", "topology"},
    "ryu_app.cli": {"ryu_app.core", "topology"},
    "ryu_app.shell": {"ryu_app.core", "ryu_app.api", "topology"},
}


def room_of(module: str) -> str | None:
    return next((room for room in ROOMS if _in(module, room)), None)


def imports_across_rooms(graph: nx.DiGraph) -> set[tuple[str, str]]:
    """Edges from a room of ``ryu_app`` to a room or package of ours it may not import."""
    wrong = set()
    for source, target in graph.edges:
        room = room_of(source)
        if room is None or _in(target, room):
            continue
        if not any(_in(target, allowed) for allowed in ROOMS[room]):
            wrong.add((source, target))
    return wrong


def test_every_module_of_ryu_app_is_in_a_room():
    loose = [
        m
        for m in our_modules(ROOT)
        if _in(m, "ryu_app") and m not in ("ryu_app", "ryu_app.__main__")
    ]
    assert [m for m in loose if room_of(m) is None] == []


def test_each_room_imports_only_what_it_may(graph):
    assert imports_across_rooms(graph) == set()


def test_a_room_reaching_up_breaks_the_rule(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "ryu_app/__init__.py": "",
            "ryu_app/api/__init__.py": "",
            "ryu_app/api/views.py": "from ryu_app.shell import app\n",
            "ryu_app/shell/__init__.py": "",
            "ryu_app/shell/app.py": "from ryu_app.api import views\n",
        },
    )
    assert imports_across_rooms(import_graph(root)) == {("ryu_app.api.views", "ryu_app.shell.app")}


# ---- the machinery, on made-up trees ---------------------------------------------------------


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return root


def test_a_cycle_through_a_function_level_import_is_found_and_named(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "topology/__init__.py": "",
            "topology/a.py": "from topology import b\n",
            "topology/b.py": "def later():\n    from topology.a import thing\n",
        },
    )
    assert cycles(import_graph(root)) == [
        "topology.a -> topology.b -> topology.a (topology/a.py:1, topology/b.py:2)"
    ]


def test_an_import_under_type_checking_counts(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "topology/__init__.py": "",
            "topology/a.py": "import topology.b\n",
            "topology/b.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import Thing\n"
            ),
        },
    )
    assert len(cycles(import_graph(root))) == 1


def test_a_core_import_of_topology_breaks_the_rule(tmp_path):
    root = make_tree(
        tmp_path,
        {
            "ryu_app/__init__.py": "",
            "ryu_app/core/__init__.py": "",
            "ryu_app/core/model.py": "import ipaddress\n",
            "ryu_app/core/balancer.py": "from ryu_app.core import model\nfrom .. import ofmsg\n",
            "ryu_app/ofmsg.py": "from os_ken.ofproto import ofproto_v1_3\n",
            "topology/__init__.py": "",
            "topology/deployment.py": "from ryu_app.core.model import Vip\n",
            "mininet/demo.py": "import report\nfrom mininet.net import Mininet\n",
            "mininet/report.py": "import topology.deployment\n",
        },
    )
    graph = import_graph(root)
    assert core_imports_outside_the_core(graph) == {("ryu_app.core.balancer", "ryu_app.ofmsg")}
    assert external_imports(root, "ryu_app.ofmsg") == {"os_ken"}
    assert external_imports(root, "mininet.demo") == {"mininet"}  # the library, not the folder
    assert set(graph.edges) == {
        ("ryu_app.core.balancer", "ryu_app.core.model"),
        ("ryu_app.core.balancer", "ryu_app.ofmsg"),
        ("topology.deployment", "ryu_app.core.model"),
        ("mininet.demo", "mininet.report"),
        ("mininet.report", "topology.deployment"),
    }
    assert cycles(graph) == []
