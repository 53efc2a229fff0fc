"""Return-path tokens (VERP): which issue and which reader a bounce is about, even when the
bounce quotes nothing of the message.

A token is ``base32(issue number, subscriber id, 8 bytes of HMAC)``, 26 lower-case letters and
digits: it names the reader by id, never by address (the envelope sender shows up in logs and
in bounces to third parties), survives MTAs that fold the case of local parts, and fits
comfortably in a 64-octet local part: ``bounces+<token>@papers.example.org``. The MAC key is the
project's signing key's own ``verp`` key (``Signer.verp_tag``), so a forged or altered token
never attributes a bounce to anyone.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import struct

from newsletter.tokens import Signer

_IDS = struct.Struct(">II")
_TAG_BYTES = 8
TOKEN_CHARS = 26  # base32 of 16 bytes, padding dropped
TOKEN_PATTERN = re.compile(r"[a-z2-7]{%d}" % TOKEN_CHARS, re.IGNORECASE)


def make_token(signer: Signer, issue_number: int, subscriber_id: int) -> str:
    ids = _IDS.pack(issue_number, subscriber_id)
    raw = ids + signer.verp_tag(ids)[:_TAG_BYTES]
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def read_token(signer: Signer, token: str) -> tuple[int, int] | None:
    """(issue number, subscriber id) of a genuine token; None for anything else."""
    if not token or len(token) != TOKEN_CHARS or not TOKEN_PATTERN.fullmatch(token):
        return None
    try:
        raw = base64.b32decode(token.upper() + "=" * 6)
    except (binascii.Error, ValueError):
        return None
    ids, tag = raw[:_IDS.size], raw[_IDS.size:]
    if not hmac.compare_digest(tag, signer.verp_tag(ids)[:_TAG_BYTES]):
        return None
    issue_number, subscriber_id = _IDS.unpack(ids)
    return issue_number, subscriber_id


_RETURN_PATH = re.compile(r"[A-Za-z0-9!#$%&'*/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def return_path_problem(value: str) -> str | None:
    """What is wrong with ``[bounces] return_path``, or None: a plain ASCII address whose local
    part leaves room for ``+`` and a token (64 octets in all) and has no ``+`` of its own."""
    if not value:
        return None
    if not _RETURN_PATH.fullmatch(value) or "." not in value.rpartition("@")[2]:
        return f"{value!r} is not a plain address such as bounces@papers.example.org (no name, no <>, no +)"
    if len(value.partition("@")[0]) + 1 + TOKEN_CHARS > 64:
        return f"{value!r}: the local part is too long to add +TOKEN ({TOKEN_CHARS} characters) within 64"
    return None


def verp_address(return_path: str, token: str) -> str:
    """``bounces@example.org`` + token -> ``bounces+token@example.org``."""
    local, _, domain = return_path.rpartition("@")
    return f"{local}+{token}@{domain}"


def tokens_in_address(text: str) -> list[str]:
    """Every ``+token@`` in a header value (``Delivered-To``, ``To``, ...), in order."""
    return re.findall(r"\+([a-z2-7]{%d})@" % TOKEN_CHARS, text, flags=re.IGNORECASE)
