"""Settings declared once, as data, and resolved from defaults -> newsletter.toml -> env -> flags.

The same ``SETTINGS`` table validates the TOML file, names the environment variables, feeds
``newsletter init``'s commented file and writes docs/configuration.md (a test checks it), so a setting
can never exist in one place and be missing from another.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsletter.errors import ConfigError, ConfigErrors
from newsletter.schedule_spec import parse_job_spec
from newsletter.files import not_regular_file

ENV_PREFIX = "NEWSLETTER_"


@dataclass(frozen=True)
class Setting:
    """One configuration key: where it lives, its type, default and meaning."""

    section: str
    key: str
    type: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    check: Callable[[Any], str | None] | None = None  # what is wrong with a value, or None
    # "path" or "sqlite_url": a relative path in newsletter.toml is relative to that file.
    path: str | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


def timezone_problem(name: str) -> str | None:
    """What is wrong with a timezone name, or None when both zoneinfo and pytz (what the
    ``schedule`` library resolves zones with) know it. Checked with the rest of the settings,
    so a typo is a ``newsletter.toml:LINE:`` error for every command, not a traceback later."""
    import pytz  # here: pytz loads its zone list on import, and most commands never name a zone

    try:
        ZoneInfo(name)
        pytz.timezone(name)
    except (ZoneInfoNotFoundError, ValueError, KeyError):
        close = difflib.get_close_matches(name, pytz.all_timezones, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown timezone {name!r}{hint}; use an IANA name such as Europe/Berlin"
    return None


def schedule_problem(text: str) -> str | None:
    """What is wrong with a job's schedule string (``monday at 08:00``), or None."""
    try:
        parse_job_spec(text)
    except (ValueError, OverflowError) as exc:
        return str(exc)
    return None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"5m"``, ``"24h"`` or ``"2d"``; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration such as 90s, 5m, 24h or 2d")
    seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
    if not 0 < seconds <= 365 * 86400:
        raise ValueError(f"{text!r} must be more than 0 and at most a year")
    return seconds


