"""No function over ``LIMIT`` lines without a reason (issue 12): a long function is split into
named steps, or its docstring says why it is not, with the words ``Long because``.

Lines are counted from the ``def`` to the function's last line, docstring and comments
included (decorators not); nested functions count towards the function that holds them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("ryu_app", "topology", "lab", "bench", "mininet", "fleetsim")
LIMIT = 80
REASON = "long because"


def long_functions(source: str, limit: int = LIMIT) -> list[tuple[str, int, int]]:
    """(name, first line, length) of each function over ``limit`` lines whose docstring does
    not say why."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        length = node.end_lineno - node.lineno + 1
        reason = REASON in (ast.get_docstring(node) or "").lower()
        if length > limit and not reason:
            found.append((node.name, node.lineno, length))
    return found


def test_no_function_is_longer_than_the_limit_without_saying_why():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} {name}: {length} lines"
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name, line, length in long_functions(path.read_text(encoding="utf-8"))
    ]
    assert not offenders, "split into named steps, or say why in the docstring:\n" + "\n".join(
        offenders
    )


def function(name: str, lines: int, docstring: str = "") -> str:
    body = "".join(f"    x{n} = {n}\n" for n in range(lines - 1 - bool(docstring)))
    quoted = f'    """{docstring}"""\n' if docstring else ""
    return f"def {name}():\n{quoted}{body}"


def test_the_rule_counts_from_def_to_the_last_line_and_accepts_a_reason():
    assert long_functions(function("short", LIMIT)) == []
    assert long_functions(function("long", LIMIT + 1)) == [("long", 1, LIMIT + 1)]
    reasoned = function("table", LIMIT + 20, "One row per case.  Long because it is a table.")
    assert long_functions(reasoned) == []
    nested = "class A:\n" + "".join(
        f"    {line}\n" for line in function("method", LIMIT + 1).splitlines()
    )
    assert long_functions(nested) == [("method", 2, LIMIT + 1)]
