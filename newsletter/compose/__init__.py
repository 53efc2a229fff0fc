"""store -> Issue: the week's window, ranking, papers already sent left out, the issue key."""

from newsletter.compose.issue import compose_issue, issue_key, rank_papers
from newsletter.compose.note import load_editor_note

__all__ = ["compose_issue", "issue_key", "rank_papers", "load_editor_note"]