def accent_problem(text: str) -> str | None:
    """An accent colour must be a 6-digit hex colour (some mail clients read no other form)."""
    if text and not re.fullmatch(r"#[0-9a-fA-F]{6}", text):
        return f"{text!r} is not a colour such as #1a56db (a # and six hex digits)"
    if text:
        # White button text sits on it and it colours links on white: WCAG AA asks 4.5:1.
        channels = [int(text[i:i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        contrast = 1.05 / (0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2] + 0.05)
        if contrast < 4.5:
            return (f"{text} is too light: {contrast:.1f}:1 against white, and links and buttons need 4.5:1 "
                    "(try a darker shade)")
    return None


def logo_problem(text: str) -> str | None:
    """A logo is fetched by every reader's mail client: an absolute https URL only."""
    if text and not re.fullmatch(r"https://[^\s<>\"']+", text):
        return f"{text!r} is not an absolute https URL of an image"
    return None


def duration_problem(text: str) -> str | None:
    """What is wrong with a duration setting, or None."""
    try:
        parse_duration(text)
    except ValueError as exc:
        return str(exc)
    return None


SETTINGS: tuple[Setting, ...] = (
    # [newsletter]
    Setting("newsletter", "name", str, "Trending Papers Weekly", "The newsletter's name: subject, List-Id, footer."),
    Setting("newsletter", "from", str, "Trending Papers <digest@example.org>", "The From address of every message."),
    Setting("newsletter", "reply_to", str, "", "Reply-To address; empty for none."),
    Setting("newsletter", "base_url", str, "", "Where the web app answers (unsubscribe, confirm, archive); empty: mailto unsubscribe."),
    Setting("newsletter", "postal_address", str, "1 Example Street, City", "Postal address shown in the footer (required by anti-spam law)."),
    Setting("newsletter", "secret_key_env", str, "NEWSLETTER_SECRET_KEY", "Environment variable holding the key that signs tokens."),
    Setting("newsletter", "templates", str, "", "Folder of your own templates; each file there overrides the default of that name.",
            path="path"),
    Setting("newsletter", "logo_url", str, "", "https URL of a logo shown above the name in the issue's header (about 48 px high); empty: none.",
            check=logo_problem),
    Setting("newsletter", "accent", str, "#1a56db", "Accent colour of links, buttons and the rank (#rrggbb); keep it dark enough for white text.",
            check=accent_problem),
    Setting("newsletter", "welcome", bool, True, "Send a welcome message (templates/welcome.*) when a subscription is confirmed."),
    Setting("newsletter", "editor_note", str, "", "Markdown text, or a path to a Markdown file, shown at the top of the next issue."),
    # [sources]
    Setting("sources", "urls", list, [], "Paths or http(s) URLs ingested by `newsletter ingest` without arguments."),
    Setting("sources", "timeout_s", float, 20.0, "Timeout of one feed download, in seconds.", minimum=0.1),
    Setting("sources", "max_bytes", int, 20_000_000, "Largest feed accepted, in bytes.", minimum=1),
    # [issue]
    Setting("issue", "days", int, 7, "The window a weekly issue draws from, in days.", minimum=1, maximum=3650),
    Setting("issue", "max_papers", int, 10, "At most this many papers in one issue.", minimum=1),
    Setting("issue", "min_score", int, 0, "Papers with a known score below this are left out.", minimum=0),
    Setting("issue", "subject_chars", int, 60, "Longest subject line, in characters (the top paper's title is cut on a word).", minimum=20, maximum=200),
    Setting("issue", "excerpt_chars", int, 420, "Longest abstract excerpt, in characters (cut after a whole sentence).", minimum=80, maximum=5000),
    Setting("issue", "max_authors", int, 3, "Authors named before \"et al.\".", minimum=1, maximum=50),
    # [store]
    Setting("store", "url", str, "sqlite:///newsletter.db", "SQLAlchemy URL of the store: a SQLite file or postgresql://...",
            path="sqlite_url"),
    # [smtp]
    Setting("smtp", "host", str, "", "SMTP server; without it mail goes to the outbox folder."),
    Setting("smtp", "port", int, 587, "SMTP port.", minimum=1, maximum=65535),
    Setting("smtp", "security", str, "starttls", "starttls | tls | none (none only for a loopback host).", choices=("starttls", "tls", "none")),
    Setting("smtp", "username", str, "", "SMTP login; the password comes from NEWSLETTER_SMTP_PASSWORD."),
    Setting("smtp", "timeout_s", float, 30.0, "Timeout of one SMTP command, in seconds.", minimum=0.1),
    Setting("smtp", "ca_file", str, "", "Extra CA certificate (PEM) to trust, for a private server.", path="path"),
    # [delivery]
    Setting("delivery", "outbox", str, "outbox", "Folder of .eml files: the default transport.", path="path"),
    Setting("delivery", "concurrency", int, 4, "Parallel SMTP connections.", minimum=1),
    Setting("delivery", "rate_per_second", float, 10.0, "Messages per second, all workers together; 0: no limit.", minimum=0),
    Setting("delivery", "daily_cap", int, 0, "At most this many messages per 24 hours; 0: none.", minimum=0),
    Setting("delivery", "max_attempts", int, 30, "At most this many tries of a message that meets temporary failures.", minimum=1),
    Setting("delivery", "retry_delay", str, "1m", "First wait before a temporary failure is retried; doubles per try, at most 1h.", check=duration_problem),
    Setting("delivery", "retry_for", str, "24h", "A message still failing temporarily after retries spanning this long fails for good.", check=duration_problem),
    # [schedule]
    Setting("schedule", "timezone", str, "UTC", "IANA timezone of the schedule times.", check=timezone_problem),
    Setting("schedule", "ingest", str, "daily at 06:00", "When `newsletter run` ingests.", check=schedule_problem),
    Setting("schedule", "send", str, "monday at 08:00", "When `newsletter run` sends the weekly issue.",
            check=schedule_problem),
    Setting("schedule", "grace_hours", float, 48.0, "A send missed by at most this long is caught up.", minimum=0),
    Setting("schedule", "bounces", str, "every hour", "When `newsletter run` reads the bounce mailbox (only with [bounces] mailbox set).",
            check=schedule_problem),
    # [web]
    Setting("web", "host", str, "127.0.0.1", "Address `newsletter serve` listens on."),
    Setting("web", "port", int, 8000, "Port `newsletter serve` listens on.", minimum=0, maximum=65535),
    Setting("web", "preview_token_env", str, "NEWSLETTER_PREVIEW_TOKEN", "Environment variable with the token that opens the preview beyond loopback."),
    Setting("web", "subscribe_per_client_per_hour", int, 10, "Subscribe requests per hour from one client: an IPv4 address, or an IPv6 /64 network (one host usually holds a whole /64).", minimum=1),
    Setting("web", "confirmations_per_address_per_hour", int, 3, "Confirmation messages per hour to one address; more requests get the same answer and send nothing.", minimum=1),
    Setting("web", "confirmations_per_domain_per_hour", int, 30, "Confirmation messages per hour to the addresses of one domain.", minimum=1),
    Setting("web", "confirmations_per_hour", int, 200, "Confirmation messages per hour in all: the ceiling on what the subscribe form can make the server send.", minimum=1),
    Setting("web", "unsubscribe_wait_s", float, 5.0, "How long an unsubscribe waits for the store's write lock before it is spooled to a file beside the store (applied by the next writer).", minimum=0.001),
    # [bounces]
    Setting("bounces", "return_path", str, "", "Envelope sender for issues, e.g. bounces@papers.example.org; each message then goes out "
            "from bounces+TOKEN@... (VERP) so a bounce names its issue and reader. Empty: the From address, no VERP."),
    Setting("bounces", "mailbox", str, "", "Where bounces arrive, read by `newsletter bounces` and the scheduler: a maildir folder, "
            "an mbox file, imaps://user@host/INBOX or pop3s://user@host (password from NEWSLETTER_BOUNCES_PASSWORD)."),
    Setting("bounces", "processed", str, "move:Processed", "What happens to a message once acted on: move:FOLDER, delete or flag.",
            check=lambda v: None if v in ("delete", "flag") or (v.startswith("move:") and len(v) > 5)
            else f"{v!r}: use move:FOLDER, delete or flag"),
    Setting("bounces", "soft_limit", int, 3, "This many soft bounces (mailbox full, deferred for good) within soft_days mark an address bounced.",
            minimum=1),
    Setting("bounces", "soft_days", int, 30, "The window soft bounces are counted in, in days.", minimum=1, maximum=3650),
    Setting("bounces", "hook_secret_env", str, "NEWSLETTER_HOOK_SECRET", "Environment variable with the shared secret of "
            "the generic signed webhook POST /hooks/bounces (unset: the hook answers 404)."),
    Setting("bounces", "postmark_auth_env", str, "NEWSLETTER_POSTMARK_HOOK_AUTH", "Environment variable with user:password "
            "of Postmark's webhook POST /hooks/postmark, sent as HTTP basic auth (unset: 404)."),
    Setting("bounces", "ses_topic_arn", str, "", "The SNS topic of Amazon SES notifications accepted at POST /hooks/ses "
            "(empty: the hook answers 404)."),
    Setting("bounces", "ses_cert_host", str, r"sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?", "Regular expression an SNS "
            "SigningCertURL's host (and port) must match before the certificate is fetched."),
    Setting("bounces", "ses_ca_file", str, "", "CA certificates (PEM) trusted when fetching the SNS signing certificate; "
            "empty: the system's.", path="path"),
)

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in SETTINGS))


