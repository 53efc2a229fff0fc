"""Tokens for the links in every message: unsubscribe and preferences (never expire, so a year-old
email still works) and confirm (expires). Forged or altered tokens fail verification.

A token must not give the address away: links end up in proxy and server access logs, browser
histories and link scanners' reports. So a token is the address *encrypted* (and authenticated),
not merely signed: ``base64url(iv || ciphertext)`` with a deterministic, misuse-resistant scheme
in the SIV style (Rogaway and Shrimpton), built from HMAC-SHA256 alone so no extra dependency is
needed:

* ``iv = HMAC(mac_key, plaintext)[:16]`` (the synthetic IV doubles as the authentication tag),
* ``ciphertext = plaintext XOR HMAC(enc_key, iv || counter)...`` (HMAC as a PRF in counter mode),
* opening recomputes the IV from the decrypted text and compares in constant time.

Each kind of token has its own pair of keys (derived from the secret key and the kind), so an
unsubscribe token can never confirm, and the other way round. A confirm token's plaintext starts
with the time it was made (8 bytes, seconds), which is how it expires.

Tokens made before this scheme (itsdangerous ``payload.signature``, the address in clear base64)
are still accepted, so links in messages already sent keep working; they are told apart by the
``.`` that the new form (base64url without padding) never contains.

The key comes from the environment variable named by ``newsletter.secret_key_env``; when it is not
set, a random key is generated once and kept in the store, so links stay valid across runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
import time
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, bytes_to_int

from newsletter.config import Config
from newsletter.store import Store
from newsletter.store.meta import get_value, set_value, take_turns

_SECRET_META_KEY = "secret_key"
_IV_BYTES = 16
_MAX_TOKEN_CHARS = 2048  # an address is at most 254 characters; anything longer is not ours
_TIME = struct.Struct(">Q")
_RATING_ID = struct.Struct(">Q")
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_RATING_TAG_BYTES = 12  # 96 bits: forging one takes 2**96 tries against a server that rate-limits


def secret_key(config: Config, store: Store) -> str:
    """The signing key: from the environment if set, else the one kept in the store."""
    from_env = os.environ.get(config["newsletter.secret_key_env"], "")
    if from_env:
        return from_env
    with store.atomic() as conn:
        take_turns(conn, "secret key")  # two processes on a new store: one key, not two
        kept = get_value(conn, _SECRET_META_KEY)
        if kept:
            return kept
        key = secrets.token_urlsafe(32)
        set_value(conn, _SECRET_META_KEY, key)
        return key


class Sealer:
    """Deterministic authenticated encryption of short byte strings into URL-safe text, for one
    purpose (the purpose is mixed into both keys)."""

    def __init__(self, key: str, purpose: str) -> None:
        master = key.encode("utf-8")
        self._mac_key = hmac.new(master, f"newsletter token mac:{purpose}".encode(), hashlib.sha256).digest()
        self._enc_key = hmac.new(master, f"newsletter token enc:{purpose}".encode(), hashlib.sha256).digest()

    def seal(self, plaintext: bytes) -> str:
        iv = hmac.new(self._mac_key, plaintext, hashlib.sha256).digest()[:_IV_BYTES]
        sealed = iv + _xor(plaintext, self._keystream(iv, len(plaintext)))
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str) -> bytes | None:
        """The plaintext, or None when the token was not made by ``seal`` with this key and purpose."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii():
            return None
        try:
            sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(sealed) < _IV_BYTES:
            return None
        iv, ciphertext = sealed[:_IV_BYTES], sealed[_IV_BYTES:]
        plaintext = _xor(ciphertext, self._keystream(iv, len(ciphertext)))
        expected = hmac.new(self._mac_key, plaintext, hashlib.sha256).digest()[:_IV_BYTES]
        return plaintext if hmac.compare_digest(iv, expected) else None

    def _keystream(self, iv: bytes, length: int) -> bytes:
        blocks = (hmac.new(self._enc_key, iv + _TIME.pack(i), hashlib.sha256).digest()
                  for i in range((length + 31) // 32))
        return b"".join(blocks)[:length]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream))


