"""Personal issues benchmark: building a reader's own issue from the pre-rendered cards, beside
the shared issue's splice and beside rendering each reader's issue from scratch, in one run.

    python bench/bench_personal.py [--candidates 2000] [--readers 10000] [--picks 10] [--scratch 40]
    python bench/bench_personal.py --quick

Setup, once per run and timed: every candidate's card rendered with Jinja2 and inlined by
premailer in one pass (``CardSet``), then cut into byte pieces (``PersonalMessages``).
"ours": each reader's whole message (headers, their subject, both bodies joined from their
cards with their rank, reason and signed rating links), to its final bytes. "shared": the same
readers' messages of the shared issue (``MessageFactory.build``: the splice every reader without
a profile gets). "from scratch": Jinja2 + premailer on the reader's own papers, then the message
built by the email package, on a sample (``--scratch``). Each side runs three times, alternated,
and its best round counts. Targets: ours at most 2x the shared splice per message, and at least
20x cheaper than rendering per reader.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_render import NOW, sample_papers, subscribers  # noqa: E402
from newsletter.config import load_config  # noqa: E402
from newsletter.models import Issue, Pick  # noqa: E402
from newsletter.render.issue import render_issue  # noqa: E402
from newsletter.render.messages import MessageFactory  # noqa: E402
from newsletter.render.personal import CardSet, render_personal  # noqa: E402
from newsletter.render.personal_messages import PersonalMessages  # noqa: E402
from newsletter.render.templates import make_environment  # noqa: E402
from newsletter.tokens import Signer  # noqa: E402

REASONS = ["matches: speech recognition", "followed author: T. Dao", "top of the week", "in cs.CL",
           "like: Whisper (you rated it)", "matches: low-resource languages"]


def best_of(rounds: int, *runs: Callable[[], None]) -> list[float]:
    """Each run's best time over ``rounds`` rounds, the runs alternated within a round."""
    best = [float("inf")] * len(runs)
    for _ in range(rounds):
        for i, run in enumerate(runs):
            started = time.perf_counter()
            run()
            best[i] = min(best[i], time.perf_counter() - started)
    return best


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=2_000)
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--picks", type=int, default=10)
    parser.add_argument("--scratch", type=int, default=40)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.candidates, args.readers, args.scratch = 300, 2_000, 10
    config = load_config(None, env={"NEWSLETTER_NEWSLETTER_BASE_URL": "https://papers.example.org",
                                    "NEWSLETTER_NEWSLETTER_FROM": "Papers <digest@example.org>"})
    papers = sample_papers(args.candidates)
    issue = Issue(key="2026-W48", number=7, title="Trending Papers Weekly #7", papers=tuple(papers[:10]),
                  created_at=NOW)
    env = make_environment()
    signer = Signer("bench-secret")
    started = time.perf_counter()
    cards = CardSet(issue, papers, config, env=env)
    factory = MessageFactory(render_issue(issue, config, env=env), config, signer, now=NOW)
    own = PersonalMessages(factory, cards)
    setup_s = time.perf_counter() - started
    rng = random.Random(7)
    readers = subscribers(args.readers)
    picks = {r.id: [Pick(p.id, rng.choice(REASONS)) for p in rng.sample(papers, args.picks)] for r in readers}
    ids = {r.id: f"<bench.{r.id}@example.org>" for r in readers}

    def ours() -> None:
        for r in readers:
            own.build(r, picks[r.id], message_id=ids[r.id])

    def shared() -> None:
        for r in readers:
            factory.build(r, message_id=ids[r.id])

    sample = readers[:args.scratch]
    by_id = {p.id: p for p in papers}

    def scratch() -> None:
        for r in sample:
            rendered = render_personal(issue, picks[r.id], by_id, config, env=env, rate_token=factory.rate_token(r),
                                       found=len(papers))
            MessageFactory(rendered, config, signer, now=NOW).build_email_message(r, ids[r.id]).as_bytes()

    ours_s, shared_s = best_of(3, ours, shared)
    (scratch_s,) = best_of(1, scratch)
    per_ours, per_shared = ours_s / len(readers) * 1e3, shared_s / len(readers) * 1e3
    per_scratch = scratch_s / len(sample) * 1e3
    ratio_shared, speedup = per_ours / per_shared, per_scratch / per_ours
    rows = [
        ("machine", f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"),
        ("candidates, picks per reader", f"{len(papers):,} cards, {args.picks} picks, 8bit bodies: {own.eight_bit}"),
        ("setup: every card rendered + inlined once", f"{setup_s:.2f} s"),
        (f"ours: {len(readers):,} personal messages", f"{ours_s:.2f} s, {per_ours:.3f} ms/message"),
        (f"shared splice: {len(readers):,} messages", f"{shared_s:.2f} s, {per_shared:.3f} ms/message"),
        (f"from scratch: {len(sample)} readers (sample)", f"{scratch_s:.2f} s, {per_scratch:.2f} ms/message"),
        ("ours / shared splice", f"{ratio_shared:.2f}x"),
        ("from scratch / ours", f"{speedup:.0f}x"),
        ("targets", f"<= 2x the shared splice: {'met' if ratio_shared <= 2 else 'NOT met'}; "
                    f">= 20x cheaper than from scratch: {'met' if speedup >= 20 else 'NOT met'}"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
