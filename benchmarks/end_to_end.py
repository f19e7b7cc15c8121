"""End to end: the platform vs the straightforward script a seed user writes, on the same generated data.

Four figures, measured in one run (alternating which side goes first from pair to pair; medians):

- ``backfill_speedup_vs_script_loop``: ``--partitions`` small partitions (labelled rows drawn log-normal,
  median ~500, clipped to 150-5,000, like GBIF species) trained, registered and deployed through a real
  ``dagster-daemon``: ``dagster job backfill`` submits one run per partition to the run queue
  (``max_concurrent_runs`` of config/dagster.yaml), the daemon's run workers train them, the
  ``registration_sensor`` requests the registration runs; timed until every partition's model is deployed
  (``daemon_mapped_seconds``: until the habitat maps, which queue behind, are made too; CPU counts them). The
  baseline is ``benchmarks/_script_baseline.py`` run once per partition in a loop, one at a time (LightGBM
  ``n_jobs=1``). Also: the same partitions through ``biodiv main`` (``main_speedup_vs_script_loop``),
  partitions per hour and CPU seconds per partition of each.
- ``partition_speedup_vs_script`` and ``auc_delta_vs_script``: one 20,000-row partition (16,000 labelled rows,
  20 evaluations, 5 folds): ``biodiv run`` vs the script; our held-out ROC-AUC minus the script's.
- ``fixed_cost_ratio_to_import``: ``benchmarks/fixed_cost.py`` (``biodiv run`` on a 500-row partition with
  ``--max-evals 1 --folds 2`` over one interpreter importing the stack).

CPU seconds are user + system of each side's process tree (wait4), plus, for the platform, the warm step
server's own (a daemon, not in any tree: read from /proc/<pid>/stat). Each side gets a fresh BIODIV_HOME,
Dagster instance, MLflow store and warm step server (its own TMPDIR), so the first run of each side pays
every start-up cost, as a user's first backfill does.

    python benchmarks/end_to_end.py --json [--pairs 2] [--partitions 24] [--phases backfill,main,partition,fixed]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from _util import REPO, emit, machine, rounded, run_with_rusage, state_env, warm_servers

BIN = Path(sys.executable).parent
SITES = ("yellowstone", "everglades")
SCRIPT = Path(__file__).resolve().with_name("_script_baseline.py")


@dataclass(frozen=True)
class Partition:
    site: str
    species: str
    labelled: int


def labelled_sizes(n: int, seed: int, median: int = 500, sigma: float = 0.8) -> list[int]:
    import numpy as np

    sizes = np.random.default_rng(seed).lognormal(np.log(median), sigma, n)
    return [int(v) for v in np.clip(sizes, 150, 5000).round()]


def generate(root: Path, n: int, seed: int) -> list[Partition]:
    """Two sites, n/2 species each; each species' gold file cut to its drawn size (both classes kept)."""
    import pandas as pd

    from biodiv_core.data.generate import generate_datastore

    per_site = (n + 1) // 2
    species = [f"Benchia species{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(per_site)]
    sizes = labelled_sizes(n, seed)
    generate_datastore(root, sites=SITES, species=species, rows=max(sizes) + 500, seed=seed)
    partitions = []
    for index, (site, name) in enumerate([(s, p) for s in SITES for p in species][:n]):
        gold = gold_file(root, Partition(site, name, 0))
        table = pd.read_csv(gold)
        kept = table.sample(n=min(sizes[index], len(table)), random_state=index)
        if kept["occurrenceStatus"].nunique() < 2:
            kept = table.head(sizes[index])
        kept.to_csv(gold, index=False)
        partitions.append(Partition(site, name, len(kept)))
    return partitions


def gold_file(root: Path, part: Partition) -> Path:
    from biodiv_core.data.datastore import species_file

    return species_file(root, part.site, part.species)


def features_file(root: Path, site: str) -> Path:
    return next((root / f"{site}-training-features" / "1").glob("*.csv"))


def fresh_env(base: Path, name: str, data_root: Path) -> dict:
    """A fresh local state (and warm servers: its own TMPDIR) for one side of one pair."""
    if (base / name).exists():
        shutil.rmtree(base / name)
    return state_env(base / name, data_root)


# --------------------------------------------------------------------------- the two sides


def run_script(part: Partition, data_root: Path, base: Path, max_evals: int, folds: int) -> dict:
    """The straightforward script on one partition in a fresh process: wall, CPU and its test ROC-AUC."""
    out = Path(tempfile.mkdtemp(dir=base, prefix="script-"))
    inputs = [str(features_file(data_root, part.site)), str(gold_file(data_root, part))]
    command = [sys.executable, str(SCRIPT), *inputs, str(out), "--max-evals", str(max_evals), "--folds", str(folds)]
    try:
        result = run_with_rusage(command)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if result["returncode"] != 0:
        raise SystemExit(f"script failed on {part}: {result['stderr'][-2000:]}")
    return {**result, "roc_auc": float(json.loads(result["stdout"].strip().splitlines()[-1])["roc_auc"])}


def script_loop(parts: list[Partition], data_root: Path, base: Path, max_evals: int, folds: int) -> dict:
    results = [run_script(part, data_root, base, max_evals, folds) for part in parts]
    return {
        "wall": sum(r["wall"] for r in results),
        "cpu": sum(r["cpu"] for r in results),
        "auc_median": statistics.median(r["roc_auc"] for r in results),
    }


def _instance_with_partitions(env: dict, parts: list[Partition]) -> None:
    code = (
        "import sys\nfrom biodiv_dagster.instance import get_instance\n"
        "from biodiv_dagster.training.sync import add_partition\ni = get_instance()\n"
        "[add_partition(i, s, p) for s, p in zip(sys.argv[1::2], sys.argv[2::2])]"
    )
    args = [x for part in parts for x in (part.site, part.species)]
    subprocess.run([sys.executable, "-c", code, *args], env=env, check=True, cwd=REPO, capture_output=True)


def _progress(instance) -> dict[str, int]:
    """Counts in ``instance``: registration runs succeeded, map runs succeeded, versions deployed (each gets a
    map), runs failed and runs not finished."""
    import dagster as dg

    runs = instance.get_runs()
    done = dg.DagsterRunStatus.SUCCESS
    deployments = instance.fetch_materializations(dg.AssetKey("batch_deployment"), limit=10_000).records
    return {
        "registered": sum(r.job_name == "register_and_deploy_job" and r.status == done for r in runs),
        "mapped": sum(r.job_name == "habitat_job" and r.status == done for r in runs),
        "deployed": sum(
            bool(getattr(rec.asset_materialization.metadata.get("deployed"), "value", False)) for rec in deployments
        ),
        "failed": sum(r.status == dg.DagsterRunStatus.FAILURE for r in runs),
        "open": sum(not r.is_finished for r in runs),
    }


def daemon_backfill(parts: list[Partition], env: dict, timeout: float) -> dict:
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    from biodiv_core.naming import slugify
    from biodiv_dagster.partitions import partition_key

    _instance_with_partitions(env, parts)
    # Polled from here, not from a fresh process per poll (each would import Dagster: CPU taken from the runs).
    # config/dagster.yaml's storage names its folder as env DAGSTER_HOME (LockedSqliteStorage): resolve it for this
    # home while the storage is built.
    with mock.patch.dict(os.environ, {"DAGSTER_HOME": env["DAGSTER_HOME"]}):
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
    keys = [str(partition_key(slugify(p.site, "site"), slugify(p.species))) for p in parts]
    log = open(Path(env["BIODIV_HOME"]) / "daemon.log", "w")  # noqa: SIM115
    start = time.perf_counter()
    daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], env=env, cwd=REPO,
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        cli = [str(BIN / "dagster"), "job", "backfill", "-j", "train_models", "-w", "workspace.yaml", "--noprompt"]
        backfill = run_with_rusage([*cli, "--partitions", ",".join(keys)], env=env, cwd=str(REPO))
        if backfill["returncode"] != 0:
            raise SystemExit(f"dagster job backfill failed: {backfill['stderr'][-2000:]}")
        deployed_at = None
        while True:
            progress = _progress(instance)
            if deployed_at is None and progress["registered"] >= len(parts):
                deployed_at = time.perf_counter() - start  # every model registered and, past the gate, deployed
            # Maps queue behind training and registration (habitat_sensor): done once each deployment has one.
            if deployed_at is not None and progress["open"] == 0 and progress["mapped"] >= progress["deployed"]:
                break
            if progress["failed"] or time.perf_counter() - start > timeout:
                raise SystemExit(f"backfill: {progress}, see {log.name}")
            time.sleep(1)
        wall = time.perf_counter() - start
        server_cpu = warm_servers(env["TMPDIR"])
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(daemon.pid, 0)
        log.close()
        warm_servers(env["TMPDIR"], stop=True)
    daemon_cpu = usage.ru_utime + usage.ru_stime  # the daemon, its code server and sensor evaluations
    cpu = daemon_cpu + backfill["cpu"] + server_cpu
    # Wall until every model is deployed (the goal); CPU until the maps are made too.
    return {"wall": deployed_at, "mapped_wall": wall, "cpu": cpu, "daemon_cpu": daemon_cpu, "server_cpu": server_cpu}


