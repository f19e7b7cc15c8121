"""Parallel backfill: 12 sample partitions with the local step launcher, two runs at a time on this machine.

Driven as the run queue drives a UI backfill (config/dagster.yaml: run_queue.max_concurrent_runs 2): one
fresh process per partition run (`biodiv_dagster.training.runner.train_partition`: the train_models job with the
local step launcher, each asset's step in its own `python -m azureml_steps.<step>` process), at most two
at once, the next starting as soon as one ends. The daemon's run worker would add one process and the
code-location load per run (~1.2 s CPU, benchmarks/cold_start.py) and nothing else that competes for CPU.

Three phases on the same 12 partitions (2 sites x 6 species, 4,000 points, max_evals/n_folds from
config/run.yml), each on fresh state:
  1. single: every run alone, one after the other -> each run's CPU seconds (process tree, wait4).
  2. budget: the backfill, threads per LightGBM call = biodiv_core.threads.cpu_budget(2 concurrent runs)
     (what RunSettings.threads() gives with num_threads 0).
  3. default: the same backfill with LightGBM's default threading (num_threads 0 = OpenMP's default, one
     thread per core): a sitecustomize shim on the run processes drops our num_threads and OMP_NUM_THREADS.
     On the first --contrast-partitions partitions only (it thrashes: all 12 took 29 minutes here).
backfill_parallel_efficiency = sum(single-run CPU seconds) / (backfill wall seconds x cores).
Memory (backfill phase): every Python process of every run tree reports its own peak RSS (VmHWM) at exit
(``_util.run_measured(tree=True)``): the run process (Dagster, in-process executor) and each step process it
starts, one after another. ``backfill_run_tree_peak_rss_mib_upper`` = the largest run process's peak + the
largest step's peak of the same run: an upper bound of one run's resident memory at any moment.

    python benchmarks/backfill.py --json [--partitions 12] [--concurrency 2] [--rows 4000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _util import REPO, emit, machine, machine_busy_cpu, rounded, run_measured, state_env

SITES = ("yellowstone", "everglades")
SPECIES = (
    "Cygnus buccinator",
    "Haliaeetus leucocephalus",
    "Lynx canadensis",
    "Ursus arctos",
    "Alligator mississippiensis",
    "Canis lupus",
)

RUN = """
import sys
sys.path.insert(0, {repo!r})
from biodiv_dagster.instance import get_instance
from biodiv_dagster.training.runner import train_partition
train_partition(get_instance(), sys.argv[1], sys.argv[2], correlation_id="bench-backfill", quiet=True)
"""

# LightGBM's default threading for the contrast phase, in every Python process of the runs (steps included).
DEFAULT_THREADING_SHIM = """
import os
os.environ.pop("OMP_NUM_THREADS", None)  # read by OpenMP when LightGBM loads, after this
try:
    import biodiv_core.training.model as _model
except Exception:
    _model = None
if _model is not None:
    _train_params = _model.train_params

    def train_params(params, num_threads):
        out = _train_params(params, 1)
        out["num_threads"] = 0  # LightGBM: 0 = OpenMP default = one thread per core
        return out

    _model.train_params = train_params
"""


def prepare(base: Path, rows: int, n: int) -> tuple[Path, list[tuple[str, str]]]:
    from biodiv_core.data.generate import generate_datastore

    pairs = [(site, species) for site in SITES for species in SPECIES][:n]
    data_root = base / "data"
    generate_datastore(
        data_root, sites=sorted({s for s, _ in pairs}), species=sorted({p for _, p in pairs}), rows=rows, seed=0
    )
    return data_root, pairs


def phase_env(base: Path, name: str, data_root: Path, shim: bool) -> dict:
    env = state_env(base / name / "home", data_root)
    if shim:
        folder = base / name / "shim"
        folder.mkdir()
        (folder / "sitecustomize.py").write_text(DEFAULT_THREADING_SHIM)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # Partitions exist before the runs start (the sync sensor's job), so runs do not race to add them.
    subprocess.run(
        [sys.executable, "-c", "from biodiv_dagster.instance import get_instance\n"
         "from biodiv_dagster.training.sync import add_partition\nimport sys\n"
         "i = get_instance()\n[add_partition(i, s, p) for s, p in zip(sys.argv[1::2], sys.argv[2::2])]",
         *[x for pair in PAIRS for x in pair]],
        env=env, check=True, cwd=REPO, capture_output=True,
    )  # fmt: skip
    return env


PAIRS: list[tuple[str, str]] = []


def run_partition(env: dict, site: str, species: str) -> dict:
    result = run_measured(["-c", RUN.format(repo=str(REPO)), site, species], env=env, cwd=str(REPO), tree=True)
    if result["returncode"] != 0:
        raise RuntimeError(f"run {site} x {species} failed: {result['stderr'][-3000:]}")
    return result


def process_kind(report: dict, run_pid: int) -> str:
    """The run process ("run"), a step process (its step name: python -m azureml_steps.<step>), or "other"."""
    if report["pid"] == run_pid:
        return "run"
    first = Path(report["argv"][0]) if report["argv"] else Path("")
    return first.stem if first.parent.name == "azureml_steps" else "other"


def memory_figures(results: list[dict]) -> dict:
    """Peak RSS (MiB) of run processes and of each kind of step process, each process's own (VmHWM)."""
    runs, steps, trees, reported = [], {}, [], 0
    for result in results:
        if result["memory"] is None:
            raise RuntimeError("a run process wrote no memory report")
        peaks: dict[str, float] = {}
        for report in result["tree"]:
            kind = process_kind(report, result["memory"]["pid"])
            peaks[kind] = max(peaks.get(kind, 0.0), report["peak_rss_mib"])
            reported += 1
        runs.append(peaks.pop("run"))
        for kind, peak in peaks.items():
            steps[kind] = max(steps.get(kind, 0.0), peak)
        trees.append(runs[-1] + max(peaks.values(), default=0.0))
    return {
        "backfill_run_process_peak_rss_mib": rounded(max(runs), 1),
        "backfill_step_peak_rss_mib": {k: rounded(v, 1) for k, v in sorted(steps.items())},
        "backfill_run_tree_peak_rss_mib_upper": rounded(max(trees), 1),
        "backfill_processes_reporting_memory": reported,
    }


