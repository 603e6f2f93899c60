"""Compile every pipeline to ``compile/<name>.yaml``: ``python -m compile [--out DIR] [--check]``.

The output is deterministic (no timestamps, no environment reads), so the YAML in the repository is
exactly what ``make compile`` writes, and the golden tests can compare against it.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def compile_all(out_dir: Path) -> list[Path]:
    from kfp import compiler
    from tuneloop.pipelines import PIPELINES

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, pipeline in sorted(PIPELINES.items()):
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: compile/)")
    parser.add_argument("--check", action="store_true", help="fail if the committed YAML is stale")
    args = parser.parse_args(argv)
    if not args.check:
        for path in compile_all(args.out):
            print(f"wrote {path}")
        return 0
    stale = 0
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in compile_all(Path(tmp)):
            committed = args.out / fresh.name
            old = committed.read_text().splitlines() if committed.exists() else []
            new = fresh.read_text().splitlines()
            if old != new:
                stale += 1
                sys.stdout.writelines(
                    line + "\n"
                    for line in difflib.unified_diff(old, new, str(committed), "fresh", lineterm="")
                )
    if stale:
        print(f"{stale} compiled pipeline(s) are stale: run `make compile`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
