"""Cold start: step entry points (`python -m azureml_steps.<step> --help`, import time, heavy modules pulled in)
and the Dagster code location (`import biodiv_dagster.definitions` + resolving every job and the asset graph).

Every figure is the median of --repeat fresh interpreter starts (warm OS file cache: the first start is
discarded), beside the interpreter's own start (`python -c pass`), the floor no entry point can beat.

    python benchmarks/cold_start.py --json [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from _util import REPO, emit, machine, rounded

STEPS = ("prep", "train", "score", "train_to_deploy")
HEAVY = ("pandas", "pyarrow", "lightgbm", "sklearn", "hyperopt", "mlflow", "matplotlib", "dagster", "azure.ai.ml")

IMPORT_PROBE = """
import json, sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
print(json.dumps({{"seconds": elapsed, "heavy": [m for m in {heavy!r} if m in sys.modules]}}))
"""

CODE_LOCATION_PROBE = """
import json, time
t, c = time.perf_counter(), time.process_time()
from biodiv_dagster.definitions import defs
imported = time.perf_counter() - t
repo = defs.get_repository_def()
jobs = repo.get_all_jobs()
graph = repo.asset_graph
n_assets = len(list(graph.get_all_asset_keys()))
seconds, cpu = time.perf_counter() - t, time.process_time() - c
print(json.dumps({"seconds": seconds, "cpu": cpu, "import_seconds": imported, "jobs": len(jobs), "assets": n_assets}))
"""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=REPO)
    return time.perf_counter() - start


def probe(code: str) -> dict:
    completed = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def median_of(repeat: int, fn):
    fn()  # warm the OS file cache; not counted
    return [fn() for _ in range(repeat)]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    out: dict = {"repeat": args.repeat}
    start = median_of(args.repeat, lambda: wall([sys.executable, "-c", "pass"]))
    out["python_start_seconds"] = rounded(statistics.median(start))
    for step in STEPS:
        module = f"azureml_steps.{step}"
        helps = median_of(args.repeat, lambda m=module: wall([sys.executable, "-m", m, "--help"]))
        imports = median_of(args.repeat, lambda m=module: probe(IMPORT_PROBE.format(module=m, heavy=HEAVY)))
        out[f"step_{step}_help_seconds"] = rounded(statistics.median(helps))
        out[f"step_{step}_import_seconds"] = rounded(statistics.median(i["seconds"] for i in imports))
        out[f"step_{step}_heavy_modules_at_import"] = imports[-1]["heavy"]
    location = median_of(args.repeat, lambda: probe(CODE_LOCATION_PROBE))
    out["code_location_load_seconds"] = rounded(statistics.median(r["seconds"] for r in location))
    out["code_location_load_cpu_seconds"] = rounded(statistics.median(r["cpu"] for r in location))
    out["code_location_import_seconds"] = rounded(statistics.median(r["import_seconds"] for r in location))
    out["code_location_jobs"] = location[-1]["jobs"]
    out["code_location_assets"] = location[-1]["assets"]
    out["code_location_target_seconds"] = 3.0
    out["machine"] = machine()
    return emit(out, args.json)


if __name__ == "__main__":
    main()
