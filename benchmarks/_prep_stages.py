"""Where prep's memory goes: run_prep in a fresh probed child, RSS and high-water mark (MiB above the RSS after
imports) and seconds after each stage. Not a benchmark (run_all.py skips "_" files); uses the data prep.py
generated and cached (run `python benchmarks/prep.py --skip-steps` first).

    python benchmarks/_prep_stages.py [--repeat 3] [--data-dir .biodiv/bench/prep]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _util import REPO, added_peak_mib, run_measured

STAGES = r"""
import json, sys, time
features, gold_dir, species, output = sys.argv[1:5]
import numpy as np, pandas as pd, pyarrow as pa, pyarrow.csv, pyarrow.parquet
from biodiv_core.data import prep, streaming
from biodiv_core.step_args import PrepArgs
import _memory_probe
stages = []
def wrap(module, name):
    fn = getattr(module, name)
    def inner(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        now = _memory_probe.status_mib()
        stages.append({"stage": name, "rss_mib": round(now["VmRSS"] - base, 1),
                       "hwm_mib": round(now["VmHWM"] - base, 1), "seconds": round(time.perf_counter() - start, 3)})
        return out
    setattr(module, name, inner)
for module, name in ((streaming, "read_gold"), (prep, "read_gold_and_ids"), (streaming, "stream_gold_rows"),
                     (prep, "read_features"), (prep, "prepare_dataset"), (prep, "_write_parquet")):
    wrap(module, name)
_memory_probe.mark("imports")
base = _memory_probe.status_mib()["VmRSS"]
prep.run_prep(PrepArgs(site="bench", species=species, features=features, species_dir=gold_dir, output=output))
print(json.dumps(stages))
"""


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", default=str(REPO / ".biodiv" / "bench" / "prep"))
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--gold-rows", type=int, default=200_000)
    parser.add_argument("--covariates", type=int, default=30)
    args = parser.parse_args(argv)

    from prep import SITE, SPECIES

    from biodiv_core.naming import features_asset_name, species_asset_name

    for fmt in ("parquet", "csv"):
        root = Path(args.data_dir) / f"{fmt}-{args.rows}-{args.gold_rows}-{args.covariates}"
        features, gold = root / features_asset_name(SITE) / "1", root / species_asset_name(SITE) / "1"
        if not features.is_dir():
            raise SystemExit(f"{features} is missing: run benchmarks/prep.py --skip-steps first")
        for n in range(args.repeat):
            output = Path(tempfile.mkdtemp(prefix="biodiv-prep-stages-")) / "out"
            try:
                result = run_measured(["-c", STAGES, str(features), str(gold), SPECIES, str(output)])
            finally:
                shutil.rmtree(output.parent, ignore_errors=True)
            if result["returncode"] != 0:
                raise SystemExit(result["stderr"][-2000:])
            stages = json.loads(result["stdout"].strip().splitlines()[-1])
            added = round(added_peak_mib(result, "imports"), 1)
            print(json.dumps({"format": fmt, "run": n, "added_peak_rss_mib": added, "stages": stages}))


if __name__ == "__main__":
    main()
