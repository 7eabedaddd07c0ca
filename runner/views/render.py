"""Tables of text cells for a terminal: coloured through rich for a person, plain else."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text

from runner.views.terminal import printable

MIN_FREE = 16  # columns a free-text column keeps on a narrow terminal
STATE_STYLES = {"completed": "green", "failed": "red", "aborted": "red", "error": "red",
                "invalid": "red", "refused": "red", "running": "yellow", "pending": "yellow",
                "skipped": "dim", "nothing-to-run": "dim"}


def rich_table(headers: Sequence[str], rows: Sequence[Sequence[str]],
               state_column: int | None = None, free: int = 2) -> Table:
    """The rows as a rich table, the state column coloured by state. The last `free` columns
    (free text, as params and results) give way to the others on a narrow terminal, cut short."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    shrinking = range(len(headers) - free, len(headers))
    for index, header in enumerate(headers):
        table.add_column(header, no_wrap=index not in shrinking,
                         min_width=MIN_FREE if index in shrinking else None)
    for row in rows:
        table.add_row(*[Text(printable(cell), style=STATE_STYLES.get(cell, "") if i == state_column else "",
                             no_wrap=True, overflow="ellipsis" if i in shrinking else "fold")
                        for i, cell in enumerate(row)])
    return table
