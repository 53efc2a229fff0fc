"""The layout of ../shared/fixtures, filled with files of our own making.

Some checks (rendering, messages, the preview, the web archive, fetching over HTTP) read their
input papers from the shared corpus by path. Run against this directory instead, the same checks
run on a fresh clone, where the shared corpus is absent: each path the shared corpus has is
given one of our own files (tests/data/formats, tests/data/imports) of the same format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data"

# path in the shared corpus -> our own file of the same format
OWN_FILES: dict[str, Path] = {
    "hf_daily_papers/api_daily_papers_2024-10-25.json": DATA / "formats" / "hf_daily_papers_week.json",
    "seed-trending-papers.txt": DATA / "formats" / "trending_page.txt",
    "emails/python_email_validator_cases.jsonl": DATA / "imports" / "address_cases.jsonl",
    "arxiv_api/api_query_testing_start0_max10.xml": DATA / "formats" / "arxiv_api_query.xml",
    "feeds_other/blog_atom1_jekyll_feed_relative_urls_qemu.atom": DATA / "formats" / "blog_atom_relative_links.atom",
}


def build(target: Path) -> Path:
    for relative, own in OWN_FILES.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(own, path)
    return target


@pytest.fixture(scope="session")
def fixtures_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Overrides conftest's ``fixtures_dir`` in the modules that import it: our own files."""
    return build(tmp_path_factory.mktemp("own-corpus"))
