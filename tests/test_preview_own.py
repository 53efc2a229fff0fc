"""test_preview's checks that need ingested papers (preview files, the clip warning, template
errors, the preview server in Chromium), run on daily papers of our own making: they run on a
fresh clone."""

from __future__ import annotations

from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_preview import (  # noqa: F401 -- the checks, and the fixtures they use
    folder,
    server,
    test_long_unbroken_words_wrap_inside_the_card,
    test_preview_for_an_unknown_subscriber_fails,
    test_preview_for_one_subscriber,
    test_preview_names_the_file_and_line_of_a_template_error,
    test_preview_serve_listens_on_loopback_only,
    test_preview_server_in_a_browser,
    test_preview_server_text_part_past_issues_and_template_reload,
    test_preview_warns_before_gmail_clips,
    test_preview_writes_html_text_and_eml_and_prints_the_paths,
)
