"""CSS inlining with premailer, once per issue, with the settings the email checklist asks for.

One ``Premailer`` instance is built per process and reused (its parsed-CSS cache is what makes
an issue take ~15 ms rather than ~40 ms). ``strip_important=False`` keeps ``!important`` in the
kept media queries; ``allow_network=False`` and no ``base_url`` so nothing is fetched and no
link is rewritten; cssutils' warnings about client-specific CSS are silenced.
"""

from __future__ import annotations

import logging
import threading

import cssutils
from premailer import Premailer

from newsletter.errors import RenderError

_lock = threading.Lock()
_instance: Premailer | None = None


def premailer_instance() -> Premailer:
    """The shared, configured ``Premailer``."""
    global _instance
    with _lock:
        if _instance is None:
            # cssutils would shorten #ffffff to #fff; some clients only read 6-digit colours.
            cssutils.ser.prefs.minimizeColorHash = False
            _instance = Premailer(
                strip_important=False,
                allow_network=False,
                base_url=None,
                disable_validation=True,
                cssutils_logging_level=logging.CRITICAL,
                keep_style_tags=False,
                remove_classes=False,
                cache_css_parsing=True,
                disable_link_rewrites=True,
                # Explicit width attributes come from the template; premailer would turn
                # "width:100%" into width="100%" on images, which Outlook reads as pixels.
                disable_basic_attributes=["width", "height"],
            )
        return _instance


def inline_css(html: str) -> str:
    """``html`` with its ``<style>`` rules inlined (a ``data-premailer="ignore"`` block stays)."""
    instance = premailer_instance()
    try:
        with _lock:  # Premailer keeps per-call state on the instance
            result = instance.transform(html=html, pretty_print=False)
    except Exception as exc:  # premailer raises bare lxml/cssutils errors
        raise RenderError(f"cannot inline the CSS: {exc}", where="issue.html.j2") from None
    if not result.lstrip().lower().startswith("<!doctype"):
        result = "<!DOCTYPE html>\n" + result
    return result.rstrip("\n") + "\n"
