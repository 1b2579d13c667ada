"""The rooms import only downwards: a low room (settings and models, pure identity) never reaches up into the
workers, the sinks, the HTTP layer or the composition root. Every import counts, also those inside functions
and under TYPE_CHECKING, because each one is a dependency a newcomer has to follow."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Lowest first; a module may import its own room and the rooms before it.
ROOMS = ("schemas", "identity", "streams", "sinks", "api", "cdp")
NOT_PRODUCTION = ("bench", "tests")


def imported_rooms(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every absolute import in one file."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def upward_imports() -> list[str]:
    offences = []
    for rank, room in enumerate(ROOMS):
        forbidden = set(ROOMS[rank + 1 :]) | set(NOT_PRODUCTION)
        for path in sorted((ROOT / room).rglob("*.py")):
            for line, target in imported_rooms(path):
                if target in forbidden:
                    offences.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    return offences


def test_no_room_imports_a_room_above_it() -> None:
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "low.py"
    sample.write_text("def f():\n    from cdp.runner import serve\n    import api.app\n")
    assert imported_rooms(sample) == [(2, "cdp"), (3, "api")]
