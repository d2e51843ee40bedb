"""Peak memory of a command and all its descendants, sampled from /proc.

    python -m bench.memwatch [--interval 0.5] [--out FILE.json] -- COMMAND ARGS...

``/usr/bin/time -v`` reports the largest single process's peak RSS; a job that spreads over
worker processes needs the sum. Every ``interval`` seconds this sums, over the command's
process tree, the proportional set size (PSS: private pages plus each shared page divided by
the number of processes mapping it, so memory-mapped index files shared by workers count
once) and the plain RSS (shared pages counted in every process), and keeps the peaks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _tree(root: int) -> list[int]:
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def _memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in KiB; (0, 0) once it has gone."""
    pss = rss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
            elif line.startswith("Rss:"):
                rss = int(line.split()[1])
    except OSError:
        pass
    return pss, rss


def watch(command: list[str], interval: float = 0.5) -> dict[str, float]:
    """Run ``command``; return its exit code, wall time and peak summed PSS / RSS in MiB."""
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    peak_pss = peak_rss = peak_procs = 0
    while proc.poll() is None:
        sizes = [_memory_kb(pid) for pid in _tree(proc.pid)]
        peak_pss = max(peak_pss, sum(p for p, _ in sizes))
        peak_rss = max(peak_rss, sum(r for _, r in sizes))
        peak_procs = max(peak_procs, len(sizes))
        time.sleep(interval)
    return {"exit_code": proc.returncode, "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_pss_mib": round(peak_pss / 1024, 1), "peak_rss_sum_mib": round(peak_rss / 1024, 1),
            "peak_processes": peak_procs}


def main(argv: list[str]) -> int:
    interval, out = 0.5, None
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    options, command = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    for flag, value in zip(options[::2], options[1::2]):
        if flag == "--interval":
            interval = float(value)
        elif flag == "--out":
            out = Path(value)
    result = watch(command, interval)
    text = json.dumps(result)
    print(text, file=sys.stderr)
    if out is not None:
        out.write_text(text + "\n", encoding="utf-8")
    return int(result["exit_code"])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
