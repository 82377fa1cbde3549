"""Progress bar of a load on stderr: rows and rows/s (tqdm; silent when stderr is no tty)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    """Rows sent so far, per load; ``enabled=None`` shows it only on a terminal."""

    def __init__(self, description: str, total_rows: int | None = None, enabled: bool | None = None) -> None:
        self._bar: Any = tqdm(
            total=total_rows,
            desc=description,
            unit=" rows",
            unit_scale=True,
            file=sys.stderr,
            disable=(not sys.stderr.isatty()) if enabled is None else not enabled,
            dynamic_ncols=True,
            smoothing=0.1,
        )

    def update(self, rows: int) -> None:
        self._bar.update(rows)

    def note(self, text: str) -> None:
        """Show what the load is doing now (file name, committing, ...)."""
        self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
