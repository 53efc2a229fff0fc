"""Canonical ids, clean text and UTC times: what makes one paper from many sources one record.

The same arXiv paper shows up as ``2403.05525``, ``2403.05525v2``, ``arXiv:2403.05525``,
``https://arxiv.org/abs/2403.05525v2``, ``https://arxiv.org/pdf/2403.05525.pdf`` or
``https://huggingface.co/papers/2403.05525``; all of them become ``arxiv:2403.05525`` (the
version is dropped: a new version is the same paper). DOIs become ``doi:10.x/y`` (lower-cased,
as DOIs are case-insensitive) and anything else ``url:<the URL without fragment>``.
"""

from __future__ import annotations

import html
import re
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# New-style ids (0704.0001 onwards: 4+4 digits, 4+5 since 2015) and old-style archive/YYMMNNN.
_NEW_ID = r"\d{4}\.\d{4,5}"
_OLD_ID = r"[a-z][a-z\-]*(?:\.[A-Z]{2})?/\d{7}"
_ARXIV_ID = rf"(?P<id>{_NEW_ID}|{_OLD_ID})(?:v(?P<version>\d+))?"

_BARE_ID_RE = re.compile(rf"^(?:arxiv:\s*)?{_ARXIV_ID}$", re.IGNORECASE)
_ARXIV_URL_RE = re.compile(
    rf"^https?://(?:www\.|export\.|rss\.)?arxiv\.org/(?:abs|pdf|html|format)/{_ARXIV_ID}(?:\.pdf)?/?$",
    re.IGNORECASE,
)
_HF_URL_RE = re.compile(rf"^https?://(?:www\.)?huggingface\.co/papers/{_ARXIV_ID}/?$", re.IGNORECASE)
_OAI_RE = re.compile(rf"^oai:arXiv\.org:{_ARXIV_ID}$", re.IGNORECASE)
_ARXIV_PATTERNS = (_BARE_ID_RE, _ARXIV_URL_RE, _HF_URL_RE, _OAI_RE)
_TRACKING_PARAMS = frozenset({"fbclid", "gclid", "mc_cid", "mc_eid", "ref_src"})
_DOI_RE = re.compile(r"^(?:doi:\s*|https?://(?:dx\.)?doi\.org/)?(?P<doi>10\.\d{4,9}/\S+)$", re.IGNORECASE)

# A tag is only what HTML itself would write: "<" or "</", a known element's name (HTML, MathML,
# SVG), then nothing, or white space and attributes, then ">" or "/>". Attributes without a value
# count only beside one that has a value, or when they are the common boolean ones: text such as
# "p<q and q>1", "Vec<T>" or "$n<m$ and $k>2$" (plain-text titles, LaTeX in arXiv abstracts) is
# kept as written, while real markup in feed titles and summaries is removed.
_ELEMENTS = frozenset((
    "a abbr acronym address area article aside audio b base bdi bdo big blockquote body br button canvas caption "
    "center cite code col colgroup data dd del details dfn dialog div dl dt em embed fieldset figcaption figure "
    "font footer form h1 h2 h3 h4 h5 h6 head header hr html i iframe img input ins kbd label legend li link main "
    "map mark math meta meter nav nobr noscript object ol optgroup option output p param picture pre progress q "
    "rp rt ruby s samp section select small source span strike strong sub summary sup svg table tbody td "
    "template textarea tfoot th thead time title tr track tt u ul var video wbr "
    # MathML and SVG, as arXiv and blog feeds embed them
    "mi mn mo ms mtext mrow msup msub msubsup mfrac msqrt mroot mover munder munderover mtable mtr mtd "
    "mspace mstyle semantics annotation "
    "g path circle ellipse line polyline polygon rect text tspan defs use symbol clippath lineargradient "
    "radialgradient stop foreignobject").split())
_BOOLEAN_ATTRIBUTES = frozenset((
    "allowfullscreen async autofocus autoplay checked controls default defer disabled download hidden inert "
    "ismap loop multiple muted nomodule novalidate nowrap open playsinline readonly required reversed "
    "selected").split())
# "<" + a name, then everything up to ">" (quoted values may hold ">"); the callback decides.
_TAG_CANDIDATE_RE = re.compile(r"""<(/?)([a-zA-Z][a-zA-Z0-9]*)((?:"[^"]*"|'[^']*'|[^'"<>])*)>""")
_ATTRIBUTE_RE = re.compile(r"""([^\s"'>/=]+)(\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?""")
_ATTRIBUTES_RE = re.compile(
    r"""(?:\s+[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?"""
    r"""|(?<=["'])[^\s"'>/=]+(?:\s*=\s*(?:"[^"]*"|'[^']*'|[^\s"'=<>`]+))?)*\s*/?\s*""")


