"""test_render_messages's checks of the built messages (headers, tokens, hostile values, the fast
splice path), run on daily papers and addresses of our own making: they run on a fresh clone."""

from __future__ import annotations

from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_render_messages import *  # noqa: F401,F403 -- every check and fixture of test_render_messages