def backfill(env: dict, pairs: list[tuple[str, str]], concurrency: int) -> tuple[float, list[dict], float]:
    """Run every pair, at most ``concurrency`` at once, next as soon as a slot frees.

    Returns (wall, results, CPU seconds other processes of the machine used meanwhile).
    """
    queue, results, lock, errors = list(pairs), [], threading.Lock(), []

    def worker():
        while True:
            with lock:
                if not queue or errors:
                    return
                site, species = queue.pop(0)
            try:
                result = run_partition(env, site, species)
            except Exception as exc:  # reported after the others finish
                with lock:
                    errors.append(exc)
                return
            with lock:
                results.append(result)

    start, busy = time.perf_counter(), machine_busy_cpu()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall, busy = time.perf_counter() - start, machine_busy_cpu() - busy
    if errors:
        raise errors[0]
    return wall, results, max(0.0, busy - sum(r["cpu"] for r in results))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=2, help="runs at once (run_queue.max_concurrent_runs)")
    parser.add_argument("--rows", type=int, default=4000, help="points per site (biodiv main's sample size)")
    parser.add_argument(
        "--contrast-partitions",
        type=int,
        default=4,
        help="partitions of the default-threading phase (it thrashes: 12 took 29 min here; default 4)",
    )
    parser.add_argument("--skip-default-threading", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from biodiv_core.threads import available_cores, cpu_budget

    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="biodiv-bench-backfill-") as tmp:
        base = Path(tmp)
        data_root, pairs = prepare(base, args.rows, args.partitions)
        PAIRS[:] = pairs
        out: dict = {
            "partitions": len(pairs),
            "concurrency": args.concurrency,
            "cores": cores,
            "threads_per_run": cpu_budget(args.concurrency),
            "driver": "one process per run (train_partition), at most `concurrency` at once",
        }
        env = phase_env(base, "single", data_root, shim=False)
        singles = [run_partition(env, site, species) for site, species in pairs]
        single_cpu = sum(r["cpu"] for r in singles)
        out["single_runs_cpu_seconds"] = rounded(single_cpu, 1)
        out["single_runs_wall_seconds"] = rounded(sum(r["wall"] for r in singles), 1)

        wall, results, others = backfill(phase_env(base, "budget", data_root, shim=False), pairs, args.concurrency)
        out["backfill_wall_seconds"] = rounded(wall, 1)
        out["backfill_cpu_seconds"] = rounded(sum(r["cpu"] for r in results), 1)
        out["backfill_parallel_efficiency"] = rounded(single_cpu / (wall * cores))
        # The machine is shared: the CPU other users' processes took meanwhile was never ours to use.
        out["backfill_other_processes_cpu_seconds"] = rounded(others, 1)
        out["backfill_parallel_efficiency_of_available"] = rounded(single_cpu / max(wall * cores - others, 1e-9))
        out["backfill_speedup_vs_serial"] = rounded(sum(r["wall"] for r in singles) / wall)
        out.update(memory_figures(results))

        if not args.skip_default_threading:
            contrast = pairs[: args.contrast_partitions]
            contrast_cpu = sum(r["cpu"] for r in singles[: len(contrast)])
            wall, results, others = backfill(
                phase_env(base, "default", data_root, shim=True), contrast, args.concurrency
            )
            out["backfill_default_threading_partitions"] = len(contrast)
            out["backfill_default_threading_wall_seconds"] = rounded(wall, 1)
            out["backfill_default_threading_cpu_seconds"] = rounded(sum(r["cpu"] for r in results), 1)
            out["backfill_parallel_efficiency_default_threading"] = rounded(contrast_cpu / (wall * cores))
            out["backfill_default_threading_other_processes_cpu_seconds"] = rounded(others, 1)
            out["backfill_parallel_efficiency_default_threading_of_available"] = rounded(
                contrast_cpu / max(wall * cores - others, 1e-9)
            )
        out["machine"] = machine()
    return emit(out, args.json)


if __name__ == "__main__":
    main()
