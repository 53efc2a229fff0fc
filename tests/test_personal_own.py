"""test_personal's checks of the assembled copy, on daily papers of our own making: they run on
a fresh clone (the sending checks there need no corpus and run as they are)."""

from __future__ import annotations

from own_corpus import fixtures_dir  # noqa: F401 -- overrides conftest's, for this module
from test_personal import (setup, test_a_paper_title_cannot_cut_a_card_or_fill_a_token,  # noqa: F401
                           test_assembled_copy_is_the_copy_rendered_from_scratch,
                           test_bodies_are_8bit_with_short_lines_and_base64_for_a_long_value,
                           test_cards_hold_rank_reason_and_signed_rating_links,
                           test_seven_bit_re_encodes_8bit_parts_and_keeps_the_content)
