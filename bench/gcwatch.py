"""Run a Python script (the product's `app.py`) and log its garbage collector's longer passes.

    python bench/gcwatch.py LOG SCRIPT [ARGS...]

Every full collection (generation 2), and any other over 10 ms, appends one line to LOG:
`<monotonic s> <generation> <wall ms> <process CPU ms> <objects collected>`. The monotonic clock
is the system's, so the caller can place the lines within its own phases. A diagnostic for the
benchmarks (`bench/connections.py --gc-log`): the script runs as it would without it.
"""

from __future__ import annotations

import gc
import os
import runpy
import sys
import time
from typing import Any

LONG_MS = 10.0


def main() -> None:
    log_path, script = sys.argv[1], sys.argv[2]
    sys.argv = sys.argv[2:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    started = [0.0, 0.0]

    def watch(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[:] = time.monotonic(), time.process_time()
            return
        wall = (time.monotonic() - started[0]) * 1000
        cpu = (time.process_time() - started[1]) * 1000
        if info["generation"] == 2 or wall > LONG_MS:
            log.write(
                f"{started[0]:.6f} {info['generation']} {wall:.1f} {cpu:.1f} {info['collected']}\n"
            )

    gc.callbacks.append(watch)
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
