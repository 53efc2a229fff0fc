"""Benchmark: ranking every reader's own issue, 100,000 readers over 2,000 candidate papers.

A third of the readers have a profile (interests, often categories, likes, sometimes followed
authors, mutes and ratings; some with enough ratings for their own model); the rest have none
and get the shared issue. Papers and readers are generated deterministically from synthetic
text (24 fields of made-up words, Zipf-distributed), so the benchmark runs on a fresh clone.

Each side runs in its own fresh subprocess, so its peak memory (``ru_maxrss``) is its own:

- **inputs only**: generate the papers and walk every reader, ranking nothing: the floor;
- **rank_all**: build the ``Ranker`` (fit the text model) and rank every reader in batches;
- **one at a time**: ``Ranker.picks`` per profiled reader, for a sample, extrapolated: what the
  batches save.

Targets: every reader ranked in under 60 s on the 2-core machine, peak memory under 1 GB.

    python bench/bench_rank.py            # 100,000 readers, 2,000 candidates
    python bench/bench_rank.py --quick    # 10,000 readers, 1,000 candidates
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.models import Paper, Rating, ReaderProfile  # noqa: E402
from newsletter.rank import Ranker, ReaderInput  # noqa: E402
from newsletter.rank.model import learns  # noqa: E402

FIELDS = 24
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "se", "di", "po", "qua", "xen", "bri", "tho", "gal", "fer")
START = datetime(2026, 11, 30, tzinfo=timezone.utc)


def _word(n: int) -> str:
    """The n-th made-up word: syllables in base 16, at least two of them."""
    parts: list[str] = []
    while n or len(parts) < 2:
        n, digit = divmod(n, len(SYLLABLES))
        parts.append(SYLLABLES[digit])
    return "".join(parts)


class Corpus:
    """Fields of words, authors and papers, all from one seed."""

    def __init__(self, seed: int = 17) -> None:
        rng = random.Random(seed)
        self.common = [_word(i) for i in range(300, 2300)]
        self.fields = [[_word(3000 + f * 400 + i) for i in range(400)] for f in range(FIELDS)]
        self.people = [f"{_word(9000 + rng.randrange(500)).title()} {_word(12000 + i).title()}" for i in range(20000)]
        self.field_of: dict[str, int] = {}

    def paper(self, rng: random.Random, pid: str, field: int, day: int) -> Paper:
        words = self.fields[field]

        def pick(n: int) -> list[str]:
            return [words[min(int(rng.paretovariate(1.1)) - 1, 399)] if rng.random() < 0.55
                    else self.common[min(int(rng.paretovariate(1.0)) - 1, 1999)] for _ in range(n)]

        self.field_of[pid] = field
        return Paper(id=pid, title=" ".join(pick(9)).capitalize(), url=f"https://example.org/{pid}",
                     authors=tuple(rng.sample(self.people[field * 800:(field + 1) * 800], rng.randint(2, 7))),
                     abstract=" ".join(pick(rng.randint(110, 200))) + ".",
                     categories=(f"syn.F{field:02d}",), score=rng.randint(0, 200),
                     published_at=START - timedelta(days=day))

    def papers(self, count: int, prefix: str, seed: int) -> list[Paper]:
        rng = random.Random(seed)
        return [self.paper(rng, f"{prefix}:{i}", i % FIELDS, i % 7) for i in range(count)]


def readers(corpus: Corpus, count: int, history: list[Paper], sent: list[Paper]) -> Iterator[ReaderInput]:
    """``count`` readers, a third with a profile; generated one at a time, never held all at once."""
    by_field = [[p.id for p in history if corpus.field_of[p.id] == f] for f in range(FIELDS)]
    for i in range(count):
        if i % 3:
            yield ReaderInput(i, ReaderProfile())
            continue
        rng = random.Random(i)
        field = rng.randrange(FIELDS)
        words = corpus.fields[field][:60]
        interests = "; ".join(" ".join(rng.sample(words, rng.randint(1, 2))) for _ in range(rng.randint(1, 3)))
        categories = tuple(f"syn.F{f:02d}" for f in {field, rng.randrange(FIELDS)}) if rng.random() < 0.5 else ()
        authors = ()
        if rng.random() < 0.2:
            first, last = rng.choice(corpus.people[field * 800:(field + 1) * 800]).split()
            authors = (f"{first[0]}. {last}",)
        mutes = (rng.choice(corpus.fields[rng.randrange(FIELDS)][:30]),) if rng.random() < 0.2 else ()
        likes = tuple(rng.sample(by_field[field], rng.randint(0, 5)))
        ratings: tuple[Rating, ...] = ()
        draw = rng.random()
        if draw < 0.55:
            rated = rng.sample(sent, rng.randint(1, 9) if draw < 0.4 else rng.randint(10, 20))
            ratings = tuple(Rating(i, p.id, 1 if corpus.field_of[p.id] == field or rng.random() < 0.2 else -1)
                            for p in rated)
        profile = ReaderProfile(interests=interests, categories=categories, authors=authors, mutes=mutes,
                                likes=likes, size=rng.choice((None, 5, 8, 10, 15, 20)))
        yield ReaderInput(i, profile, ratings)


def child(side: str, count: int, candidates_n: int, sample: int) -> dict:
    corpus = Corpus()
    started = time.perf_counter()
    candidates = corpus.papers(candidates_n, "arxiv:c", 1)
    history = corpus.papers(2 * candidates_n, "arxiv:h", 2)
    sent = history[:300]   # last weeks' issues: what ratings point at
    shared = [p.id for p in sorted(candidates, key=lambda p: (-(p.score or 0), p.id))[:10]]
    result: dict = {"generate_s": time.perf_counter() - started}
    started, started_cpu = time.perf_counter(), time.process_time()
    if side == "inputs":
        result["readers"] = sum(1 for _ in readers(corpus, count, history, sent))
    elif side == "rank_all":
        ranker = Ranker(candidates, shared=shared, history=history, known={p.id: p for p in history})
        result.update(fit_s=time.perf_counter() - started, fit_cpu_s=time.process_time() - started_cpu)
        counts = {"personal": 0, "with_model": 0}

        def counted() -> Iterator[ReaderInput]:
            for reader in readers(corpus, count, history, sent):
                counts["personal"] += not reader.profile.is_empty or bool(reader.ratings)
                rated = {r.paper_id: r.value for r in reader.ratings}
                counts["with_model"] += learns([1 for i in reader.profile.likes if i not in rated] + list(rated.values()))
                yield reader

        picks = sum(len(chosen) for _, chosen in ranker.rank_all(counted()))
        result.update(readers=count, picks=picks, **counts)
    else:
        ranker = Ranker(candidates, shared=shared, history=history, known={p.id: p for p in history})
        profiled = [r for r in readers(corpus, sample * 3, history, sent) if not r.profile.is_empty]
        started, started_cpu = time.perf_counter(), time.process_time()
        for reader in profiled:
            ranker.picks(reader)
        result.update(per_reader_ms=(time.perf_counter() - started) / len(profiled) * 1000,
                      per_reader_cpu_ms=(time.process_time() - started_cpu) / len(profiled) * 1000,
                      sampled=len(profiled))
    result.update(elapsed_s=time.perf_counter() - started, cpu_s=time.process_time() - started_cpu,
                  peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def run_child(*args: str) -> dict:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=100_000)
    parser.add_argument("--candidates", type=int, default=2_000)
    parser.add_argument("--sample", type=int, default=1_000, help="profiled readers ranked one at a time")
    parser.add_argument("--quick", action="store_true", help="10,000 readers, 1,000 candidates")
    parser.add_argument("--child", choices=("inputs", "rank_all", "one"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.readers, args.candidates, args.sample)))
        return
    if args.quick:
        args.readers, args.candidates, args.sample = min(args.readers, 10_000), min(args.candidates, 1_000), 300
    sizes = ["--readers", str(args.readers), "--candidates", str(args.candidates), "--sample", str(args.sample)]
    print(f"{args.readers:,} readers (a third with a profile), {args.candidates:,} candidates, "
          f"{2 * args.candidates:,} past papers; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    floor = run_child("--child", "inputs", *sizes)
    ours = run_child("--child", "rank_all", *sizes)
    one = run_child("--child", "one", *sizes)
    one_wall = one["per_reader_ms"] * ours["personal"] / 1000
    one_cpu = one["per_reader_cpu_ms"] * ours["personal"] / 1000
    rows = [("inputs only (generate every reader)", floor["elapsed_s"], floor["cpu_s"], f"{floor['peak_mb']:6.0f} MB"),
            ("rank_all: fit the text model", ours["fit_s"], ours["fit_cpu_s"], ""),
            ("rank_all: fit + every reader", ours["elapsed_s"], ours["cpu_s"], f"{ours['peak_mb']:6.0f} MB"),
            ("one at a time (picks), extrapolated", one_wall, one_cpu, "")]
    print()
    print(f"| {'':40s} | wall      | CPU       | peak RSS  |")
    for name, wall, cpu, peak in rows:
        print(f"| {name:40s} | {wall:7.1f} s | {cpu:7.1f} s | {peak:9s} |")
    print(f"\n{ours['personal']:,} readers ranked on their own ({ours['with_model']:,} with a model of their own), "
          f"{ours['readers'] - ours['personal']:,} got the shared issue; {ours['picks']:,} picks; "
          f"one at a time: {one['per_reader_cpu_ms']:.2f} ms CPU per profiled reader ({one['sampled']:,} sampled); "
          f"batches: {one_cpu / max(ours['cpu_s'] - ours['fit_cpu_s'], 1e-9):.1f}x less CPU")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs "
          "(wall time grows with it; CPU time is what the run would take alone)")
    print(f"time target < 60 s: {ours['elapsed_s']:.1f} s,", "met" if ours["elapsed_s"] < 60 else "NOT met")
    print(f"memory target < 1 GB: {ours['peak_mb']:.0f} MB,", "met" if ours["peak_mb"] < 1024 else "NOT met")
    if args.readers < 100_000:
        print("(the targets are for 100,000 readers and 2,000 candidates)")


if __name__ == "__main__":
    main()
