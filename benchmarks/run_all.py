"""Run every benchmark (benchmarks/*.py but this one and _helpers) with --json: one JSON line each (`make bench`).

A benchmark that fails does not stop the others: its line is {"benchmark": name, "error": ..., "returncode": n}
and the exit status is 1 at the end. Extra arguments select benchmarks by name: `run_all.py prep tuning`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def benchmarks(selected: list[str] | None = None) -> list[Path]:
    found = sorted(p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != Path(__file__).name)
    if selected:
        unknown = sorted(set(selected) - {p.stem for p in found})
        if unknown:
            raise SystemExit(f"unknown benchmark(s) {unknown}; known: {[p.stem for p in found]}")
        found = [p for p in found if p.stem in selected]
    return found


def run_one(path: Path, timeout: float) -> tuple[dict, bool]:
    start = time.perf_counter()
    try:
        completed = subprocess.run(
            [sys.executable, str(path), "--json"], capture_output=True, text=True, timeout=timeout, cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return {"benchmark": path.stem, "error": f"timed out after {timeout:.0f}s"}, False
    seconds = round(time.perf_counter() - start, 1)
    lines = [line for line in completed.stdout.splitlines() if line.strip().startswith("{")]
    if completed.returncode == 0 and lines:
        try:
            return {"benchmark": path.stem, **json.loads(lines[-1]), "benchmark_seconds": seconds}, True
        except ValueError:
            pass
    tail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
    return {
        "benchmark": path.stem,
        "error": " | ".join(tail) or "no JSON line printed",
        "returncode": completed.returncode,
        "benchmark_seconds": seconds,
    }, False


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="benchmark names (default: all)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark (default 3600)")
    args = parser.parse_args(argv)
    ok = True
    for path in benchmarks(args.names):
        result, success = run_one(path, args.timeout)
        ok &= success
        print(json.dumps(result), flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
