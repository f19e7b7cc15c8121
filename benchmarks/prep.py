"""Big sites: prep of 1,000,000 points x 30 covariates (parquet and CSV) against 200,000 gold rows, vs the floor;
then the train / score / train_to_deploy steps on the 200k-row prepared partition.

- prep: ``biodiv_core.data.prep.run_prep`` (read, prune, join, validate, write the output folder).
- floor: pyarrow reads the same feature files and the gold CSV and does the inner join on gbifid
  (``Table.join``), nothing else: no validation, no dtype narrowing, no output.
Each runs in a fresh child process, prep and floor alternately (so both see the same load on a shared machine;
median wall of --repeat; the first of each is a discarded warm-up of the OS file cache). Work seconds (wall and
CPU of all threads) are timed inside the child (imports excluded); ``prep_ratio_to_floor_*_pairs`` are the
ratios of each prep run to the floor run right after it; peak memory is the child's own
high-water mark (VmHWM, read by the child at exit through ``_util.run_measured``) minus its RSS after imports,
i.e. what the work itself added. Not wait4's ru_maxrss: that is at least this process's own peak RSS before it
started the child (~700 MiB when it had just generated the data, the cache being empty; see _memory_probe.py).

``prep_peak_rss_ratio`` = prep's added peak RSS / in-memory size of the joined frame prep returns (features
as float32/category + targets + coordinates, pandas ``memory_usage(deep=True)``).

Steps: ``python -m azureml_steps.train|score|train_to_deploy`` on the prepared folder, --max-evals 20
--n-folds 5, threads = the CPU budget of one run on this machine; wall seconds and each step process's own
peak RSS. The data (~0.6 GB) is generated once into --data-dir and reused.

    python benchmarks/prep.py --json [--rows 1000000] [--gold-rows 200000] [--skip-steps]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from _util import REPO, added_peak_mib, emit, machine, own_rss_mib, rounded, run_measured

SITE, SPECIES = "bigsite", "Cygnus buccinator"

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, {repo!r})
mode, features, gold, output = sys.argv[1:5]
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.compute as pc, pyarrow.csv as pacsv, pyarrow.parquet as pq
from biodiv_core.data.prep import run_prep
from biodiv_core.step_args import PrepArgs
import _memory_probe  # this code runs under benchmarks/_memory_probe.py (run_measured)
_memory_probe.mark("imports")
start, cpu = time.perf_counter(), time.process_time()
if mode == "prep":
    summary = run_prep(PrepArgs(site="bench", species={species!r}, features=features,
                                species_dir=os.path.dirname(gold), output=output))
    rows = summary["rows"]
else:
    files = sorted(os.path.join(features, f) for f in os.listdir(features))
    if files[0].endswith(".parquet"):
        table = pa.concat_tables([pq.read_table(f) for f in files])
    else:
        table = pa.concat_tables([pacsv.read_csv(f) for f in files])
    labels = pacsv.read_csv(gold, convert_options=pacsv.ConvertOptions(include_columns=["gbifID", "occurrenceStatus"]))
    rows = table.join(labels, "gbifID", join_type="inner").num_rows
seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "rows": rows}}))
"""


def ensure_data(data_dir: Path, rows: int, gold_rows: int, covariates: int) -> tuple[dict[str, tuple[str, str]], bool]:
    """(features folder, gold file) per format, generated once (deterministic, so reusable); and whether this
    call generated any of it (False: all from the cache)."""
    from biodiv_core.data.generate import generate_datastore
    from biodiv_core.naming import features_asset_name, species_asset_name, species_file_name

    out, generated = {}, False
    for fmt in ("parquet", "csv"):
        root = data_dir / f"{fmt}-{rows}-{gold_rows}-{covariates}"
        summary = generate_datastore(
            root,
            sites=[SITE],
            species=[SPECIES],
            rows=rows,
            gold_rows=gold_rows,
            n_covariates=covariates,
            fmt=fmt,
            seed=0,
            if_exists="skip",
        )
        generated |= not summary["sites"][SITE].get("skipped", False)
        features = root / features_asset_name(SITE) / "1"
        gold = root / species_asset_name(SITE) / "1" / species_file_name(SPECIES)
        out[fmt] = (str(features), str(gold))
    return out, generated


