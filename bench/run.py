"""Run every benchmark in this folder, one after another, each printing its figures beside the
baseline measured in the same run, then every target line again, together, each saying met or
not.

    python bench/run.py            # all of them, full size
    python bench/run.py --quick    # smaller sizes, for a quick look
    python bench/run.py ingest     # only bench_ingest.py
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")]
    scripts = sorted(HERE.glob("bench_*.py"))
    if names:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in names]
    failed = 0
    targets: list[str] = []
    for script in scripts:
        print(f"\n=== {script.name} ===", flush=True)
        args = [sys.executable, str(script)] + (["--quick"] if quick else [])
        with subprocess.Popen(args, cwd=HERE.parent, stdout=subprocess.PIPE, text=True) as proc:
            assert proc.stdout is not None
            for line in proc.stdout:
                print(line, end="", flush=True)
                if "target" in line.lower():
                    targets.append(f"{script.stem.removeprefix('bench_')}: {line.strip()}")
        failed += proc.returncode != 0
    print("\n=== targets ===")
    for line in targets:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
