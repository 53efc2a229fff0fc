"""Benchmark: bounce classification of a maildir of mixed messages against the bare parse.

A maildir of ``--messages`` files (default 10,000) is written from the hand-made samples in
tests/data/bounces/ (DSNs, plain-text bounces of Exim, qmail and Sendmail, ARF reports,
auto-replies, readers' replies), each made unique. Timed, alternating, ``--repeat`` times, best
of each: reading every file and ``email.message_from_bytes`` (the baseline: the least any
classifier does), and reading every file and ``newsletter.bounces.classify.classify`` (which
parses with the same function and then reads the verdict). Messages per second of each, and the
ratio. Target: classification at most 2.5x the bare parse (measured on the 2-core development
machine: 15,100 msg/s bare, 6,500 msg/s classified, 2.3x). The store is not involved: an action
is one small transaction per message (see the SQLite commit figures in ARCHITECTURE.md).

    python bench/bench_bounces.py                  # 10,000 messages
    python bench/bench_bounces.py --quick          # 2,000 messages, one run each
"""

from __future__ import annotations

import argparse
import email
import mailbox
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from newsletter.bounces.classify import classify  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "bounces"


def write_maildir(folder: Path, count: int) -> None:
    samples = []
    for path in sorted(SAMPLES.glob("*.eml")):
        data = path.read_bytes().replace(b"@@TOKEN@@", b"abcdefghijklmnopqrstuvwxyz")
        samples.append(data.replace(b"@@MESSAGE_ID@@", b"x@papers.example.org"))
    box = mailbox.Maildir(folder)
    for i in range(count):
        data = samples[i % len(samples)]
        box.add(data.replace(b"\n\n", f"\nX-Bench-Serial: {i}\n\n".encode(), 1))


def files_of(folder: Path) -> list[str]:
    return [e.path for sub in ("new", "cur") for e in os.scandir(folder / sub)]


def run(paths: list[str], parse) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    for path in paths:
        with open(path, "rb") as f:
            parse(f.read())
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.messages, args.repeat = 2_000, 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "Maildir"
        write_maildir(folder, args.messages)
        paths = files_of(folder)
        kinds = Counter(classify(open(p, "rb").read()).kind for p in paths)
        bare, ours = [], []
        for _ in range(args.repeat):
            bare.append(run(paths, email.message_from_bytes))
            ours.append(run(paths, classify))
    n = len(paths)
    b, o = min(bare), min(ours)
    print(f"{n:,} messages: {', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}")
    print(f"email.message_from_bytes (baseline): {n / b:,.0f} msg/s ({b:.2f} s)")
    print(f"classify:                            {n / o:,.0f} msg/s ({o:.2f} s), {o / b:.2f}x the baseline")
    return 0 if o / b <= 2.5 else 1


if __name__ == "__main__":
    sys.exit(main())
