"""A tuning task in its own process, so a test can kill it mid-poll or cancel it with SIGTERM.

Run as ``python -m tests.fakes.child '<json spec>'``; the spec names the provider, the dataset,
the format, the base model, hyperparameters, the job record path and the output dir. It runs
:func:`tuneloop.providers.base.run_job` exactly as the tune step does and prints one line per log
line (flushed), then ``RESULT <json>`` or ``ERROR <type>: <message>`` and exits 0 / 3.
"""

from __future__ import annotations

import json
import sys


def main(spec: dict) -> int:
    from tuneloop import datasets
    from tuneloop.examples import SPLITS
    from tuneloop.providers import get_provider
    from tuneloop.providers.base import TuneRequest, run_job

    ds = datasets.load_dataset(spec["dataset"])
    request = TuneRequest(
        train=ds.splits["train"],
        validation=ds.splits["validation"],
        dataset_hash=ds.hash,
        base_model=spec["base_model"],
        hyperparameters=spec["hp"],
        files={s: ds.format_file(spec["format"], s) for s in SPLITS},
        labels=ds.labels,
        output_dir=spec.get("output_dir", ""),
    )

    def log(line: str) -> None:
        print(line, flush=True)

    provider = get_provider(spec["provider"])
    provider.log = log
    try:
        result = run_job(provider, request, record_path=spec["record"], log=log)
    except Exception as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return 3
    print("RESULT " + json.dumps(result.to_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(json.loads(sys.argv[1])))