def _is_tag(closing: str, name: str, rest: str) -> bool:
    if name.lower() not in _ELEMENTS:
        return False
    if not rest or rest.strip() in ("", "/"):  # "</br />" too: browsers read it as <br>
        return True
    if closing:
        return False
    if not rest[0].isspace() or not _ATTRIBUTES_RE.fullmatch(rest):
        return False
    attributes = _ATTRIBUTE_RE.findall(rest)
    if any(value for _, value in attributes):
        return True
    return all(attribute.lower() in _BOOLEAN_ATTRIBUTES for attribute, _ in attributes)
# Tags inside a run of text: removed without a space, so "H<sub>2</sub>O" stays "H2O" and
# "<em>vision</em>-language" stays one word. Any other tag (p, div, br, li, ...) separates words.
_INLINE_TAGS = frozenset(
    "a abbr b bdi bdo cite code data del dfn em font i ins kbd mark q s samp small span strike strong sub sup "
    "time tt u var".split())
_COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
_SCRIPT_RE = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)

# arXiv listing feeds: "arXiv:2203.01250v3 Announce Type: replace-cross \nAbstract: ..."
_ANNOUNCE_RE = re.compile(r"^\s*arXiv:\S+\s+Announce Type:\s*[\w\-]+\s*Abstract:\s*", re.IGNORECASE)
# Legacy listing titles: "Title. (arXiv:2107.03419v1 [hep-ex] CROSS LISTED)"
_TITLE_SUFFIX_RE = re.compile(r"\s*\(arXiv:[^\s)]+(?:\s+\[[^\]]*\])?(?:\s+[A-Z][A-Z ]*)?\)\s*$")


def arxiv_id(text: str | None) -> str | None:
    """The version-less arXiv id in an id, ``arXiv:`` reference, OAI id or arXiv/HF URL."""
    return _arxiv_id(text.strip()) if text else None


def _arxiv_id(text: str) -> str | None:
    for pattern in _ARXIV_PATTERNS:
        m = pattern.match(text)
        if m:
            return m.group("id")
    return None


def doi(text: str | None) -> str | None:
    """The lower-cased DOI in ``10.x/y``, ``doi:10.x/y`` or a doi.org URL."""
    if not text:
        return None
    m = _DOI_RE.match(text.strip())
    return m.group("doi").lower().rstrip(".") if m else None


def _is_tracking(name: str, value: str) -> bool:
    """Query parameters that say where a reader came from, not what the page is: the same post
    reached from two feeds (Medium adds ``source=rss-<feed>------2``) must be one paper."""
    name = name.lower()
    return (name.startswith("utm_") or name in _TRACKING_PARAMS
            or (name == "source" and value.lower().startswith("rss")))


def canonical_url(url: str) -> str:
    """A URL without its fragment or tracking parameters, with a lower-cased scheme and host,
    for comparison."""
    parts = urlsplit(url.strip())
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        kept = [(k, v) for k, v in pairs if not _is_tracking(k, v)]
        if len(kept) != len(pairs):
            query = urlencode(kept)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/", query, ""))


def canonical_id(*candidates: str | None) -> str | None:
    """The canonical id from the first candidate that names an arXiv paper, else a DOI, else a URL.

    Candidates are tried in order of trust for each kind, so a feed entry can pass its guid,
    link and every other link it has and get ``arxiv:`` whenever any of them is an arXiv paper.
    """
    present = [c.removeprefix("url:") for c in map(str.strip, filter(None, candidates)) if c]
    for c in present:
        found = _arxiv_id(c.strip())  # "url: 2403.05525" as the general form would read it
        if found:
            return f"arxiv:{found}"
    for c in present:
        found = doi(c)
        if found:
            return f"doi:{found}"
    for c in present:
        # Our own id for a paper known only by its title (a plain-text page): kept as it is, so
        # `newsletter papers --json` ingested again is the same papers, not copies under a URL.
        if c[:6].lower() == "title:" and c[6:].strip():
            return "title:" + " ".join(c[6:].split()).casefold()
    for c in present:
        if c.lower().startswith(("http://", "https://")):
            return f"url:{canonical_url(c)}"
    return None


def arxiv_links(id_: str) -> tuple[str, str]:
    """The abstract page and PDF of an arXiv paper (version-less: always the latest)."""
    return f"https://arxiv.org/abs/{id_}", f"https://arxiv.org/pdf/{id_}"


# Control characters other than whitespace: a terminal escape (ESC [31m) or a backspace in a
# title must not reach the operator's terminal, a message or a web page. Each becomes a space.
_CONTROL_RE = re.compile(r"[\x01-\x08\x0e-\x1b\x7f-\x9f]")
# Lone UTF-16 surrogates: legal in JSON ("\ud800"), impossible to store or send as UTF-8.
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")


