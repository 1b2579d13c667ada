"""The shipped mapping files (contacts, orders: database tables; stripe, shopify: webhooks)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED_TABLES = ("contacts", "orders")
SHIPPED_WEBHOOKS = ("stripe", "shopify")


def mapping_text(name_or_path: str) -> str:
    """The YAML of a shipped mapping by name, or of a mapping file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"mapping: no such file: {name_or_path}")
        return path.read_text(encoding="utf-8")
    entry = resources.files(__package__).joinpath(f"{name_or_path}.yaml")
    if not entry.is_file():
        shipped = ", ".join(SHIPPED_TABLES + SHIPPED_WEBHOOKS)
        raise FileNotFoundError(f"mapping: {name_or_path!r} is neither a file nor a shipped mapping ({shipped})")
    return entry.read_text(encoding="utf-8")