class Signer:
    """Makes and checks the tokens. Each kind has its own keys, so an unsubscribe token cannot
    work as a confirm one. The method names and signatures are what the render and deliver code
    call: they take and give addresses; only the token's form changed."""

    def __init__(self, key: str) -> None:
        self._sealers = {kind: Sealer(key, kind) for kind in ("unsubscribe", "confirm", "preferences")}
        # The earlier, signed-only form: still read, never made.
        self._legacy_unsubscribe = URLSafeSerializer(key, salt="unsubscribe")
        self._legacy_confirm = URLSafeTimedSerializer(key, salt="confirm")
        self._legacy_preferences = URLSafeSerializer(key, salt="preferences")
        # Return-path (VERP) tokens are short MACs, not sealed text: see newsletter/bounces/verp.py.
        self._verp_key = hmac.new(key.encode("utf-8"), b"newsletter token mac:verp", hashlib.sha256).digest()
        self._rating_key = hmac.new(key.encode("utf-8"), b"newsletter token mac:rating", hashlib.sha256).digest()
        # Keyed BLAKE2b spends a compression on the key: keep the keyed state and copy it.
        self._rating_mac = hashlib.blake2b(key=self._rating_key, digest_size=_RATING_TAG_BYTES)

    def rating_token(self, subscriber_id: int, paper_id: str) -> str:
        """The token of one reader's "more / less like this" links on one paper card.

        Signed, not sealed: it names a reader by their number and a paper by its public id,
        neither of which is personal, and a personal issue carries one per card, so it must
        cost a microsecond, not a seal's several HMACs: the tag is keyed BLAKE2b (a MAC by
        design, and a third of the cost of ``hmac.digest``). The direction (up, down, undo) is
        in the URL beside it: whoever holds the reader's link may rate either way anyway."""
        return self.rating_token_bytes(subscriber_id, paper_id.encode("utf-8")).decode("ascii")

    def rating_token_bytes(self, subscriber_id: int, paper_id: bytes) -> bytes:
        """``rating_token`` as ASCII bytes, for the message builder's hot loop."""
        payload = _RATING_ID.pack(subscriber_id) + paper_id
        mac = self._rating_mac.copy()
        mac.update(payload)
        return binascii.b2a_base64(mac.digest() + payload, newline=False).translate(_URLSAFE).rstrip(b"=")

    def rating_tokens(self, subscriber_id: int, paper_ids: list[bytes]) -> list[bytes]:
        """``rating_token_bytes`` of one reader for several papers: a personal issue's cards."""
        head = _RATING_ID.pack(subscriber_id)
        reader = self._rating_mac.copy()
        reader.update(head)
        encode, tokens = binascii.b2a_base64, []
        for paper_id in paper_ids:
            mac = reader.copy()
            mac.update(paper_id)
            tokens.append(encode(mac.digest() + head + paper_id, newline=False).translate(_URLSAFE).rstrip(b"="))
        return tokens

    def verify_rating(self, token: str) -> tuple[int, str] | None:
        """(subscriber id, paper id) of a genuine rating token; None for a forged or altered one."""
        if not token or len(token) > _MAX_TOKEN_CHARS or not token.isascii() or "." in token:
            return None
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            return None
        tag, payload = raw[:_RATING_TAG_BYTES], raw[_RATING_TAG_BYTES:]
        if len(payload) <= _RATING_ID.size:
            return None
        mac = self._rating_mac.copy()
        mac.update(payload)
        expected = mac.digest()
        if not hmac.compare_digest(tag, expected):
            return None
        paper_id = _text(payload[_RATING_ID.size:])
        return None if paper_id is None else (_RATING_ID.unpack(payload[:_RATING_ID.size])[0], paper_id)

    def verp_tag(self, data: bytes) -> bytes:
        """HMAC-SHA256 of ``data`` under the return-path key (its own key, like every kind)."""
        return hmac.digest(self._verp_key, data, "sha256")  # one-shot: ~3x cheaper than hmac.new

    def unsubscribe_token(self, email: str) -> str:
        return self._sealers["unsubscribe"].seal(email.lower().encode("utf-8"))

    def verify_unsubscribe(self, token: str) -> str | None:
        """The address the token was made for, or None if forged or altered."""
        if _is_legacy(token):
            return _address(self._legacy_unsubscribe, token)
        return _text(self._sealers["unsubscribe"].open(token))

    def preferences_token(self, email: str) -> str:
        """For the preferences page: its own keys, so it can never unsubscribe or confirm."""
        return self._sealers["preferences"].seal(email.lower().encode("utf-8"))

    def verify_preferences(self, token: str) -> str | None:
        """The address whose preferences the token opens, or None if forged or altered."""
        if _is_legacy(token):
            return _address(self._legacy_preferences, token)
        return _text(self._sealers["preferences"].open(token))

    def confirm_token(self, email: str) -> str:
        """Expires: the time it was made (whole seconds, like itsdangerous) travels inside."""
        made = _TIME.pack(int(time.time()))
        return self._sealers["confirm"].seal(made + email.lower().encode("utf-8"))

    def verify_confirm(self, token: str, max_age_s: int = 7 * 24 * 3600) -> str | None:
        """The address to confirm, or None if forged, altered or older than ``max_age_s``."""
        if _is_legacy(token):
            return _address(self._legacy_confirm, token, max_age=max_age_s)
        opened = self._open_confirm(token)
        if opened is None:
            return None
        made, address = opened
        return address if time.time() - made <= max_age_s else None

    def confirm_issued_at(self, token: str) -> float | None:
        """When a genuine confirm token was made (seconds since the epoch); None for a forged one."""
        if _is_legacy(token):
            if _address(self._legacy_confirm, token, max_age=100 * 365 * 24 * 3600) is None:
                return None
            return _legacy_issued_at(token)
        opened = self._open_confirm(token)
        return None if opened is None else float(opened[0])

    def _open_confirm(self, token: str) -> tuple[int, str] | None:
        plaintext = self._sealers["confirm"].open(token)
        if plaintext is None or len(plaintext) <= _TIME.size:
            return None
        address = _text(plaintext[_TIME.size:])
        return None if address is None else (_TIME.unpack(plaintext[:_TIME.size])[0], address)


def _is_legacy(token: str) -> bool:
    return "." in token


def _text(plaintext: bytes | None) -> str | None:
    if plaintext is None:
        return None
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _legacy_issued_at(token: str) -> float | None:
    """When an old (itsdangerous) timed token was made: the time sits before the signature."""

    try:
        return float(bytes_to_int(base64_decode(token.rsplit(".", 2)[-2])))
    except (IndexError, ValueError, TypeError):
        return None


def _address(serializer: Any, token: str, **loads: Any) -> str | None:
    """The address an old token holds, or None if it is forged, altered, expired or not an
    address. (``SignatureExpired`` is a ``BadSignature``.)"""
    try:
        value = serializer.loads(token, **loads)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None