class Config:
    """Resolved settings. ``config["issue.days"]``; ``config.origin("issue.days")`` says where from."""

    def __init__(self, values: Mapping[str, Any], origins: Mapping[str, str], path: Path | None,
                 sections_present: frozenset[str] = frozenset()) -> None:
        self._values = dict(values)
        self._origins = dict(origins)
        self.path = path
        self.sections_present = sections_present
        self.warnings: tuple[str, ...] = ()  # what was ignored (an unknown NEWSLETTER_* variable)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def origin(self, name: str) -> str:
        return self._origins.get(name, "default")

    def section(self, section: str) -> dict[str, Any]:
        return {k.split(".", 1)[1]: v for k, v in self._values.items() if k.startswith(section + ".")}

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Config":
        """A copy with command-line flags applied (validated like every other value)."""
        values, origins = dict(self._values), dict(self._origins)
        for name, raw in overrides.items():
            if raw is None:
                continue
            setting = BY_NAME[name]
            values[name] = _coerce(setting, raw, where="command line", line=None)
            origins[name] = "command line"
        config = Config(values, origins, self.path, self.sections_present)
        config.warnings = self.warnings
        return config

    @property
    def smtp_enabled(self) -> bool:
        """Mail goes out by SMTP only when [smtp] names a host; otherwise to the outbox."""
        return bool(self["smtp.host"])

    @property
    def store_url(self) -> str:
        return self["store.url"]


