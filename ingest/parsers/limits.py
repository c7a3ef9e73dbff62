"""Resource limits a parser worker sets on itself before importing any document library (stdlib only)."""

from __future__ import annotations

import os
import sys

EXIT_MEMORY = 3


def set_limits(memory_mb: int, cpu_seconds: int, max_output_bytes: int) -> None:
    import resource

    def _lower(which: int, soft: int, hard: int | None = None) -> None:
        cur_soft, cur_hard = resource.getrlimit(which)
        hard = soft if hard is None else hard
        if cur_hard != resource.RLIM_INFINITY:
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(which, (soft, hard))

    if memory_mb > 0:
        _lower(resource.RLIMIT_AS, memory_mb * 1024 * 1024)
    if cpu_seconds > 0:
        # SIGXCPU at the soft limit, SIGKILL at the hard one should SIGXCPU be caught.
        _lower(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 2)
    _lower(resource.RLIMIT_CORE, 0)
    if max_output_bytes > 0:
        _lower(resource.RLIMIT_FSIZE, max_output_bytes)


def write_result(result: dict) -> None:
    """One JSON object to stdout; ASCII only, so each character costs at most 12 bytes (\\uXXXX\\uXXXX)."""
    import json

    sys.stdout.write(json.dumps(result, ensure_ascii=True))
    sys.stdout.flush()


def exit_out_of_memory() -> None:
    os._exit(EXIT_MEMORY)
