"""Terminal tables (rich) for command results."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(title: str | None, rows: list[dict], columns: list[str]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c, justify="left" if c in ("model", "name", "layout", "description", "metric") else "right")
    for r in rows:
        table.add_row(*[str(r.get(c, "")) for c in columns])
    Console(width=140).print(table)
