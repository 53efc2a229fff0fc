"""Ingest benchmark: our whole ingest (parse + normalise + store) beside the bare parse of the
same bytes, in the same run.

    python bench/bench_ingest.py [--entries 1000] [--papers 10000] [--repeat 3]

Inputs are generated here (an arXiv-API-style Atom feed and a JSON list of papers in our own
format), so the figures do not depend on any fixture. Target: ingest <= 1.3x the bare parse.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from xml.sax.saxutils import escape

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from newsletter.sources import parse_bytes  # noqa: E402
from newsletter.store import open_store  # noqa: E402
from newsletter.store.papers import upsert_papers  # noqa: E402

WORDS = ("model learning data training language vision reasoning attention graph sparse efficient "
         "benchmark robust optimal transformer diffusion policy reward latent scaling retrieval").split()


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_atom(entries: int, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
             'xmlns:arxiv="http://arxiv.org/schemas/atom">\n<title>ArXiv Query</title>\n'
             '<id>http://arxiv.org/api/bench</id>\n<updated>2026-03-02T00:00:00Z</updated>\n']
    for i in range(entries):
        aid = f"2603.{10000 + i}"
        title = _sentence(rng, 12)
        abstract = " ".join(_sentence(rng, 18) for _ in range(14))
        authors = "".join(f"<author><name>Author {rng.randint(1, 9999)} Name</name></author>" for _ in range(rng.randint(2, 12)))
        parts.append(
            f"<entry><id>http://arxiv.org/abs/{aid}v1</id><updated>2026-03-01T12:00:00Z</updated>"
            f"<published>2026-03-01T12:00:00Z</published><title>{escape(title)}</title>"
            f"<summary>{escape(abstract)}</summary>{authors}"
            f'<arxiv:comment>12 pages, 4 figures</arxiv:comment>'
            f'<link href="http://arxiv.org/abs/{aid}v1" rel="alternate" type="text/html"/>'
            f'<link title="pdf" href="http://arxiv.org/pdf/{aid}v1" rel="related" type="application/pdf"/>'
            f'<arxiv:primary_category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>'
            f'<category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/></entry>\n')
    parts.append("</feed>\n")
    return "".join(parts).encode("utf-8")


def make_json(papers: int, seed: int = 2) -> bytes:
    rng = random.Random(seed)
    items = []
    for i in range(papers):
        aid = f"2603.{20000 + i}"
        items.append({
            "id": f"arXiv:{aid}", "title": _sentence(rng, 12),
            "authors": [f"Author {rng.randint(1, 9999)}" for _ in range(rng.randint(2, 8))],
            "abstract": " ".join(_sentence(rng, 18) for _ in range(8)),
            "score": rng.randint(0, 300), "published_at": "2026-03-01T12:00:00Z",
        })
    return json.dumps({"papers": items}).encode("utf-8")


def best_of(repeat: int, fn) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ingest_into_fresh_store(data: bytes, name: str, folder: Path, counter: list[int]) -> None:
    counter[0] += 1
    store = open_store(f"sqlite:///{folder / f'bench-{counter[0]}.db'}")
    try:
        parsed = parse_bytes(data, name)
        with store.atomic() as conn:
            upsert_papers(conn, parsed.papers)
    finally:
        store.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    atom, papers_json = make_atom(args.entries), make_json(args.papers)
    counter = [0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = []
        for label, baseline, data, name, bare in (
            (f"Atom feed, {args.entries:,} entries, {len(atom) / 1e6:.1f} MB", "feedparser.parse", atom,
             "bench.atom", lambda: feedparser.parse(atom)),
            (f"JSON list, {args.papers:,} papers, {len(papers_json) / 1e6:.1f} MB", "json.load", papers_json,
             "bench.json", lambda: json.loads(papers_json)),
        ):
            base = best_of(args.repeat, bare)
            parse_only = best_of(args.repeat, lambda: parse_bytes(data, name))
            ours = best_of(args.repeat, lambda: ingest_into_fresh_store(data, name, folder, counter))
            rows.append((label, baseline, base, parse_only, ours))
    print(f"{'input':36} {'baseline':17} {'bare parse':>10} {'+normalise':>10} {'+store':>9} {'ratio':>6}")
    for label, baseline, base, parse_only, ours in rows:
        print(f"{label:36} {baseline:17} {base * 1000:8.0f}ms {parse_only * 1000:8.0f}ms "
              f"{ours * 1000:7.0f}ms {ours / base:5.2f}x")


if __name__ == "__main__":
    main()