# What text that is clean as it stands never holds: ASCII control characters, "<" and "&".
_UNCLEAN_BYTES = bytes(range(0x20)) + b"\x7f<&"
_LONG = 200  # from this length on, deleting bytes beats str.isprintable (1.2 KB: ~0.9 us against ~2.7)
_DOUBLE_SPACE = re.compile("  ")  # in long text, ~0.6 us for 1.2 KB where `"  " in` took ~1.1


def is_clean(text: str) -> bool:
    """True when ``clean_text`` would return ``text`` (not empty) unchanged: ASCII without
    markup, entities, control characters or whitespace other than single inner spaces.

    Most titles, names and abstracts are like that, and this check costs a fraction of the
    clean-up it spares: ASCII text is printable exactly when it holds no control character
    (whitespace other than the space included), and each ``in`` is one ``memchr``. A long text
    is checked as bytes instead: ``bytes.translate`` deleting every byte it must not hold leaves
    it as long as it was only when there is none. The ASCII test is O(1) in CPython; other text
    takes the full path.
    """
    if not text.isascii() or text[0] == " " or text[-1] == " ":
        return False
    if len(text) < _LONG:
        return "<" not in text and "&" not in text and text.isprintable() and "  " not in text
    data = text.encode("ascii")
    return len(data.translate(None, _UNCLEAN_BYTES)) == len(data) and _DOUBLE_SPACE.search(text) is None


def _tag_gap(match: re.Match[str]) -> str:
    """A tag's replacement: nothing inside a run of text, a space between blocks; anything that
    only looks like a tag stays as it is."""
    closing, name, rest = match.groups()
    if not _is_tag(closing, name, rest):
        return match.group(0)
    return "" if name.lower() in _INLINE_TAGS else " "


def clean_text(text: str | None) -> str:
    """Fold whitespace, drop HTML tags, comments and scripts, decode entities; LaTeX stays as is.

    Entities are decoded after tags are removed, so an escaped ``&lt;b&gt;`` in a title stays
    visible text rather than becoming markup.
    """
    if not text:
        return ""
    if is_clean(text):
        return text
    if "<" in text:
        text = _COMMENT_RE.sub(" ", text)
        text = _SCRIPT_RE.sub(" ", text)
        text = _TAG_CANDIDATE_RE.sub(_tag_gap, text)
    if "&" in text:
        text = html.unescape(text)
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = _CONTROL_RE.sub(" ", text)
    if not text.isascii():
        text = _SURROGATE_RE.sub("\ufffd", text)
    # str.split() folds every Unicode whitespace run, several times faster than a regex.
    return " ".join(text.split())


def clean_title(text: str | None) -> str:
    """A title with the legacy arXiv listing suffix ``(arXiv:ID [cat] ...)`` removed."""
    text = clean_text(text)
    return _TITLE_SUFFIX_RE.sub("", text).strip() if "(arXiv:" in text else text


def clean_abstract(text: str | None) -> str:
    """An abstract without the arXiv listing prefix ``arXiv:ID Announce Type: ... Abstract:``."""
    text = clean_text(text)
    # The prefix starts the text (clean text starts with no space): a look at six characters,
    # not a search through the whole abstract (~1 us for 1 KB).
    return _ANNOUNCE_RE.sub("", text).strip() if text[:6].lower() == "arxiv:" else text


def split_authors(text: str) -> list[str]:
    """Names from one string such as ``A, B and C`` or arXiv's legacy ``<a>`` links with ``et al.``"""
    if "," not in text and "<" not in text and " and " not in text and "&" not in text and "et al" not in text:
        return [" ".join(text.split())] if text.strip() else []  # the common case: one plain name
    if "<a" in text.lower():
        names = [clean_text(m) for m in re.findall(r"<a\b[^>]*>(.*?)</a>", text, re.IGNORECASE | re.DOTALL)]
        return [n for n in names if n]
    text = clean_text(text)
    text = re.sub(r",?\s*et al\.?(\s*\(.*?\))?\s*$", "", text)
    if re.search(r"\w,\s*(?:[A-Za-z]\.\s*)+,", text + ","):
        # "Kaur, M., Shukla, A. K., ...": surname, initials -- split after the initials only
        # (bioRxiv also has "Zhang, a., jiang, x.": initials in lower case).
        parts = re.split(r"(?<=\.),\s*", text)
    else:
        parts = re.split(r",\s*|\s+and\s+", text)
    return [p.strip() for p in parts if p.strip()]


def utc_datetime(value: object) -> datetime | None:
    """A timezone-aware UTC datetime from ISO 8601, RFC 822, a struct_time or a datetime.

    Naive values are taken as UTC; anything unreadable is None (a date is nice to have, never
    worth refusing a paper over).
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, time.struct_time):
        try:
            dt = datetime(*value[:6], tzinfo=timezone.utc)
        except (ValueError, OverflowError):
            return None
    elif isinstance(value, str):
        text = value.strip()
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
        except ValueError:
            try:
                dt = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
    else:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+05:00 falls before year 1 in UTC
        return None
