"""Render benchmark: personalised messages for many subscribers, beside the straightforward
way, in the same run.

    python bench/bench_render.py [--subscribers 100000] [--naive 1000] [--papers 10] [--out FILE.md]
    python bench/bench_render.py --quick

"ours": the issue is rendered once (Jinja2 + premailer), a ``MessageFactory`` serialises the
skeleton once, then each subscriber's message is built to its final bytes (To, Message-ID,
signed unsubscribe URL, both bodies filled in and base64-encoded). The baseline: the issue
rendered and inlined once too, then for each subscriber a fresh ``EmailMessage`` built from that
HTML and text, filled in, serialised with ``as_bytes()`` (what a careful user of the email
package would write); measured on a sample (``--naive``) and reported per message. Targets: at
most 0.3 ms per message, at least 40x cheaper than the baseline.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.config import load_config  # noqa: E402
from newsletter.models import Issue, Paper, Subscriber  # noqa: E402
from newsletter.render import placeholders  # noqa: E402
from newsletter.render.issue import render_issue  # noqa: E402
from newsletter.render.messages import MessageFactory  # noqa: E402
from newsletter.render.templates import make_environment  # noqa: E402
from newsletter.sources import parse_bytes  # noqa: E402
from newsletter.tokens import Signer  # noqa: E402

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
NAMES = ["Ada Lovelace", "Grace Hopper", "", "Seán O'Brien", "山田 太郎", "Zoë Müller-Lüdenscheidt",
         'The "Real" Dr. Who', "Okafor, Ngozi", "Alan Turing", "Katherine Johnson"]


def sample_papers(count: int) -> list[Paper]:
    """The bundled sample papers, repeated with new ids up to ``count``."""
    path = ROOT / "newsletter" / "data" / "sample-papers.json"
    papers = list(parse_bytes(path.read_bytes(), path.name).papers)
    out = []
    for i in range(count):
        base = papers[i % len(papers)]
        out.append(replace(base, id=f"{base.id}-{i}", first_seen_at=NOW) if i >= len(papers) else base)
    return out


def subscribers(count: int) -> list[Subscriber]:
    return [Subscriber(email=f"reader{i}@example.org", name=NAMES[i % len(NAMES)], id=i) for i in range(count)]


def naive_message(rendered, config, signer: Signer, sub: Subscriber) -> bytes:  # type: ignore[no-untyped-def]
    """A fresh EmailMessage per subscriber from the issue rendered and inlined once."""
    url = f"{config['newsletter.base_url']}/unsubscribe/{signer.unsubscribe_token(sub.email)}"
    values = placeholders.Personal(name=placeholders.greeting_name(sub.name), email=sub.email, unsubscribe_url=url)
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = config["newsletter.from"]
    msg["To"] = f"{sub.name} <{sub.email}>" if sub.name and "," not in sub.name and '"' not in sub.name else sub.email
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(NOW)
    msg["Message-ID"] = make_msgid(domain="example.org")
    msg["List-Unsubscribe"] = f"<{url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(placeholders.fill(rendered.text, values.for_text()))
    msg.add_alternative(placeholders.fill(rendered.html, values.for_html()), subtype="html")
    return msg.as_bytes()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--naive", type=int, default=1_000, help="naive messages measured (a sample)")
    parser.add_argument("--papers", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as Markdown here")
    parser.add_argument("--quick", action="store_true", help="10,000 subscribers, 200 naive")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.naive = 10_000, 200

    config = load_config(env={"NEWSLETTER_NEWSLETTER_BASE_URL": "https://papers.example.org"})
    signer = Signer("bench-secret-key")
    issue = Issue(key="2026-W48", number=1, title="Trending Papers Weekly #1",
                  papers=tuple(sample_papers(args.papers)), created_at=NOW)
    env = make_environment()
    render_issue(issue, config, env=env)  # warm the template and CSS caches

    started = time.perf_counter()
    rendered = render_issue(issue, config, env=env)
    factory = MessageFactory(rendered, config, signer, now=NOW)
    once_s = time.perf_counter() - started
    subs = subscribers(args.subscribers)
    total_bytes = 0
    started = time.perf_counter()
    for sub in subs:
        total_bytes += len(factory.build(sub).data)
    ours_s = time.perf_counter() - started
    ours_ms = (ours_s + once_s) / len(subs) * 1000

    sample = subs[:args.naive]
    started = time.perf_counter()
    for sub in sample:
        naive_message(rendered, config, signer, sub)
    naive_s = time.perf_counter() - started
    naive_ms = naive_s / len(sample) * 1000

    html_kb = len(rendered.html.encode()) / 1000
    ratio = naive_ms / ours_ms
    rows = [
        ("issue", f"{args.papers} papers, HTML part {html_kb:.1f} KB, message {total_bytes / len(subs) / 1000:.1f} KB"),
        ("render once (Jinja2 + premailer + skeleton)", f"{once_s * 1000:.1f} ms"),
        (f"ours: {len(subs):,} messages", f"{ours_s:.2f} s, {ours_ms:.3f} ms/message (render included)"),
        (f"baseline, EmailMessage per subscriber: {len(sample):,} messages (sample)",
         f"{naive_s:.2f} s, {naive_ms:.2f} ms/message"),
        ("baseline, projected to the same count", f"{naive_ms * len(subs) / 1000:.0f} s"),
        ("speed-up", f"{ratio:.0f}x"),
        ("targets", f"<= 0.3 ms/message: {'met' if ours_ms <= 0.3 else 'NOT met'}; "
                    f">= 40x: {'met' if ratio >= 40 else 'NOT met'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.out:
        lines = [f"Python {platform.python_version()} on {platform.machine()}, {platform.system()}", "",
                 "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
        args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0 if ours_ms <= 0.3 and ratio >= 40 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
