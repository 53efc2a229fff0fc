"""The one place where the stages are chained. CLI, scheduler and web call these functions;
stages never call each other.

    sources -> store (ingest)
    store -> compose -> Issue (build_issue)
    Issue -> render -> RenderedIssue -> one message per subscriber -> deliver (send_issue)
"""

from __future__ import annotations