def biodiv_main(parts: list[Partition], env: dict, max_evals: int, folds: int) -> dict:
    config = Path(env["BIODIV_HOME"]) / "config"
    shutil.copytree(REPO / "config", config)
    (config / "sites.csv").write_text("site\n" + "".join(f"{s}\n" for s in sorted({p.site for p in parts})))
    species = sorted({p.species for p in parts})
    (config / "candidate_species.csv").write_text("species\n" + "".join(f"{name}\n" for name in species))
    env = {**env, "BIODIV_CONFIG_DIR": str(config)}
    command = [str(BIN / "biodiv"), "main", "--max-evals", str(max_evals), "--folds", str(folds)]
    result = run_with_rusage(command, env=env)
    server_cpu = warm_servers(env["TMPDIR"], stop=True)
    if result["returncode"] != 0:
        raise SystemExit(f"biodiv main failed: {result['stdout'][-1500:]} {result['stderr'][-1500:]}")
    return {"wall": result["wall"], "cpu": result["cpu"] + server_cpu}


def biodiv_run(part: Partition, env: dict, max_evals: int, folds: int) -> dict:
    command = [str(BIN / "biodiv"), "run", "--site", part.site, "--species", part.species, "--json"]
    result = run_with_rusage([*command, "--max-evals", str(max_evals), "--folds", str(folds)], env=env)
    server_cpu = warm_servers(env["TMPDIR"], stop=True)
    if result["returncode"] != 0:
        raise SystemExit(f"biodiv run failed: {result['stderr'][-2000:]}")
    summary = json.loads(result["stdout"])
    return {"wall": result["wall"], "cpu": result["cpu"] + server_cpu, "roc_auc": float(summary["roc_auc"])}


