"""The API process's garbage collector settings (api.__main__.tune_gc)."""

from __future__ import annotations

import json
import subprocess
import sys

from api.__main__ import GC_YOUNG_THRESHOLD

PROBE = """
import gc, json
from api.__main__ import tune_gc
before = gc.get_freeze_count()
tune_gc()
print(json.dumps({"before": before, "after": gc.get_freeze_count(),
                  "threshold": gc.get_threshold()}))
"""


def test_tune_gc_freezes_startup_and_raises_young_threshold() -> None:
    # A process of its own: freezing is for the whole interpreter.
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, check=True, text=True, timeout=60
    )
    probe = json.loads(done.stdout)
    assert probe["before"] == 0
    assert probe["after"] > 10_000  # the imported modules, among them strawberry's
    assert probe["threshold"] == [GC_YOUNG_THRESHOLD, 20, 20]