def run_worker(mode: str, features: str, gold: str, output: str) -> dict:
    code = WORKER.format(repo=str(REPO), species=SPECIES)
    shutil.rmtree(output, ignore_errors=True)
    result = run_measured(["-c", code, mode, features, gold, output])
    if result["returncode"] != 0:
        raise RuntimeError(f"{mode} worker failed: {result['stderr'][-2000:]}")
    inner = json.loads(result["stdout"].strip().splitlines()[-1])
    return {
        "seconds": inner["seconds"],
        "cpu_seconds": inner["cpu_seconds"],
        "added_peak_rss_mib": added_peak_mib(result, "imports"),
        "peak_rss_mib": result["peak_rss_mib"],
        "baseline_rss_mib": result["memory"]["marks"]["imports"]["rss_mib"],
        "wait4_max_rss_mib": result["wait4_max_rss_mib"],
    }


def summary(runs: list[dict]) -> dict:
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
        "added_peak_rss_mib": statistics.median(r["added_peak_rss_mib"] for r in runs),
        "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in runs),
        "baseline_rss_mib": statistics.median(r["baseline_rss_mib"] for r in runs),
        "wait4_max_rss_mib": statistics.median(r["wait4_max_rss_mib"] for r in runs),
        "added_peak_rss_mib_runs": [r["added_peak_rss_mib"] for r in runs],
    }


def measure(features: str, gold: str, prepared: str, unused: str, repeat: int) -> tuple[dict, dict, list[float]]:
    """(prep, floor, prep/floor of each pair): prep and floor alternately, after a warm-up of each (OS file cache)."""
    run_worker("prep", features, gold, prepared)
    run_worker("floor", features, gold, unused)
    preps, floors = [], []
    for _ in range(repeat):
        preps.append(run_worker("prep", features, gold, prepared))
        floors.append(run_worker("floor", features, gold, unused))
    return summary(preps), summary(floors), [p["seconds"] / f["seconds"] for p, f in zip(preps, floors, strict=True)]


def joined_frame_mib(prepared: str) -> float:
    from biodiv_core.data.prep import load_prepared

    data = load_prepared(prepared)
    total = data.features.memory_usage(deep=True).sum() + data.targets.memory_usage(deep=True)
    if data.coords is not None:
        total += data.coords.memory_usage(deep=True).sum()
    return float(total) / 2**20


def run_step(step: str, args: list[str]) -> tuple[float, float | None]:
    """Wall seconds and the step process's own peak RSS (MiB; its children, if any, not counted)."""
    result = run_measured(["-m", f"azureml_steps.{step}", *args])
    if result["returncode"] != 0:
        raise RuntimeError(f"step {step} failed: {result['stderr'][-2000:]}")
    return result["wall"], rounded(result["peak_rss_mib"], 1) if result["peak_rss_mib"] is not None else None


