"""The progress line of long runs (send, resend): count, rate, the sender's current limit and
why, elapsed time and ETA."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

if TYPE_CHECKING:
    from newsletter.deliver.sender import ProgressCallback


@contextmanager
def progress_bar(console: Console, description: str = "sending", *, disable: bool = False) -> Iterator[ProgressCallback]:
    """A rich progress bar (count, rate, elapsed, ETA) fed by ``deliver_issue``'s callback."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False, disable=disable) as bar:
        task = bar.add_task(description, total=None, rate="")
        started = time.monotonic()

        def update(done: int, total: int, note: str = "") -> None:
            elapsed = time.monotonic() - started
            rate = f"{done / elapsed:,.0f} msg/s" if elapsed > 0.5 else ""
            bar.update(task, completed=done, total=total, rate=" ".join(filter(None, (rate, note))))

        yield update
