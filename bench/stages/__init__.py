"""The built-in stages. Importing this package registers them in bench.core.STAGES in the order of
:data:`BUILTIN`, which is the order of the table. A new stage is a module in this folder with a
``@register``-ed class, named in :data:`BUILTIN` (see bench/README.md)."""

from __future__ import annotations

import importlib

BUILTIN: tuple[str, ...] = (
    "collector",
    "sink",
    "stitching",
    "freshness",
    "identity",
    "end_to_end",
    "lookup",
    "metrics",
    "analyst",
    "cdc",
    "console",
    "soak",
    "read_side",
)

for _module in BUILTIN:
    importlib.import_module(f"{__name__}.{_module}")
