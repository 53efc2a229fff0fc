"""The editor's hand on the next issue: pin, drop, move, subject, note and reset, seen in
`newsletter papers`, `newsletter preview` and the message sent, and refused once it was sent."""

from __future__ import annotations

import email
import json
from datetime import datetime, timedelta, timezone
from email.policy import default as default_policy
from pathlib import Path

from newsletter.compose.issue import apply_moves, plan_issue
from newsletter.models import IssueEdits, Paper
from test_send_cli import invoke, setup_store

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)


def _papers():
    return [Paper(id=f"p{i}", title=f"Paper {i}", url=f"https://example.org/{i}", score=s,
                  first_seen_at=NOW - timedelta(days=d))
            for i, (s, d) in enumerate([(50, 1), (40, 1), (30, 1), (2, 1), (99, 30), (20, 1)])]


def test_plan_says_why_each_paper_is_left_out():
    chosen, left = plan_issue(_papers(), since=NOW - timedelta(days=7), max_papers=3, min_score=5,
                              sent={"p1": "2026-W47"})
    assert [p.id for p in chosen] == ["p0", "p2", "p5"]
    assert [(lo.paper.id, lo.reason) for lo in left] == [
        ("p3", "below min_score"), ("p4", "outside the window"), ("p1", "already sent")]
    chosen, left = plan_issue(_papers(), since=NOW - timedelta(days=7), max_papers=2)
    assert ("p5", "over max_papers") in [(lo.paper.id, lo.reason) for lo in left]


def test_pins_drops_and_moves_apply_in_order():
    edits = IssueEdits(pinned=("p4",), dropped=("p0",), moves=(("p2", 1),))
    chosen, left = plan_issue(_papers(), since=NOW - timedelta(days=7), max_papers=3, edits=edits)
    assert [p.id for p in chosen] == ["p2", "p4", "p1"]
    assert ("p0", "dropped") in [(lo.paper.id, lo.reason) for lo in left]
    assert [p.id for p in apply_moves(chosen, [("p1", 99)])] == ["p2", "p4", "p1"]


def _ids(config: Path) -> list[str]:
    result = invoke(config, "papers", "--json")
    assert result.exit_code == 0, result.output
    return [p["id"] for p in json.loads(result.output)["issue"]["papers"]]


def test_edits_show_in_papers_preview_and_the_sent_message_and_are_refused_after(tmp_path):
    config = setup_store(tmp_path)
    before = _ids(config)
    left = json.loads(invoke(config, "papers", "--json").output)["left_out"]
    outsider = left[0]["paper"]["id"]
    assert left[0]["reason"] == "over max_papers"

    assert invoke(config, "issue", "pin", outsider).exit_code == 0
    assert invoke(config, "issue", "drop", before[0]).exit_code == 0
    assert invoke(config, "issue", "move", before[3], "1").exit_code == 0
    assert invoke(config, "issue", "subject", "Our editor's pick of the week").exit_code == 0
    (tmp_path / "note.md").write_text("Back from **NeurIPS** with three papers.\n", encoding="utf-8")
    assert invoke(config, "issue", "note", str(tmp_path / "note.md")).exit_code == 0

    ids = _ids(config)
    assert ids[0] == before[3] and ids[1] == outsider and before[0] not in ids and len(ids) == len(before)
    shown = invoke(config, "papers").output
    assert "pinned" in shown and "moved" in shown and "dropped" in shown and "Our editor's pick" in shown

    result = invoke(config, "preview", "--out", str(tmp_path / "pv"))
    assert "Our editor's pick of the week" in result.output and "editor's changes" in result.output
    html = next((tmp_path / "pv").glob("*.html")).read_text()
    assert "<strong>NeurIPS</strong>" in html and html.index(before[3].split(":")[-1]) < html.index(outsider.split(":")[-1])

    assert invoke(config, "send").exit_code == 0
    eml = next((tmp_path / "outbox").rglob("*.eml"))
    msg = email.message_from_bytes(eml.read_bytes(), policy=default_policy)
    assert msg["Subject"] == "Our editor's pick of the week"
    body = msg.get_body("plain").get_content()
    assert "Back from **NeurIPS**" in body and before[0].split(":")[-1] not in body
    assert body.index(before[3].split(":")[-1]) < body.index(outsider.split(":")[-1])

    for args in (["pin", before[0]], ["drop", ids[0]], ["move", ids[0], "2"], ["subject", "x"],
                 ["note", str(tmp_path / "note.md")], ["reset"]):
        refused = invoke(config, "issue", *args)
        assert refused.exit_code == 1 and "has been sent" in refused.output, args
    assert "sent, frozen" in invoke(config, "papers").output


def test_reset_unknown_ids_and_moves_of_absent_papers(tmp_path):
    config = setup_store(tmp_path)
    before = _ids(config)
    assert invoke(config, "issue", "drop", before[0]).exit_code == 0
    assert invoke(config, "issue", "reset").exit_code == 0
    assert _ids(config) == before
    unknown = invoke(config, "issue", "pin", "arxiv:0000.00000")
    assert unknown.exit_code == 1 and "no such paper" in unknown.output
    assert invoke(config, "issue", "drop", before[1]).exit_code == 0
    absent = invoke(config, "issue", "move", before[1], "1")
    assert absent.exit_code == 1 and "not in the next issue" in absent.output
    bare = before[2].split(":", 1)[1]  # a bare arXiv id names the same paper
    assert invoke(config, "issue", "move", bare, "1").exit_code == 0 and _ids(config)[0] == before[2]


def test_a_draft_rebuilt_later_in_the_week_covers_the_window_ending_then(tmp_path):
    from newsletter import pipeline
    from newsletter.config import load_config
    from newsletter.store import open_store

    config = load_config(setup_store(tmp_path), env={})
    store = open_store(config.store_url)
    monday = datetime.now(timezone.utc)
    monday = monday - timedelta(days=monday.weekday())
    first = pipeline.build_issue(store, config, now=monday)
    later = pipeline.build_issue(store, config, now=monday + timedelta(days=3))
    assert first is not None and later is not None and first.key == later.key
    assert later.created_at == monday + timedelta(days=3)
    store.dispose()
