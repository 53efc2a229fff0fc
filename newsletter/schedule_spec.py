"""Schedule strings (``monday at 08:00``, ``every 6 hours``, ``off``): parsed and described.

On their own, without the scheduler, so the configuration can check a schedule string when it
is read (a typo is a ``newsletter.toml:LINE:`` error for every command) without importing the
scheduler, which imports the configuration.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import time, timedelta

WEEKDAYS: tuple[str, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
UNITS: dict[str, str] = {"minute": "minutes", "minutes": "minutes", "hour": "hours", "hours": "hours",
                         "day": "days", "days": "days"}


@dataclass(frozen=True)
class JobSpec:
    """One parsed schedule string.

    ``at`` jobs run at a local time, every day or on one ``weekday`` (0 = Monday); ``interval``
    jobs run every ``interval``; ``off`` jobs never run.
    """

    text: str
    kind: str  # "at" | "interval" | "off"
    at: time | None = None
    weekday: int | None = None
    interval: timedelta | None = None

    def describe(self) -> str:
        if self.kind == "off":
            return "off"
        if self.kind == "interval":
            return f"every {format_interval(self.interval)}"  # type: ignore[arg-type]
        day = "daily" if self.weekday is None else WEEKDAYS[self.weekday]
        return f"{day} at {self.at:%H:%M}"


def format_interval(interval: timedelta) -> str:
    seconds = int(interval.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def _parse_time(text: str) -> time:
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text)
    if not m:
        raise ValueError(f"{text!r} is not a time of day (write HH:MM, e.g. 08:00)")
    hour, minute = int(m.group(1)), int(m.group(2))
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r} is not a time of day (hours 00-23, minutes 00-59)")
    return time(hour, minute)


def _parse_day(word: str) -> int | None:
    """Weekday number for ``monday``/``mondays``/``mon``; None for ``day``/``daily``."""
    if word in ("day", "daily", "days"):
        return None
    for number, name in enumerate(WEEKDAYS):
        if word in (name, name + "s", name[:3]):
            return number
    close = difflib.get_close_matches(word, [*WEEKDAYS, "daily"], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown day {word!r}{hint}; use daily or a weekday such as monday")


def parse_job_spec(text: str) -> JobSpec:
    """Parse one schedule string; ValueError says what is wrong with it.

    Accepted: ``daily at HH:MM``, ``every day at HH:MM``, ``<weekday> at HH:MM``,
    ``every <weekday> at HH:MM``, ``every N minutes|hours``, ``every hour``, ``hourly``, ``off``.
    """
    words = text.strip().lower().split()
    if words in (["off"], ["never"]):
        return JobSpec(text, "off")
    if words == ["hourly"]:
        return JobSpec(text, "interval", interval=timedelta(hours=1))
    if not words:
        raise ValueError("empty schedule (write e.g. 'monday at 08:00', or 'off')")
    if words[0] == "every":
        words = words[1:]
        # every N minutes | every N hours | every hour
        if words and (words[0].isdigit() or words[0] in ("minute", "hour")):
            count = int(words[0]) if words[0].isdigit() else 1
            unit_words = words[1:] if words[0].isdigit() else words
            if len(unit_words) != 1 or UNITS.get(unit_words[0]) not in ("minutes", "hours"):
                raise ValueError(f"cannot read {text!r}: write 'every N minutes' or 'every N hours' "
                                 "(days take a time: 'daily at 06:00')")
            if count < 1:
                raise ValueError(f"cannot read {text!r}: the interval must be at least 1")
            if count > (10_000 if UNITS[unit_words[0]] == "hours" else 600_000):  # more than a year
                raise ValueError(f"cannot read {text!r}: an interval of more than a year never comes round")
            return JobSpec(text, "interval", interval=timedelta(**{UNITS[unit_words[0]]: count}))
    if len(words) == 3 and words[1] == "at":
        weekday = _parse_day(words[0])
        return JobSpec(text, "at", at=_parse_time(words[2]), weekday=weekday)
    if len(words) == 1 and words[0] in (*WEEKDAYS, "daily", "day"):
        # "monday" alone: the time is what is missing; say so rather than "cannot read".
        raise ValueError(f"{text!r} has no time: write e.g. '{words[0]} at 08:00'")
    raise ValueError(f"cannot read {text!r}: write e.g. 'daily at 06:00', 'monday at 08:00', "
                     "'every 6 hours' or 'off'")