# --------------------------------------------------------------------------- phases


def phase_backfill(base: Path, args, pairs: int, with_main: bool) -> dict:
    data_root = base / "backfill-data"
    parts = generate(data_root, args.partitions, args.seed)
    sides: dict[str, list[dict]] = {"script": [], "daemon": [], "main": []}
    for pair in range(pairs):
        order = ["script", "daemon", "main"] if pair % 2 == 0 else ["daemon", "main", "script"]
        for side in order:
            if side == "script":
                sides[side].append(script_loop(parts, data_root, base, args.max_evals, args.folds))
            elif side == "daemon":
                env = fresh_env(base, f"daemon-{pair}", data_root)
                sides[side].append(daemon_backfill(parts, env, args.timeout))
            elif with_main:
                env = fresh_env(base, f"main-{pair}", data_root)
                sides[side].append(biodiv_main(parts, env, args.max_evals, args.folds))
    med = {
        side: {key: statistics.median(r[key] for r in runs) for key in ("wall", "cpu")}
        for side, runs in sides.items()
        if runs
    }
    n = len(parts)
    out = {
        "backfill_partitions": n,
        "backfill_labelled_rows": sorted(p.labelled for p in parts),
        "backfill_speedup_vs_script_loop": rounded(med["script"]["wall"] / med["daemon"]["wall"]),
        "script_loop_seconds": rounded(med["script"]["wall"]),
        "daemon_backfill_seconds": rounded(med["daemon"]["wall"]),
        # Until the last habitat map too (maps queue behind training; `biodiv main` maps inside its timing).
        "daemon_mapped_seconds": rounded(statistics.median(r["mapped_wall"] for r in sides["daemon"])),
        "script_partitions_per_hour": rounded(3600 * n / med["script"]["wall"], 1),
        "daemon_partitions_per_hour": rounded(3600 * n / med["daemon"]["wall"], 1),
        "script_cpu_seconds_per_partition": rounded(med["script"]["cpu"] / n),
        "daemon_cpu_seconds_per_partition": rounded(med["daemon"]["cpu"] / n),
        "all_backfill_seconds": {side: [rounded(r["wall"]) for r in runs] for side, runs in sides.items()},
    }
    if "main" in med:
        out.update(
            main_speedup_vs_script_loop=rounded(med["script"]["wall"] / med["main"]["wall"]),
            main_seconds=rounded(med["main"]["wall"]),
            main_partitions_per_hour=rounded(3600 * n / med["main"]["wall"], 1),
            main_cpu_seconds_per_partition=rounded(med["main"]["cpu"] / n),
        )
    return out


