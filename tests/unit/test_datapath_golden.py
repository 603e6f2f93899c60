"""The export data path publishes exactly what it published before it was streamed (see tests/datapath_golden.py)."""

from __future__ import annotations

import json

from tests.datapath_golden import GOLDEN, run_scenario


def test_two_export_runs_publish_the_same_files_ids_splits_quarantine_and_manifest(tmp_path):
    expected = json.loads(GOLDEN.read_text())
    got = json.loads(json.dumps(run_scenario(tmp_path)))
    for run in ("run1", "run2"):
        assert got[run]["extract"] == expected[run]["extract"], run
        assert got[run]["prepared"] == expected[run]["prepared"], run
        want, have = expected[run]["files"], got[run]["files"]
        assert sorted(have) == sorted(want), f"{run}: published files differ"
        changed = sorted(name for name in want if have[name] != want[name])
        assert not changed, f"{run}: content changed in {changed}"
