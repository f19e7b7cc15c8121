"""Fixed cost of one small partition: `biodiv run` with warm step processes vs cold ones vs importing the stack.

A 500-row partition with ``--max-evals 1 --folds 2`` does well under a second of LightGBM work; what is left is
start-up. Measured in one run, alternating pairs (the machine is shared): the wall of one interpreter importing
the step libraries (the floor a fresh step process pays), and `biodiv run` on the same state with
``BIODIV_WARM_STEPS=1`` (the default: steps fork from a pre-imported server) and ``=0`` (a fresh
``python -m azureml_steps.<step>`` per step). The warm step server is shared by the processes of one
interpreter set-up and outlives them: ``warm`` finds it running (a user's second run), ``fresh_server`` starts
one of its own (its own TMPDIR; the server's CPU is added). A first, uncounted run creates the MLflow store and
the Dagster instance, as a user's first run does.

    python benchmarks/fixed_cost.py --json [--pairs 2] [--rows 625]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile

from _util import emit, isolated_state, machine, python_command, rounded, run_with_rusage, warm_servers

IMPORT_STACK = "import mlflow.lightgbm, lightgbm, pandas, sklearn.metrics, matplotlib.pyplot, hyperopt"
SITE, SPECIES = "benchsite", "Bench species"


def biodiv_run(warm: bool, fresh_server: bool = False) -> dict:
    env = {**os.environ, "BIODIV_WARM_STEPS": "1" if warm else "0"}
    if fresh_server:  # a warm step server of its own, started by this run (a user's first run of the day)
        env["TMPDIR"] = tempfile.mkdtemp(prefix="biodiv-bench-warm-")
    cli = "import sys; from biodiv_dagster.cli import main; sys.exit(main())"
    command = [*python_command(cli), "run", "--site", SITE, "--species", SPECIES]
    try:
        result = run_with_rusage([*command, "--max-evals", "1", "--folds", "2", "--json"], env=env)
        if fresh_server:
            result["cpu"] += warm_servers(env["TMPDIR"], stop=True)
    finally:
        if fresh_server:
            shutil.rmtree(env["TMPDIR"], ignore_errors=True)
    if result["returncode"] != 0:
        raise SystemExit(f"biodiv run failed: {result['stderr'][-2000:]}")
    return result


def measure(pairs: int = 2, rows: int = 625) -> dict:
    """Alternating pairs of: import the stack; `biodiv run` warm (server running), warm with a server of its
    own, cold. Medians."""
    from biodiv_core.data.generate import generate_datastore

    variants = {"warm": dict(warm=True), "fresh_server": dict(warm=True, fresh_server=True), "cold": dict(warm=False)}
    with isolated_state("fixed-cost") as base:
        generate_datastore(base / "data", sites=[SITE], species=[SPECIES], rows=rows, seed=3)
        os.environ["BIODIV_DATA_ROOT"] = str(base / "data")
        biodiv_run(warm=True)  # creates the stores and starts the shared warm server; not counted
        walls: dict[str, list[float]] = {"import": [], **{name: [] for name in variants}}
        cpu: dict[str, list[float]] = {name: [] for name in variants}
        for pair in range(pairs):
            walls["import"].append(run_with_rusage(python_command(IMPORT_STACK))["wall"])
            names = list(variants) if pair % 2 == 0 else list(reversed(variants))  # alternate the order
            for name in names:
                result = biodiv_run(**variants[name])
                walls[name].append(result["wall"])
                cpu[name].append(result["cpu"])
    median = {key: statistics.median(values) for key, values in walls.items()}
    return {
        "rows": rows,
        "pairs": pairs,
        "import_stack_seconds": rounded(median["import"]),
        "run_seconds_warm": rounded(median["warm"]),
        "run_seconds_fresh_server": rounded(median["fresh_server"]),
        "run_seconds_cold": rounded(median["cold"]),
        "run_cpu_seconds_warm": rounded(statistics.median(cpu["warm"])),
        "run_cpu_seconds_fresh_server": rounded(statistics.median(cpu["fresh_server"])),
        "run_cpu_seconds_cold": rounded(statistics.median(cpu["cold"])),
        "fixed_cost_ratio_to_import": rounded(median["warm"] / median["import"]),
        "fixed_cost_ratio_to_import_fresh_server": rounded(median["fresh_server"] / median["import"]),
        "fixed_cost_ratio_to_import_cold": rounded(median["cold"] / median["import"]),
        "warm_speedup_vs_cold": rounded(median["cold"] / median["warm"]),
        "all_wall_seconds": {key: [rounded(v) for v in values] for key, values in walls.items()},
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="alternating warm/cold pairs (median reported)")
    parser.add_argument("--rows", type=int, default=625, help="points of the site (80%% labelled: 500 rows)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    return emit({**measure(args.pairs, args.rows), "machine": machine()}, args.json)


if __name__ == "__main__":
    main()
