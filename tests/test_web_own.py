"""The web checks that ingest a real page of papers (the archive, the preferences link of a
delivered issue in Chromium), run on a trending page of our own making: they run on a fresh
clone."""

from __future__ import annotations

from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_web import site, test_a_really_rendered_issue_is_archived_without_personal_values  # noqa: F401
from test_web_browser import test_the_preferences_link_of_a_delivered_issue_renames_in_a_browser  # noqa: F401
from test_web_preferences import test_the_archive_never_carries_a_readers_preferences_link  # noqa: F401
