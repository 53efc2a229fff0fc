"""Address checking and normalisation against the recorded cases in ../shared/fixtures/emails.

The fixtures record email-validator's own expectations under various options; we check ours
agree wherever our options (no DNS, SMTPUTF8 allowed, no quoted local parts, no display names,
strict length rules: a local part of at most 64) are the ones the case was recorded with.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from newsletter.errors import SubscriberError
from newsletter.subscribers.addresses import check_address, clean_name, email_key, normalize_address

JSONL = ("python_email_validator_cases.jsonl", "python_email_validator_unsafe_chars_and_pyisemail_cases.jsonl")


def _cases(fixtures_dir: Path) -> list[dict]:
    cases = []
    for name in JSONL:
        with (fixtures_dir / "emails" / name).open(encoding="utf-8") as f:
            cases.extend(json.loads(line) for line in f if line.strip())
    return cases


def _outcome(address: str) -> tuple[bool, str]:
    try:
        return True, check_address(address)
    except ValueError as exc:
        return False, str(exc)


def test_recorded_valid_addresses_normalise_as_recorded(fixtures_dir: Path) -> None:
    checked = 0
    for case in _cases(fixtures_dir):
        if case["expect"] not in ("valid", "valid_only_with_smtputf8") or "normalized" not in case:
            continue
        if "display_name" in case or case["address"].startswith('"'):
            continue  # recorded with allow_display_name / allow_quoted_local, which we do not allow
        ok, result = _outcome(case["address"])
        assert ok, (case, result)
        assert result == case["normalized"], case
        checked += 1
    assert checked >= 15


def test_recorded_invalid_addresses_are_refused_with_the_recorded_reason(fixtures_dir: Path) -> None:
    checked = 0
    for case in _cases(fixtures_dir):
        if not case["expect"].startswith("invalid") or case["expect"] == "invalid_when_smtputf8_disallowed":
            continue
        ok, reason = _outcome(case["address"])
        assert not ok, case
        trimmed = case["address"] != case["address"].strip(" \t")  # we trim spaces first: other reason
        if "error" in case and case["expect"] == "invalid" and not trimmed:
            if "too long" in case["error"] and "IDNA" in reason:
                continue  # email-validator reports the first of two faults; either refuses it
            assert reason == case["error"], case
        elif "error_contains" in case:
            assert case["error_contains"] in reason, case
        checked += 1
    assert checked >= 100


def test_display_names_and_quoted_local_parts_are_refused(fixtures_dir: Path) -> None:
    for case in _cases(fixtures_dir):
        if "display_name" in case or case["expect"] == "invalid_by_default_valid_if_quoted_local_allowed":
            assert not _outcome(case["address"])[0], case


def test_pyisemail_cases_agree_with_email_validator_policy(fixtures_dir: Path) -> None:
    for case in _cases(fixtures_dir):
        if case.get("source_test") != "test_pyisemail_tests":
            continue
        ok, _ = _outcome(case["address"])
        status = case["isemail_status"]
        if status == "ISEMAIL_VALID":
            assert ok, case
        elif status.startswith("ISEMAIL_ERR"):
            assert not ok, case


def _isemail(fixtures_dir: Path, name: str) -> list[tuple[str, str, str]]:
    tree = ET.parse(fixtures_dir / "emails" / name)
    found = []
    for test in tree.getroot().iter("test"):
        raw = test.findtext("address") or ""
        # Control characters are written as U+2400 + n (the file's own convention).
        address = "".join(chr(ord(ch) - 0x2400) if 0x2400 <= ord(ch) < 0x2420 else ch for ch in raw)
        found.append((address, test.findtext("category") or "", test.findtext("diagnosis") or ""))
    return found


@pytest.mark.parametrize("name", ["isemail_tests.xml", "isemail_tests_original.xml"])
def test_isemail_errors_and_obsolete_syntax_are_refused(fixtures_dir: Path, name: str) -> None:
    cases = _isemail(fixtures_dir, name)
    assert len(cases) > 100
    for address, category, diagnosis in cases:
        ok, _ = _outcome(address)
        if category in ("ISEMAIL_ERR", "ISEMAIL_DEPREC"):
            assert not ok, (address, diagnosis)
        elif category in ("ISEMAIL_CFWS", "ISEMAIL_RFC5322") and ok:
            # Accepted only: spaces around the address (trimmed). A local part over 64 characters
            # (ISEMAIL_RFC5322_LOCAL_TOOLONG) is refused: email-validator's strict length rule.
            assert diagnosis == "ISEMAIL_CFWS_FWS", (address, diagnosis)
            if diagnosis == "ISEMAIL_CFWS_FWS":
                assert address != address.strip(" ")


def test_local_parts_over_64_octets_are_refused(fixtures_dir: Path) -> None:
    """RFC 5321 4.5.3.1.1: many servers refuse a longer local part. email-validator checks it
    only with strict=True (in characters); we check it ourselves, in octets of UTF-8, so every
    case it refuses in strict mode is refused here too, for the same reason."""
    cases = [c for c in _cases(fixtures_dir) if c["expect"] == "valid_unless_strict_length_checks"]
    assert len(cases) >= 3
    for case in cases:
        ok, why = _outcome(case["address"])
        assert not ok and "too long before the @-sign" in why and "too long before the @-sign" in case["error"], case
    toolong = [a for a, _, d in _isemail(fixtures_dir, "isemail_tests.xml") if d == "ISEMAIL_RFC5322_LOCAL_TOOLONG"]
    assert toolong and not any(_outcome(a)[0] for a in toolong)
    assert _outcome("a" * 200 + "@x.com") == (
        False, "The email address is too long before the @-sign (136 characters too many).")
    assert _outcome("a" * 64 + "@x.com") == (True, "a" * 64 + "@x.com")
    # 40 characters but 80 octets in UTF-8: the limit is in octets
    assert _outcome("é" * 40 + "@x.com") == (
        False, "The email address is too long before the @-sign (16 bytes too many in UTF-8).")
    assert _outcome("é" * 32 + "@x.com")[0]
    with pytest.raises(SubscriberError, match="too long before the @-sign"):
        normalize_address("a" * 65 + "@example.org")
    # An address already on file from before the rule can still be looked up (to unsubscribe it).
    assert normalize_address("A" * 65 + "@Example.org", lookup=True) == "A" * 65 + "@example.org"


def test_isemail_valid_addresses_are_accepted_except_dotless_domains(fixtures_dir: Path) -> None:
    for address, category, _ in _isemail(fixtures_dir, "isemail_tests.xml"):
        if category == "ISEMAIL_VALID_CATEGORY":
            domain = address.rsplit("@", 1)[-1]
            assert _outcome(address)[0] == ("." in domain), address


def test_normalize_keeps_local_case_and_key_is_lower_case() -> None:
    normalized = normalize_address("  Ada.Lovelace@EXAMPLE.Org\t")
    assert normalized == "Ada.Lovelace@example.org"
    assert email_key(normalized) == "ada.lovelace@example.org"
    assert normalize_address("jeff@臺網中心.tw") == "jeff@臺網中心.tw"


def test_normalize_error_names_the_address_and_why() -> None:
    with pytest.raises(SubscriberError) as info:
        normalize_address("ada@@example.org")
    assert str(info.value).startswith("ada@@example.org: ")
    with pytest.raises(SubscriberError, match="no address"):
        normalize_address("   ")


def test_line_breaks_around_an_address_are_not_silently_trimmed() -> None:
    with pytest.raises(SubscriberError):
        normalize_address("ada@example.org\r\nBcc: victim@example.org")
    with pytest.raises(SubscriberError):
        normalize_address("ada@example.org\n")


def test_clean_name_keeps_unicode_on_one_line() -> None:
    assert clean_name("  Zoë   Müller ") == "Zoë Müller"
    assert clean_name("田中\r\n花子") == "田中 花子"
    assert clean_name("Evil\r\nBcc: x@example.org") == "Evil Bcc: x@example.org"
    assert clean_name("a\x00b\u2028c\x1bd") == "ab cd"
    assert clean_name("محمد 👩\u200d🔬 می\u200cخواهم") == "محمد 👩\u200d🔬 می\u200cخواهم"


@pytest.mark.parametrize("address", ["=?utf-8?b?YWRhQGV2aWwuZXhhbXBsZQ==?=@example.com", "x=?iso-8859-1?q?a?=y@example.org"])
def test_an_encoded_word_in_the_local_part_is_refused_everywhere(address: str) -> None:
    """Valid to email-validator, but a mail program decodes it into another address: refused by
    the one check every path uses (CLI, import, web), not only by the web form."""
    with pytest.raises(ValueError, match="encoded word"):
        check_address(address)
    assert check_address("!#$%&'*+-/=?^_`.{|}~@example.tld")  # "=?" alone is not an encoded word
