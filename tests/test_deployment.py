"""The deployment recipe in docs/operations.md works as written: its systemd units pass
``systemd-analyze verify`` (with the paths of this machine put in), and they run commands that
exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from click.testing import CliRunner

from conftest import ROOT, require_tool
from newsletter.cli import main

OPERATIONS = ROOT / "docs" / "operations.md"


def units() -> list[str]:
    return [b for b in re.findall(r"```ini\n(.*?)```", OPERATIONS.read_text(encoding="utf-8"), flags=re.S)
            if "[Service]" in b]


def test_the_documented_systemd_units_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    executable = shutil.which("newsletter") or require_tool("newsletter")
    found = units()
    assert len(found) >= 2, "docs/operations.md should hold the scheduler's and the web app's units"
    (tmp_path / "newsletter.env").write_text("NEWSLETTER_SECRET_KEY=x\n", encoding="utf-8")
    paths = []
    for number, text in enumerate(found):
        text = (text.replace("/srv/newsletter/venv/bin/newsletter", executable)
                .replace("/srv/newsletter", str(tmp_path)))
        path = tmp_path / f"newsletter-{number}.service"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
        command = re.search(r"^ExecStart=\S+ (.*)$", text, flags=re.M).group(1).split()
        result = CliRunner().invoke(main, [*command, "--help"])
        assert result.exit_code == 0, (command, result.output)
    result = subprocess.run([analyze, "verify", *map(str, paths)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
