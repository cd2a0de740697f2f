"""`python -m bench.profiled OUT MODULE [ARGS...]`: run `python -m MODULE ARGS` under
cProfile timing CPU (process time), not the wall clock, and write the profile to OUT.

On a loaded machine a wall-clock profile charges a syscall with the time the process
waited to be scheduled again (a socket write "costing" a millisecond); CPU time shows
what the process itself spent. BENCH_PROFILE=PATH profiles each API this way
(bench/apis.py).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    out, module, *rest = sys.argv[1:]
    sys.argv = [module, *rest]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
