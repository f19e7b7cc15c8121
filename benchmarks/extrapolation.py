"""Extrapolation flags: what MESS adds to scoring, and the size of the reference that travels with the model.

One table of --rows rows (default 1,000,000; 11 numeric covariates + land cover with 7 classes, as
``benchmarks/maps.py``), a LightGBM model (60 rounds, 31 leaves, one thread) trained on 20,000 of them, saved with
``mlflow_model.save_model`` (so with ``covariate_reference.json``). ``serving.scoring.score`` runs on the table with
and without the reference, alternating, --repeats times each; CPU seconds (``time.process_time``, this process)
per run, ``ratio`` = median with / median without. Also: ``mess`` alone (the searchsorted pass on the prepared
frame), the reference file's bytes and the model file's bytes for scale. In one process, so the ratio holds
under a busy machine's load better than wall seconds do.

    python benchmarks/extrapolation.py --json [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _util import emit, machine, rounded

LAND_COVER = ("open_water", "wetland", "forest", "shrubland", "grassland", "barren", "developed")
NUMERIC = tuple(f"env_{i:02d}" for i in range(1, 12))


def _table(rows: int, seed: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(NUMERIC))), columns=list(NUMERIC))
    frame["land_cover"] = pd.Categorical.from_codes(rng.integers(0, len(LAND_COVER), rows), LAND_COVER)
    logit = frame["env_01"] - 0.5 * frame["env_02"] ** 2 + (frame["land_cover"] == "forest")
    target = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, target.to_numpy()


def _cpu(function) -> float:
    start = time.process_time()
    function()
    return time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from biodiv_core.serving import mlflow_model
    from biodiv_core.serving.pyfunc import load_folder
    from biodiv_core.serving.scoring import _prepare, score
    from biodiv_core.serving.similarity import REFERENCE_FILE, mess
    from biodiv_core.training.model import fit_model

    train, target = _table(20_000, seed=0)
    params = {"objective": "binary", "num_leaves": 31, "num_boost_round": 60, "seed": 0, "verbose": -1}
    booster = fit_model(train, target, params, num_threads=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = mlflow_model.save_model(booster, tmp, sample=train)
        loaded = load_folder(folder)
        reference_bytes = (Path(folder) / REFERENCE_FILE).stat().st_size
        model_bytes = (Path(folder) / "model.lgb").stat().st_size
    with_reference = loaded.inputs
    without = replace(with_reference, reference=None)
    table, _ = _table(args.rows, seed=1)
    table["land_cover"] = table["land_cover"].astype(str)  # as a CSV holds it
    with_s, without_s = [], []
    for _ in range(args.repeats):
        without_s.append(_cpu(lambda: score(table, loaded.booster, without)))
        with_s.append(_cpu(lambda: score(table, loaded.booster, with_reference)))
    frame, unseen = _prepare(table, with_reference)
    mess_s = statistics.median(
        _cpu(lambda: mess(frame, with_reference.reference, with_reference.categories, unseen))
        for _ in range(args.repeats)
    )
    emit(
        {
            "benchmark": "extrapolation",
            "rows": args.rows,
            "covariates": len(NUMERIC) + 1,
            "reference_bytes": reference_bytes,
            "model_file_bytes": model_bytes,
            "score_cpu_s_without_mess": rounded(statistics.median(without_s)),
            "score_cpu_s_with_mess": rounded(statistics.median(with_s)),
            "mess_alone_cpu_s": rounded(mess_s),
            "ratio": rounded(statistics.median(with_s) / statistics.median(without_s)),
            "machine": machine(),
        },
        args.json,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