def phase_partition(base: Path, args, pairs: int) -> dict:
    from biodiv_core.data.generate import generate_datastore

    data_root = base / "partition-data"
    part = Partition("bigsite", "Benchia magna", 16000)
    generate_datastore(data_root, sites=[part.site], species=[part.species], rows=20000, seed=args.seed)
    ours, script = [], []
    for pair in range(pairs):
        for side in ["ours", "script"] if pair % 2 == 0 else ["script", "ours"]:
            if side == "ours":
                ours.append(biodiv_run(part, fresh_env(base, f"partition-{pair}", data_root), 20, 5))
            else:
                script.append(run_script(part, data_root, base, 20, 5))
    wall = {"ours": statistics.median(r["wall"] for r in ours), "script": statistics.median(r["wall"] for r in script)}
    return {
        "partition_speedup_vs_script": rounded(wall["script"] / wall["ours"]),
        "partition_seconds": rounded(wall["ours"]),
        "partition_script_seconds": rounded(wall["script"]),
        "partition_cpu_seconds": rounded(statistics.median(r["cpu"] for r in ours)),
        "partition_script_cpu_seconds": rounded(statistics.median(r["cpu"] for r in script)),
        "auc_delta_vs_script": rounded(
            statistics.median(r["roc_auc"] for r in ours) - statistics.median(r["roc_auc"] for r in script), 4
        ),
        "partition_roc_auc": rounded(statistics.median(r["roc_auc"] for r in ours), 4),
        "partition_script_roc_auc": rounded(statistics.median(r["roc_auc"] for r in script), 4),
    }


def phase_fixed(pairs: int) -> dict:
    import fixed_cost

    result = fixed_cost.measure(pairs)
    return {key: value for key, value in result.items() if key not in ("machine", "all_wall_seconds")}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2, help="alternating pairs per phase (medians reported)")
    parser.add_argument("--partitions", type=int, default=24)
    parser.add_argument("--max-evals", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds a daemon backfill may take")
    parser.add_argument("--phases", default="backfill,main,partition,fixed")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    phases = set(args.phases.split(","))
    base = Path(tempfile.mkdtemp(prefix="biodiv-bench-e2e-"))
    started = time.perf_counter()
    result: dict = {"pairs": args.pairs, "max_evals": args.max_evals, "folds": args.folds}
    try:
        if "backfill" in phases:
            result.update(phase_backfill(base, args, args.pairs, with_main="main" in phases))
        if "partition" in phases:
            result.update(phase_partition(base, args, args.pairs))
        if "fixed" in phases:
            result.update(phase_fixed(args.pairs))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    result["benchmark_seconds"] = rounded(time.perf_counter() - started, 1)
    result["machine"] = machine()
    return emit(result, args.json)


if __name__ == "__main__":
    main()
