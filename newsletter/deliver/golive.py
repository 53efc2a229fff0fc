"""The go-live checklist: what must be true before real mail leaves over SMTP.

A first real send made with the shipped placeholders (``digest@example.org``, "1 Example
Street") or without an https unsubscribe page goes to every subscriber at once and cannot be
taken back; mailbox providers judge a sender by its first sends. So a real SMTP send (not the
outbox, not ``--dry-run``, not a ``--to`` test copy) refuses to start while any item here fails,
naming each problem and the key that fixes it. ``newsletter check`` prints the same list, and
also asks the SMTP server (connect, STARTTLS, login, MAIL FROM; no message is sent).

``allow_placeholders`` (``--allow-placeholders``) passes the placeholder items only; the https
one never: without it there is no one-click unsubscribe (RFC 8058), which Gmail and Yahoo
require of bulk senders.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.utils import parseaddr
from urllib.parse import urlsplit

from newsletter.config import BY_NAME, Config
from newsletter.deliver.transports import SmtpSettings, reply_text
from newsletter.errors import ConfigError, ConfigErrors, NewsletterError
from newsletter.net import is_loopback

PLACEHOLDER_DOMAINS = ("example.org", "example.com", "example.net")
# Top-level domains reserved for documentation and tests (RFC 2606): mail there goes nowhere.
RESERVED_TLDS = ("example", "test", "invalid", "localhost")


@dataclass(frozen=True)
class Check:
    """One line of the checklist: ``ok``, or what is wrong and the key that fixes it."""

    name: str
    ok: bool
    detail: str
    key: str = ""
    placeholder: bool = False  # passed by --allow-placeholders


class GoLiveError(ConfigErrors):
    """A real send refused before its first message: one line per problem."""

    def __init__(self, errors: list[ConfigError]) -> None:
        super().__init__(errors)
        self.message = f"{len(errors)} problem(s) to fix before mail goes out for real"

    def __str__(self) -> str:
        lines = "\n".join(f"  - {error}" for error in self.errors)
        return (f"refusing to send for real: {self.message}:\n{lines}\n"
                f"  (`newsletter check` shows the whole checklist; `newsletter send --dry-run` or the outbox "
                f"need none of this)")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def _is_placeholder_domain(domain: str) -> bool:
    return (any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_DOMAINS)
            or domain.rpartition(".")[2] in RESERVED_TLDS)


def settings_checks(config: Config) -> list[Check]:
    """The checks that need only the configuration."""
    checks = [_base_url_check(config), _from_check(config), _postal_check(config)]
    if config.smtp_enabled:
        try:
            SmtpSettings.from_config(config)
            checks.append(Check("SMTP settings", True, f"{config['smtp.host']}:{config['smtp.port']} "
                                f"({config['smtp.security']})"))
        except NewsletterError as exc:
            checks.append(Check("SMTP settings", False, exc.message, exc.where or "smtp"))
    return checks


def _base_url_check(config: Config) -> Check:
    url = (config["newsletter.base_url"] or "").strip()
    name = "unsubscribe page over https"
    if not url:
        return Check(name, False, "newsletter.base_url is empty, so the unsubscribe link would be a mailto: to "
                     "the From address; set it to the https address where `newsletter serve` answers",
                     "newsletter.base_url")
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return Check(name, True, url)
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return Check(name, True, f"{url} (loopback http: for local testing only)")
    return Check(name, False, f"newsletter.base_url = {url!r} is not an https URL: one-click unsubscribe "
                 f"(RFC 8058, required by Gmail and Yahoo) needs https", "newsletter.base_url")


def _from_check(config: Config) -> Check:
    raw = (config["newsletter.from"] or "").strip()
    name = "From address"
    address = parseaddr(raw)[1]
    if not address or "@" not in address:
        return Check(name, False, "newsletter.from is empty or not an address", "newsletter.from", placeholder=True)
    if raw == BY_NAME["newsletter.from"].default:
        return Check(name, False, f"newsletter.from is still the shipped placeholder {raw!r}",
                     "newsletter.from", placeholder=True)
    domain = _domain(address)
    if _is_placeholder_domain(domain):
        return Check(name, False, f"newsletter.from uses {domain}, a domain reserved for examples: nobody can "
                     f"receive replies there and receivers reject it", "newsletter.from", placeholder=True)
    return Check(name, True, raw)


def _postal_check(config: Config) -> Check:
    value = (config["newsletter.postal_address"] or "").strip()
    name = "postal address in the footer"
    if not value:
        return Check(name, False, "newsletter.postal_address is empty (anti-spam laws such as CAN-SPAM ask for "
                     "one)", "newsletter.postal_address", placeholder=True)
    if value == BY_NAME["newsletter.postal_address"].default:
        return Check(name, False, f"newsletter.postal_address is still the shipped placeholder {value!r}",
                     "newsletter.postal_address", placeholder=True)
    return Check(name, True, value)


def require_go_live(config: Config, *, allow_placeholders: bool = False) -> None:
    """Raise ``GoLiveError`` naming every failing item (see the module's docstring)."""
    problems = [ConfigError(c.detail, where=c.key) for c in settings_checks(config)
                if not c.ok and not (allow_placeholders and c.placeholder)]
    if problems:
        raise GoLiveError(problems)


def smtp_checks(config: Config) -> list[Check]:
    """Ask the SMTP server what a send would meet: reachable, STARTTLS, login, our MAIL FROM.
    Ends with RSET and QUIT: no message is sent."""
    if not config.smtp_enabled:
        return [Check("SMTP server", False, "no [smtp] host: mail goes to the outbox folder", "smtp.host")]
    try:
        settings = SmtpSettings.from_config(config)
    except NewsletterError:
        return []  # already a failing item of settings_checks
    where = f"{settings.host}:{settings.port}"
    checks: list[Check] = []
    conn: smtplib.SMTP | None = None
    try:
        context = settings.ssl_context() if settings.security != "none" else None
        if settings.security == "tls":
            conn = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout_s, context=context)
        else:
            conn = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout_s)
        code, reply = conn.ehlo()
        checks.append(Check("SMTP server answers", code == 250, f"{where}: {code} {reply_text(reply)}", "smtp.host"))
        if settings.security == "starttls":
            offered = conn.has_extn("starttls")
            checks.append(Check("STARTTLS offered", offered, "yes" if offered else
                                f"{where} does not offer STARTTLS", "smtp.security"))
            if not offered:
                return checks
            conn.starttls(context=context)
            conn.ehlo()
        elif settings.security == "tls":
            checks.append(Check("TLS", True, "implicit TLS, certificate verified"))
        if settings.username:
            conn.login(settings.username, settings.password)
            checks.append(Check("login accepted", True, settings.username))
        sender, key = _envelope_sender(config)
        code, reply = conn.mail(sender)
        checks.append(Check(f"MAIL FROM:<{sender}> accepted", code == 250, f"{code} {reply_text(reply)}", key))
        conn.rset()
    except smtplib.SMTPAuthenticationError as exc:
        checks.append(Check("login accepted", False, f"{exc.smtp_code} {reply_text(exc.smtp_error)}",
                            "smtp.username"))
    except smtplib.SMTPResponseException as exc:
        checks.append(Check("SMTP server answers", False, f"{where}: {exc.smtp_code} {reply_text(exc.smtp_error)}",
                            "smtp.host"))
    except ssl.SSLError as exc:
        checks.append(Check("TLS", False, f"{where}: {exc}", "smtp.ca_file"))
    except (OSError, smtplib.SMTPException, NewsletterError) as exc:
        checks.append(Check("SMTP server answers", False, f"{where}: {exc}", "smtp.host"))
    finally:
        if conn is not None:
            try:
                conn.quit()
            except Exception:  # noqa: BLE001 - the server may be gone already
                conn.close()
    return checks


