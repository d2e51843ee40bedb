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


def _rollup_kb(pid: int) -> dict[str, int]:
    """The ``smaps_rollup`` sizes of one process in KiB (Pss, Rss, Pss_Anon, Pss_File, …);
    empty once it has gone."""
    sizes: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if rest.strip().endswith("kB"):
                sizes[name] = int(rest.split()[0])
    except OSError:
        pass
    return sizes


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
    except OSError:
        return ""


def watch(command: list[str], interval: float = 0.5) -> dict[str, float]:
    """Run ``command``; return its exit code, wall time, peak summed PSS / RSS in MiB and each
    process's share at the moment of the PSS peak."""
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    peak_pss = peak_rss = peak_procs = 0
    at_peak: list[dict[str, object]] = []
    while proc.poll() is None:
        pids = _tree(proc.pid)
        sizes = {pid: _rollup_kb(pid) for pid in pids}
        pss = sum(s.get("Pss", 0) for s in sizes.values())
        if pss > peak_pss:
            peak_pss = pss
            at_peak = [{"pid": pid, "command": _command(pid), "pss_mib": round(s.get("Pss", 0) / 1024, 1),
                        "pss_anon_mib": round(s.get("Pss_Anon", 0) / 1024, 1),
                        "pss_file_mib": round(s.get("Pss_File", 0) / 1024, 1)}
                       for pid, s in sizes.items()]
        peak_rss = max(peak_rss, sum(s.get("Rss", 0) for s in sizes.values()))
        peak_procs = max(peak_procs, len(sizes))
        time.sleep(interval)
    return {"exit_code": proc.returncode, "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_pss_mib": round(peak_pss / 1024, 1), "peak_rss_sum_mib": round(peak_rss / 1024, 1),
            "peak_processes": peak_procs, "at_peak": at_peak}


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
