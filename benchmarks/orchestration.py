"""Thin orchestration: one 20k-row partition through Dagster + the step launcher vs the same core functions
called directly in one process, with the same data and parameters.

- dagster: a fresh process runs ``biodiv_dagster.training.runner.train_partition`` (what `biodiv run` does before
  registering): the train_models job in process on a persistent SQLite instance, every asset launching its
  step (`python -m azureml_steps.<step>`) through Pipes.
- direct: a fresh process calls ``run_prep``, ``run_train``, ``run_score``, ``run_train_to_deploy``.
Both: max_evals 20, 5 folds, seed 0, num_threads 1 (one thread: the ratio measures orchestration, not a
thread count), MLflow tracking to a fresh SQLite store, fresh state each time. Wall and CPU (the whole
process tree, from wait4) of each, alternating, median of --repeat; ``orchestration_ratio`` is wall/wall.

    python benchmarks/orchestration.py --json [--rows 20000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _util import REPO, emit, machine, rounded, run_with_rusage

SITE, SPECIES = "orchestra", "Cygnus buccinator"

DAGSTER = """
import sys
sys.path.insert(0, {repo!r})
from biodiv_dagster.instance import get_instance
from biodiv_dagster.training.runner import train_partition
train_partition(get_instance(), {site!r}, {species!r}, max_evals={evals}, n_folds={folds}, seed=0, num_threads=1,
                quiet=True)
"""

DIRECT = """
import sys
sys.path.insert(0, {repo!r})
from biodiv_core.data.prep import run_prep
from biodiv_core.naming import features_asset_name, species_asset_name
from biodiv_core.run_settings import DEFAULTS
from biodiv_core.stages.score import run_score
from biodiv_core.stages.train import run_train
from biodiv_core.stages.train_to_deploy import run_train_to_deploy
from biodiv_core.step_args import DeployArgs, PrepArgs, ScoreArgs, TrainArgs
out = {out!r}
root = {root!r}
names = dict(site={site!r}, species={species!r})
run_prep(PrepArgs(**names, features=f"{{root}}/{{features_asset_name({site!r})}}/1",
                  species_dir=f"{{root}}/{{species_asset_name({site!r})}}/1", output=f"{{out}}/prepared"))
settings = DEFAULTS.replace(n_folds={folds}, max_evals={evals}, seed=0, num_threads=1)
run_train(TrainArgs.from_settings(settings, **names, prepared=f"{{out}}/prepared", params_config={params!r},
                                  best_parameters=f"{{out}}/best", split=f"{{out}}/split"))
run_score(ScoreArgs(**names, best_parameters=f"{{out}}/best", split=f"{{out}}/split", output=f"{{out}}/scores"))
run_train_to_deploy(DeployArgs(**names, prepared=f"{{out}}/prepared", best_parameters=f"{{out}}/best",
                               output=f"{{out}}/model"))
"""


def fresh_env(base: Path, data_root: Path) -> dict:
    home = base / "home"
    (home / "dagster").mkdir(parents=True)
    return {
        **os.environ,
        "BIODIV_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BIODIV_DATA_ROOT": str(data_root),
        "BIODIV_STEP_LOG_LEVEL": "WARNING",
    }


def once(kind: str, tmp: Path, n: int, data_root: Path, evals: int, folds: int) -> dict:
    base = tmp / f"{kind}-{n}"
    env = fresh_env(base, data_root)
    fields = dict(repo=str(REPO), site=SITE, species=SPECIES, evals=evals, folds=folds)
    if kind == "dagster":
        code = DAGSTER.format(**fields)
    else:
        params = str(REPO / "config" / "lgbm_params.yml")
        code = DIRECT.format(**fields, out=str(base / "out"), root=str(data_root), params=params)
    result = run_with_rusage([sys.executable, "-c", code], env=env, cwd=str(REPO))
    if result["returncode"] != 0:
        raise RuntimeError(f"{kind} run failed: {result['stderr'][-3000:]}")
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="gold (= partition) rows")
    parser.add_argument("--max-evals", type=int, default=20)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from biodiv_core.data.generate import generate_datastore

    with tempfile.TemporaryDirectory(prefix="biodiv-bench-orchestration-") as tmp:
        tmp = Path(tmp)
        data_root = tmp / "data"
        generate_datastore(
            data_root, sites=[SITE], species=[SPECIES], rows=int(args.rows * 1.25), gold_rows=args.rows, seed=0
        )
        runs: dict[str, list[dict]] = {"direct": [], "dagster": []}
        for n in range(args.repeat):
            for kind in ("direct", "dagster"):
                runs[kind].append(once(kind, tmp, n, data_root, args.max_evals, args.folds))
    wall = {k: statistics.median(r["wall"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu"] for r in v) for k, v in runs.items()}
    out = {
        "rows": args.rows,
        "max_evals": args.max_evals,
        "folds": args.folds,
        "repeat": args.repeat,
        "orchestration_ratio": rounded(wall["dagster"] / wall["direct"]),
        "orchestration_cpu_ratio": rounded(cpu["dagster"] / cpu["direct"]),
        "dagster_seconds": rounded(wall["dagster"], 2),
        "direct_seconds": rounded(wall["direct"], 2),
        "dagster_cpu_seconds": rounded(cpu["dagster"], 2),
        "direct_cpu_seconds": rounded(cpu["direct"], 2),
        "orchestration_overhead_seconds": rounded(wall["dagster"] - wall["direct"], 2),
        "all_wall_seconds": {k: [rounded(r["wall"], 2) for r in v] for k, v in runs.items()},
        "machine": machine(),
    }
    return emit(out, args.json)


if __name__ == "__main__":
    main()