def steps(prepared: str, work: Path, max_evals: int, n_folds: int, threads: int) -> dict:
    best, split, scores, model = (str(work / n) for n in ("best", "split", "scores", "model"))
    params = str(REPO / "config" / "lgbm_params.yml")
    common = ["--num-threads", str(threads), "--correlation-id", "bench-prep"]
    out = {}
    out["train_200k_seconds"], out["train_200k_peak_rss_mib"] = run_step(
        "train",
        ["--prepared", prepared, "--params-config", params, "--best-parameters", best, "--split", split,
         "--n-folds", str(n_folds), "--max-evals", str(max_evals), "--seed", "0", *common],
    )  # fmt: skip
    out["score_200k_seconds"], out["score_200k_peak_rss_mib"] = run_step(
        "score", ["--best-parameters", best, "--split", split, "--output", scores, *common]
    )
    out["deploy_200k_seconds"], out["deploy_200k_peak_rss_mib"] = run_step(
        "train_to_deploy", ["--prepared", prepared, "--best-parameters", best, "--output", model, *common]
    )
    metrics = json.loads((Path(scores) / "metrics.json").read_text())
    out["roc_auc_200k"] = metrics.get("roc_auc")
    trials = json.loads((Path(best) / "trials.json").read_text())
    out["best_cv_auc_200k"] = max(t["auc"] for t in trials)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--gold-rows", type=int, default=200_000)
    parser.add_argument("--covariates", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-evals", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--skip-steps", action="store_true", help="prep and floor only")
    parser.add_argument("--data-dir", default=str(REPO / ".biodiv" / "bench" / "prep"), help="generated data cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from biodiv_core.threads import cpu_budget

    with tempfile.TemporaryDirectory(prefix="biodiv-bench-prep-") as tmp:
        os.environ.update(BIODIV_HOME=f"{tmp}/home", MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db")
        data, generated = ensure_data(Path(args.data_dir), args.rows, args.gold_rows, args.covariates)
        out: dict = {"rows": args.rows, "gold_rows": args.gold_rows, "covariates": args.covariates}
        # The children's figures must not depend on these two (they did when read from wait4's ru_maxrss).
        out["data_generated_this_run"] = generated
        out["benchmark_process_rss_mib"] = rounded(own_rss_mib(), 1)
        out["benchmark_process_peak_rss_mib"] = rounded(own_rss_mib("VmHWM"), 1)
        out["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]  # 1, 5, 15 min: a shared machine
        for fmt, (features, gold) in data.items():
            prepared = f"{tmp}/prepared-{fmt}"
            prep, floor, pairs = measure(features, gold, prepared, f"{tmp}/unused", args.repeat)
            joined = joined_frame_mib(prepared)
            out[f"prep_{fmt}_seconds"] = rounded(prep["seconds"])
            out[f"floor_{fmt}_seconds"] = rounded(floor["seconds"])
            out[f"prep_ratio_to_floor_{fmt}"] = rounded(prep["seconds"] / floor["seconds"])
            out[f"prep_ratio_to_floor_{fmt}_pairs"] = [rounded(r) for r in pairs]
            out[f"prep_{fmt}_cpu_seconds"] = rounded(prep["cpu_seconds"])
            out[f"floor_{fmt}_cpu_seconds"] = rounded(floor["cpu_seconds"])
            out[f"prep_{fmt}_added_peak_rss_mib"] = rounded(prep["added_peak_rss_mib"], 1)
            out[f"prep_{fmt}_added_peak_rss_mib_runs"] = [rounded(v, 1) for v in prep["added_peak_rss_mib_runs"]]
            out[f"floor_{fmt}_added_peak_rss_mib"] = rounded(floor["added_peak_rss_mib"], 1)
            out[f"prep_{fmt}_peak_rss_mib"] = rounded(prep["peak_rss_mib"], 1)
            out["joined_frame_mib"] = rounded(joined, 1)
            out[f"prep_peak_rss_ratio_{fmt}"] = rounded(prep["added_peak_rss_mib"] / joined)
            # prep_peak_rss_ratio already leaves out the interpreter + libraries (RSS right after imports);
            # these show that baseline and the whole process's peak against the joined frame, for contrast.
            out[f"prep_{fmt}_import_baseline_rss_mib"] = rounded(prep["baseline_rss_mib"], 1)
            out[f"prep_peak_rss_ratio_incl_baseline_{fmt}"] = rounded(prep["peak_rss_mib"] / joined)
            # What wait4 said for the same prep child (the old figure): at least this process's peak before it.
            out[f"prep_{fmt}_wait4_max_rss_mib"] = rounded(prep["wait4_max_rss_mib"], 1)
        # Headline keys: the worse of the two formats.
        out["prep_ratio_to_floor"] = max(out["prep_ratio_to_floor_parquet"], out["prep_ratio_to_floor_csv"])
        out["prep_peak_rss_ratio"] = max(out["prep_peak_rss_ratio_parquet"], out["prep_peak_rss_ratio_csv"])
        out["load_average_after_prep"] = [round(v, 2) for v in os.getloadavg()]
        if not args.skip_steps:
            threads = cpu_budget(1)
            out["steps_num_threads"] = threads
            out.update({k: rounded(v, 4) if isinstance(v, float) else v for k, v in steps(
                f"{tmp}/prepared-parquet", Path(tmp), args.max_evals, args.folds, threads
            ).items()})  # fmt: skip
        out["machine"] = machine()
    return emit(out, args.json)


if __name__ == "__main__":
    main()