def _line_of(text: str, section: str, key: str | None = None) -> int | None:
    """The line of ``[section]`` (or of ``key`` inside it) in the TOML text, for error messages.

    tomllib keeps no positions, so we look the key up in the text; good enough for the flat
    tables this file has.
    """
    current = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.\"' -]+?)\s*\]", stripped)
        if header:
            current = header.group(1).strip("\"'")
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section:
            m = re.match(r"^\"?([A-Za-z0-9_-]+)\"?\s*=", stripped)
            if m and m.group(1) == key:
                return number
    return None


def _coerce(setting: Setting, raw: Any, *, where: str, line: int | None) -> Any:
    """Check and convert one value to the setting's type; strings from env are parsed."""

    def fail(why: str) -> ConfigError:
        return ConfigError(f"{setting.name}: {why}", where=where, line=line)

    value = raw
    if setting.type is list:
        if isinstance(raw, str):
            raw = raw.strip()
            if raw.startswith("["):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise fail(f"not a JSON list ({exc.msg})") from None
            else:
                raw = [part.strip() for part in raw.split(",") if part.strip()]
        if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
            raise fail(f"expected a list of strings, got {raw!r}")
        value = list(raw)
    elif setting.type is bool:
        if isinstance(raw, str):
            if raw.lower() in ("1", "true", "yes", "on"):
                raw = True
            elif raw.lower() in ("0", "false", "no", "off"):
                raw = False
        if not isinstance(raw, bool):
            raise fail(f"expected true or false, got {raw!r}")
        value = raw
    elif setting.type is int:
        if isinstance(raw, str):
            try:
                raw = int(raw.strip())
            except ValueError:
                raise fail(f"expected a whole number, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise fail(f"expected a whole number, got {raw!r}")
        value = raw
    elif setting.type is float:
        if isinstance(raw, str):
            try:
                raw = float(raw.strip())
            except ValueError:
                raise fail(f"expected a number, got {raw!r}") from None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise fail(f"expected a number, got {raw!r}")
        value = float(raw)
        if not math.isfinite(value):  # nan would pass every comparison below, inf overflow later
            raise fail(f"expected a finite number, got {raw!r}")
    elif setting.type is str:
        if not isinstance(raw, str):
            raise fail(f"expected a string, got {raw!r}")
        value = raw
    if setting.minimum is not None and value < setting.minimum:
        raise fail(f"must be at least {setting.minimum:g}, got {value!r}")
    if setting.maximum is not None and value > setting.maximum:
        raise fail(f"must be at most {setting.maximum:g}, got {value!r}")
    if setting.choices is not None and value not in setting.choices:
        raise fail(f"must be one of {', '.join(setting.choices)}, got {value!r}")
    problem = setting.check(value) if setting.check is not None else None
    if problem:
        raise fail(problem)
    return value


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Resolve every setting. ``path`` None means ``./newsletter.toml`` if it exists.

    A wrong key or value in the file is reported as ``newsletter.toml:LINE: ...`` (all of them,
    as ``ConfigErrors`` when there are several); an explicit
    path that does not exist is an error, a missing default file is not (embedded defaults).
    """
    env = os.environ if env is None else env
    explicit = path is not None
    file_path = Path(path) if path is not None else Path("newsletter.toml")
    values: dict[str, Any] = {s.name: (list(s.default) if isinstance(s.default, list) else s.default) for s in SETTINGS}
    origins: dict[str, str] = {}
    present: set[str] = set()
    used_path: Path | None = None
    # Every wrong key and value is reported at once, so one edit fixes them all.
    errors: list[ConfigError] = []

    if file_path.exists():
        used_path = file_path
        text, data = _read_toml(file_path)
        present |= _apply_file(file_path, text, data, values, origins, errors)
    elif explicit:
        raise ConfigError("no such configuration file", where=str(file_path))

    for setting in SETTINGS:
        if setting.env in env:
            try:
                values[setting.name] = _coerce(setting, env[setting.env], where=f"environment {setting.env}",
                                               line=None)
            except ConfigError as exc:
                errors.append(exc)
                continue
            origins[setting.name] = f"environment {setting.env}"
            present.add(setting.section)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)

    config = Config(values, origins, used_path, frozenset(present))
    config.warnings = _unknown_environment(env, values)
    return config.with_overrides(overrides or {})


def _read_toml(file_path: Path) -> tuple[str, dict[str, Any]]:
    """The file's text and its TOML tables; a file that cannot be read or parsed is an error
    naming the file (and the line, for TOML)."""
    problem = not_regular_file(file_path)
    if problem:  # a FIFO would wait for a writer, /dev/zero never end
        raise ConfigError(problem, where=str(file_path))
    try:
        text = file_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", where=str(file_path)) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError(f"not valid TOML: {exc}", where=str(file_path),
                          line=int(m.group(1)) if m else None) from None


def _apply_file(file_path: Path, text: str, data: dict[str, Any], values: dict[str, Any], origins: dict[str, str],
                errors: list[ConfigError]) -> set[str]:
    """Put the file's values into ``values`` (and where each came from into ``origins``),
    adding every wrong section, key or value to ``errors``; returns the sections present."""
    present: set[str] = set()
    for section, table in data.items():
        if section not in SECTIONS:
            errors.append(ConfigError(f"unknown section [{section}] (known: {', '.join(SECTIONS)})",
                                      where=str(file_path), line=_line_of(text, section)))
            continue
        if not isinstance(table, dict):
            errors.append(ConfigError(f"{section} must be a [{section}] table", where=str(file_path),
                                      line=_line_of(text, section)))
            continue
        present.add(section)
        for key, raw in table.items():
            name = f"{section}.{key}"
            line = _line_of(text, section, key)
            if name not in BY_NAME:
                known = ", ".join(s.key for s in SETTINGS if s.section == section)
                errors.append(ConfigError(f"unknown key {key!r} in [{section}] (known: {known})",
                                          where=str(file_path), line=line))
                continue
            if key in ("password",):
                errors.append(ConfigError("secrets come only from the environment", where=str(file_path), line=line))
                continue
            try:
                values[name] = _relative_to(file_path, BY_NAME[name],
                                            _coerce(BY_NAME[name], raw, where=str(file_path), line=line))
            except ConfigError as exc:
                errors.append(exc)
                continue
            origins[name] = f"{file_path}:{line}" if line else str(file_path)
    for setting in SETTINGS:  # the defaults' relative paths follow the file too
        if setting.name not in origins:
            values[setting.name] = _relative_to(file_path, setting, values[setting.name])
    return present


def _relative_to(config_file: Path, setting: Setting, value: Any) -> Any:
    """A relative path from the file made relative to the file's folder, not to wherever the
    command runs (``--config ../site/newsletter.toml`` must not make a new empty store here).
    Values from the environment and flags are the user's own: they stay relative to the
    current folder."""
    if setting.path is None or not isinstance(value, str) or not value.strip():
        return value
    folder = config_file.parent
    if setting.path == "path":
        path = Path(value).expanduser()
        return value if path.is_absolute() else str(folder / path)
    prefix, sep, rest = value.partition(":///")   # sqlite:///relative.db, sqlite+pysqlite:///...
    if not prefix.startswith("sqlite") or not sep or not rest or rest.startswith((":memory:", "file:")):
        return value
    path_text, query_sep, query = rest.partition("?")
    path = Path(path_text).expanduser()
    if path.is_absolute():
        return value
    return f"{prefix}:///{folder / path}{query_sep}{query}"


# Read from the environment but not settings: the secrets and the configuration file's path.
_OTHER_VARIABLES = frozenset({f"{ENV_PREFIX}CONFIG", f"{ENV_PREFIX}SMTP_PASSWORD", f"{ENV_PREFIX}BOUNCES_PASSWORD"})


def _unknown_environment(env: Mapping[str, str], values: Mapping[str, Any]) -> tuple[str, ...]:
    """A warning for each ``NEWSLETTER_*`` variable that is no setting: a misspelt
    ``NEWSLETTER_SMTP_HOSTNAME`` would otherwise leave mail going quietly to the outbox."""
    known = {s.env for s in SETTINGS} | _OTHER_VARIABLES | {
        values["newsletter.secret_key_env"], values["web.preview_token_env"],
        values["bounces.hook_secret_env"], values["bounces.postmark_auth_env"]}
    warnings = []
    for name in sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in known):
        close = difflib.get_close_matches(name, sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"environment {name}: not a setting, ignored{hint}")
    return tuple(warnings)
