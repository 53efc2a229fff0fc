"""Assemble README.md (and bench/README.md) from the per-area sections in docs/.

    python docs/build_readme.py

Edit the sections in docs/, never README.md itself; the configuration table comes from
newsletter.config.SETTINGS, so a new setting is documented by declaring it.
"""
import re, sys
from pathlib import Path
root = Path(__file__).resolve().parent.parent; d = root / "docs"
sys.path.insert(0, str(root))
from newsletter.config import SETTINGS, SECTIONS
esc = lambda t: t.replace("|", "\\|")
table = []
for sec in SECTIONS:
    table.append(f"\n`[{sec}]`\n\n| key | default | environment | meaning |\n|---|---|---|---|")
    for s in SETTINGS:
        if s.section != sec: continue
        dflt = repr(s.default) if not isinstance(s.default, str) else f'"{s.default}"'
        table.append(f"| `{s.name}` | `{esc(dflt)}` | `{s.env}` | {esc(s.help)} |")
head = '''# newsletter

Turn trending research papers into a weekly email digest and deliver it to your subscribers, from
your own machine. `newsletter` ingests papers from files and feeds (arXiv, Hugging Face daily papers,
any RSS/Atom/JSON Feed blog), keeps them in a SQLite store, composes the week's best into an issue,
renders it as a real HTML email with a plain-text part, and delivers it through SMTP or to a local
outbox folder, with a ledger that survives crashes. A scheduler runs it unattended, and a small web
app takes subscriptions (double opt-in), one-click unsubscribes and serves the archive.

## Two commands

Install and run the whole pipeline on embedded defaults (no configuration, no SMTP server): ingest
the bundled sample papers, add the addresses from `subscribers.example.csv`, render the next issue to
`preview/` (open the `.html` file in a browser) and deliver it to the `outbox/` folder, one `.eml`
file per subscriber:

```sh
pip install . && newsletter ingest && newsletter subscribers import subscribers.example.csv && newsletter preview && newsletter send
```

Install and run the tests (`.ci/run` installs Debian's `chromium` and `spamassassin` first, then runs
exactly this):

```sh
pip install ".[test]" && python3 -m pytest -q -p no:cacheprovider
```

Benchmarks: `python3 bench/run.py` (figures in [bench/README.md](bench/README.md)).

## A week with newsletter

```sh
newsletter init mylist && cd mylist     # newsletter.toml, templates/, subscribers.csv to edit
newsletter ingest                       # the feeds in [sources] urls
newsletter papers                       # what the next issue would hold
newsletter preview --serve --open       # look at it in a browser before anything is sent
newsletter send --to me@example.org     # one test copy
newsletter send                         # everyone, once
newsletter run                          # or let the scheduler do all of it every week
```

'''
parts = [head]
for name in ("ingest", "render", "subscribers", "deliver", "scheduler", "web"):
    text = (d / f"{name}.md").read_text(encoding="utf-8").strip() + "\n\n"
    parts.append(text)
parts.append('''## Configuration

Every key is optional. Values come from the embedded defaults, then `newsletter.toml` (or the file
given by `--config`), then `NEWSLETTER_<SECTION>_<KEY>` environment variables, then command-line
flags. A wrong key or value is reported with its place, for example
`newsletter.toml:12: issue.max_papers: must be at least 1, got 0`, and nothing runs. Every wrong
key and value in the file and the environment is reported at once, one line each; a
`NEWSLETTER_*` variable that is no setting (a misspelt `NEWSLETTER_SMTP_HOSTNAME`) is named in a
warning, with the setting it probably meant.
Passwords and secrets come only from the environment: `NEWSLETTER_SMTP_PASSWORD`, and the signing
key in `NEWSLETTER_SECRET_KEY` (without it, a random key is generated once and kept in the store).
List values in the environment are comma-separated or a JSON list.

Global options: `--config PATH` (default `./newsletter.toml`), `--db URL` (overrides `store.url`).
Exit status: 0 all done, 1 something failed (the output says what), 2 bad usage.
''' + "\n".join(table) + "\n\n")
parts.append('''## Development

The layout follows the pipeline: `newsletter/sources` → `compose` → `render` → `deliver`, with
`newsletter/store` the only place SQL lives and `newsletter/pipeline.py` the only place stages are
chained. The CLI (`newsletter/cli/`, one module per area), the scheduler and the web app only call
the pipeline. `newsletter/subscribers/` holds address checks and the import/export formats.

Tests use real parts: a SQLite file per test, aiosmtpd on 127.0.0.1, an HTTP server on loopback for
feeds, uvicorn for the web app and Debian's Chromium driven by Playwright. They read the real-world
fixtures from `../shared/fixtures` (set `NEWSLETTER_FIXTURES` to use another folder); with `CI=true`
a missing fixture folder or tool fails the run instead of skipping. Golden files are regenerated with
`python3 -m pytest --update-golden`.

README.md is assembled from the per-area sections in `docs/` by `python3 docs/build_readme.py`
(the configuration table comes from the settings declared in `newsletter/config.py`); each
`docs/audit-*.md` lists an area's requirements with the test or command that shows each one.
''')
(root / "README.md").write_text("".join(parts), encoding="utf-8")
bench = ['''# Benchmarks

Run them all with one command (each prints its figures beside a baseline measured in the same run):

```sh
python3 bench/run.py            # full sizes (the subscriber import of 1,000,000 rows takes minutes)
python3 bench/run.py --quick    # small sizes, for a quick look
python3 bench/run.py send       # one of them: ingest, import, render, send, unsubscribe
```

All figures were taken on the 2-core development machine, often while other work shared the cores;
compare each figure with the baseline beside it, not across tables.

''']
for name in ("ingest", "subscribers", "render", "deliver", "web"):
    p = d / f"bench-{name}.md"
    if p.exists():
        t = p.read_text(encoding="utf-8").strip()
        t = re.sub(r"^#{1,3} ", "## ", t, count=1)
        bench.append(t + "\n\n")
(root / "bench" / "README.md").write_text("".join(bench), encoding="utf-8")
print("ok")
