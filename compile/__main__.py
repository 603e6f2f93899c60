"""Compile every pipeline to ``compile/<name>.yaml``: ``python -m compile [--out DIR] [--check]``.

The output is deterministic (no timestamps, no environment reads: ``TUNELOOP_IMAGE_REPOSITORY`` is
ignored here), so the YAML in the repository is exactly what ``make compile`` writes, and the golden
tests can compare against it. ``tuneloop compile`` is the user's command: it reads the image setting.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def compile_all(out_dir: Path, images=None) -> list[Path]:
    from tuneloop.pipelines.local_runner import compile_all as compile_pipelines

    return compile_pipelines(out_dir, images=images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: compile/)")
    parser.add_argument("--check", action="store_true", help="fail if the committed YAML is stale")
    parser.add_argument(
        "--image-repository", default="",
        help="retarget the images (the environment is not read here: `tuneloop compile` reads it)",
    )
    args = parser.parse_args(argv)
    images = None
    if args.image_repository:
        from tuneloop.images import resolve

        images = resolve(args.image_repository)
    if not args.check:
        for path in compile_all(args.out, images):
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
