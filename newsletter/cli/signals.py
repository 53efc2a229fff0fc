"""Ctrl-C and SIGTERM for the commands that deliver (``send``, ``resend``, ``run``): the first
asks for a clean stop, the second aborts.

A clean stop lets the messages in flight finish and be recorded, so nothing is lost or sent
twice. An abort (``KeyboardInterrupt``) is for a server that no longer answers: the process
leaves at once, and a message that was in flight may be sent once more by the next run.
"""

from __future__ import annotations

import signal
import sys
import threading
from contextlib import contextmanager
from types import FrameType
from typing import Callable, Iterator

ABORTED_EXIT = 130  # 128 + SIGINT, what a shell reports for a process ended by Ctrl-C
ABORTED_MESSAGE = ("Aborted. A message that was in flight may be sent once more by the next run; "
                   "nothing else is lost.")


@contextmanager
def stop_on_signals(announce: Callable[[str], None]) -> Iterator[threading.Event]:
    """An event set by the first SIGINT or SIGTERM (after ``announce(signal name)``); the second
    raises ``KeyboardInterrupt`` in the main thread. The previous handlers come back on exit.

    The event is set, and the announcement made, from a new thread: doing it in the handler
    could deadlock if the signal landed while the main thread held the event's or the console's
    lock.
    """
    stop = threading.Event()
    received: list[int] = []

    def first(signum: int) -> None:
        announce(signal.Signals(signum).name)
        stop.set()

    def handler(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt
        threading.Thread(target=first, args=(signum,), name="stop", daemon=True).start()

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals can only be caught in the main thread
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_aborted(print_error: Callable[[str], None]) -> None:
    """Say what an abort leaves behind and exit with the status of a process ended by Ctrl-C."""
    print_error(ABORTED_MESSAGE)
    sys.exit(ABORTED_EXIT)
