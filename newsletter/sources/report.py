"""What an ingest run did, per source: the numbers ``newsletter ingest`` prints."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceReport:
    """One source's outcome. ``error`` set means nothing from it was stored."""

    source: str
    format: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    not_modified: bool = False
    error: str = ""
    warnings: tuple[str, ...] = ()
    skip_reasons: tuple[str, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.error)


@dataclass(frozen=True)
class IngestReport:
    sources: tuple[SourceReport, ...] = ()
    used_sample: bool = False
    elapsed_s: float = 0.0

    @property
    def failed(self) -> bool:
        return any(s.failed for s in self.sources)

    @property
    def errors(self) -> tuple[str, ...]:
        return tuple(s.error for s in self.sources if s.error)

    def total(self, field_name: str) -> int:
        return sum(getattr(s, field_name) for s in self.sources)