def _envelope_sender(config: Config) -> tuple[str, str]:
    """The envelope sender a send would use, and the key that sets it: the From address, or
    with ``[bounces] return_path`` its VERP form (``bounces+...@domain``), as the issue goes out."""
    return_path = (config["bounces.return_path"] or "").strip()
    if return_path:
        local, _, domain = return_path.rpartition("@")
        return f"{local}+check@{domain}", "bounces.return_path"
    return parseaddr(config["newsletter.from"])[1], "newsletter.from"


def dns_advice(config: Config) -> list[str]:
    """The DNS records the From domain needs for receivers to trust it (not looked up: this
    tool needs no network for it; check them with your DNS provider or `dig TXT`)."""
    domain = _domain(parseaddr(config["newsletter.from"])[1]) or "your-domain"
    relay = config["smtp.host"] or "your relay"
    return [
        f"SPF: a TXT record on {domain} that allows the relay, e.g. \"v=spf1 a:{relay} -all\", or the include: "
        f"your email provider documents",
        f"DKIM: the relay signs mail for {domain}; publish the key it gives you at <selector>._domainkey.{domain}",
        f"DMARC: a TXT record on _dmarc.{domain}, e.g. \"v=DMARC1; p=none; rua=mailto:postmaster@{domain}\", "
        f"tightened to p=quarantine once reports look clean",
    ]
