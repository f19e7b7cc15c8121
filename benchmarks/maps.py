"""Suitability surfaces: a 4,000 x 4,000-cell, 12-covariate raster predicted in windows, vs the floor.

- surface: ``biodiv_core.serving.surface.predict_surface`` (read each window of the covariate rasters, score its
  valid cells through ``serving.scoring.score``, write the window; then the COG copy and the PNG map).
- floor: LightGBM ``Booster.predict`` (one thread, like the scoring path) on the same cells already in memory
  (a pandas frame, land cover as a category): no reading, no writing, no validation.

Each runs in a fresh child process (``_util.run_measured``). Work seconds (wall and the child's CPU) are timed
inside the child (imports excluded); ``peak_rss_added_mib`` is the child's own high-water mark minus its RSS
after imports. The model carries a covariate reference (as trained models do), so the surface computes MESS
and writes its band; ``surface_no_mess`` is the large surface without it. The surface runs at two raster
sizes with the same window: the added peak stays the same (memory follows the window). ``window_memory``
runs the small raster again with a 16x larger window: the extra peak of the windowed pass (its high-water mark
when the COG copy starts, ``windows_peak_rss_added_mib``) over the extra frame MiB is what one window holds
per MiB of its frame (cells x features as float64, ``frame_mib``); the fixed part cancels.
``ratio_to_floor`` = surface seconds / floor seconds at the large size (``cpu_ratio_to_floor``: CPU seconds,
steadier on a shared machine).

The rasters (smooth random fields, 11 numeric covariates + land cover with 7 classes; ~0.8 GB at 4,000 x 4,000)
are written window by window into --data-dir and reused; the model is LightGBM (60 rounds, 31 leaves) trained
on 20,000 cells of the small raster with labels from a known logistic niche.

    python benchmarks/maps.py --json [--size 4000] [--small-size 1000] [--window-cells 65536] [--data-dir DIR]
        [--wide-window-cells 1048576]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

from _util import REPO, added_peak_mib, emit, machine, rounded, run_measured

LAND_COVER = ("open_water", "wetland", "forest", "shrubland", "grassland", "barren", "developed")
NUMERIC = tuple(f"env_{i:02d}" for i in range(1, 12))
ROUNDS = 60

BUILD = r"""
import json, sys
sys.path.insert(0, {repo!r})
import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window
folder, size = sys.argv[1], int(sys.argv[2])
numeric, land_cover = {numeric!r}, {land_cover!r}
rng = np.random.default_rng(0)
waves = rng.normal(0, 3.0, size=(len(numeric) + 1, 6, 2))
phases = rng.uniform(0, 2 * np.pi, size=(len(numeric) + 1, 6))
profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:4326",
               transform=Affine(1.0 / size, 0, 0, 0, -1.0 / size, 1.0), nodata=-9999.0,
               tiled=True, blockxsize=256, blockysize=256)
def field(k, rows, cols):
    u = (cols[None, :] + 0.5) / size
    v = 1 - (rows[:, None] + 0.5) / size
    out = np.zeros((len(rows), len(cols)), dtype=np.float32)
    for w in range(6):
        out += np.cos(2 * np.pi * (u * waves[k, w, 0] + v * waves[k, w, 1]) + phases[k, w]).astype(np.float32)
    return out
names = list(numeric) + ["land_cover"]
files = {{n: rasterio.open(f"{{folder}}/{{n}}.tif", "w", **profile) for n in names}}
step = max(1, 262144 // size)
for row in range(0, size, step):
    rows, cols = np.arange(row, min(size, row + step)), np.arange(size)
    window = Window(0, row, size, len(rows))
    for k, name in enumerate(names):
        values = field(k, rows, cols)
        if name == "land_cover":
            values = np.clip(np.floor((values + 4) / 8 * len(land_cover)), 0, len(land_cover) - 1)
        files[name].write(values.astype(np.float32), 1, window=window)
for name, dst in files.items():
    dst.set_band_description(1, name)
    if name == "land_cover":
        dst.update_tags(1, categories=json.dumps(list(land_cover)))
    dst.close()
"""

TRAIN = r"""
import json, sys
sys.path.insert(0, {repo!r})
import lightgbm as lgb
import numpy as np
import rasterio
from biodiv_core.data.rasters import open_covariates
from biodiv_core.serving.scoring import model_inputs
from biodiv_core.serving.similarity import build_reference, write_reference
folder, out = sys.argv[1], sys.argv[2]
stack = open_covariates(folder)
rng = np.random.default_rng(1)
cells = rng.choice(stack.width * stack.height, size=20_000, replace=False)
frame = {{}}
for name, path in stack.files.items():
    with rasterio.open(path) as src:
        values = src.read(1).ravel()[cells]
    frame[name] = values
import pandas as pd
X = pd.DataFrame(frame)
X["land_cover"] = pd.Categorical.from_codes(X["land_cover"].astype(int), categories=stack.categories["land_cover"])
eta = 1.2 * X["env_01"] - 0.8 * X["env_02"] ** 2 / 4 + 0.6 * X["env_03"] + X["land_cover"].cat.codes * 0.2 - 0.5
y = (rng.random(len(X)) < 1 / (1 + np.exp(-eta))).astype(int)
params = dict(objective="binary", num_leaves=31, learning_rate=0.1, verbose=-1, num_threads=1, seed=0)
booster = lgb.train(params, lgb.Dataset(X, label=y), num_boost_round={rounds})
booster.save_model(f"{{out}}/model.txt")
inputs = model_inputs(booster, X, threshold=0.4)
open(f"{{out}}/inputs.json", "w").write(json.dumps(inputs.to_dict()))
write_reference(build_reference(X, inputs.features, inputs.categories), out)
"""

SURFACE = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import lightgbm as lgb
from biodiv_core.data.rasters import open_covariates
from dataclasses import replace
from biodiv_core.serving.scoring import ModelInputs
from biodiv_core.serving.similarity import read_reference
from biodiv_core.serving.surface import predict_surface
import _memory_probe
folder, model_dir, output, window, mess = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
booster = lgb.Booster(model_file=f"{{model_dir}}/model.txt")
inputs = ModelInputs.from_dict(json.load(open(f"{{model_dir}}/inputs.json")))
if mess == "mess":
    inputs = replace(inputs, reference=read_reference(model_dir))
import rasterio.shutil
copy_cog = rasterio.shutil.copy
def copy_marked(*args, **kwargs):
    _memory_probe.mark("windows")  # its high-water mark so far: the windowed pass's peak
    return copy_cog(*args, **kwargs)
rasterio.shutil.copy = copy_marked
_memory_probe.mark("imports")
start, cpu = time.perf_counter(), time.process_time()
stack = open_covariates(folder, inputs.features)
summary = predict_surface(stack, booster, inputs, output, window_cells=window)
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                  "valid_cells": summary["valid_cells"]}}))
"""

FLOOR = r"""
import json, sys, time
sys.path.insert(0, {repo!r})
import lightgbm as lgb
import numpy as np
import pandas as pd
import rasterio
from biodiv_core.data.rasters import open_covariates
import _memory_probe
folder, model_dir = sys.argv[1], sys.argv[2]
booster = lgb.Booster(model_file=f"{{model_dir}}/model.txt")
_memory_probe.mark("imports")
stack = open_covariates(folder)
frame = {{}}
for name in booster.feature_name():
    with rasterio.open(stack.files[name]) as src:
        values = src.read(1).ravel()
    frame[name] = (pd.Categorical.from_codes(values.astype(int), categories=stack.categories[name])
                   if name in stack.categories else values.astype(np.float64))
frame = pd.DataFrame(frame)
start, cpu = time.perf_counter(), time.process_time()
p = booster.predict(frame, num_threads=1)
print(json.dumps({{"seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu, "cells": len(p)}}))
"""


def _child(code: str, *args: str) -> dict:
    """Run formatted ``code`` in a measured child; its last stdout line is JSON."""
    result = run_measured(["-c", code, *args], cwd=str(REPO / "benchmarks"))
    if result["returncode"] != 0:
        raise SystemExit(f"benchmark child failed: {result['stderr'][-2000:]}")
    return result | json.loads(result["stdout"].strip().splitlines()[-1])


def _rasters(data_dir: Path, size: int) -> Path:
    folder = data_dir / f"covariates-{size}"
    if not (folder / "land_cover.tif").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        code = BUILD.format(repo=str(REPO), numeric=NUMERIC, land_cover=LAND_COVER)
        _child(code + "\nprint('{}')", str(folder), str(size))
    return folder


def _window_cells(size: int, max_cells: int) -> int:
    """Cells of the largest window `rasters.windows` makes of a size x size grid."""
    cols = min(size, max(1, math.isqrt(max(1, max_cells))))
    return cols * min(size, max(1, max_cells // cols))


def _windows_peak(run: dict) -> float:
    """The child's peak RSS until the windows were all written (before the COG copy and the map), above its
    RSS after imports."""
    marks = run["memory"]["marks"]
    return marks["windows"]["hwm_mib"] - marks["imports"]["rss_mib"]


def _frame_mib(cells: int) -> float:
    """One window's frame: its cells x the covariates as float64."""
    return cells * (len(NUMERIC) + 1) * 8 / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--small-size", type=int, default=1000)
    parser.add_argument("--window-cells", type=int, default=65_536)
    parser.add_argument("--wide-window-cells", type=int, default=16 * 65_536, help="for the window memory")
    parser.add_argument("--data-dir", default=str(REPO / ".biodiv" / "bench" / "maps"), help="raster cache")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    small, large = _rasters(data_dir, args.small_size), _rasters(data_dir, args.size)
    model_dir = data_dir / "model"
    model_dir.mkdir(exist_ok=True)
    _child(TRAIN.format(repo=str(REPO), rounds=ROUNDS) + "\nprint('{}')", str(small), str(model_dir))

    def surface(size: int, folder: Path, window: int, mess: bool) -> dict:
        output = data_dir / f"surface-{size}"
        if output.exists():
            shutil.rmtree(output)
        output.mkdir()
        flag = "mess" if mess else "no-mess"
        run = _child(SURFACE.format(repo=str(REPO)), str(folder), str(model_dir), str(output), str(window), flag)
        return {
            "cells": size * size,
            "window_cells": _window_cells(size, window),
            "seconds": rounded(run["seconds"]),
            "cpu_seconds": rounded(run["cpu_seconds"]),
            "peak_rss_mib": rounded(run["peak_rss_mib"], 1),
            "peak_rss_added_mib": rounded(added_peak_mib(run, "imports"), 1),
            "windows_peak_rss_added_mib": rounded(_windows_peak(run), 1),
        }

    # The large surface runs on both sides of the floor (with and without MESS) so load drifts hit both.
    surfaces = {args.small_size: surface(args.small_size, small, args.window_cells, True)}
    surfaces[args.size] = surface(args.size, large, args.window_cells, True)
    floor = _child(FLOOR.format(repo=str(REPO)), str(large), str(model_dir))
    no_mess = surface(args.size, large, args.window_cells, False)
    wide = surface(args.small_size, small, args.wide_window_cells, True)
    narrow = surfaces[args.small_size]
    frames = [_frame_mib(run["window_cells"]) for run in (narrow, wide)]
    added = wide["windows_peak_rss_added_mib"] - narrow["windows_peak_rss_added_mib"]
    result = {
        "benchmark": "maps",
        "covariates": len(NUMERIC) + 1,
        "window_cells": args.window_cells,
        "frame_mib": rounded(_frame_mib(args.window_cells), 1),
        "model_rounds": ROUNDS,
        "surface": surfaces,
        "surface_no_mess": no_mess,
        "floor_seconds": rounded(floor["seconds"]),
        "floor_cpu_seconds": rounded(floor["cpu_seconds"]),
        "floor_peak_rss_added_mib": rounded(added_peak_mib(floor, "imports"), 1),
        "ratio_to_floor": rounded(surfaces[args.size]["seconds"] / floor["seconds"]),
        "cpu_ratio_to_floor": rounded(surfaces[args.size]["cpu_seconds"] / floor["cpu_seconds"]),
        "ratio_to_floor_no_mess": rounded(no_mess["seconds"] / floor["seconds"]),
        "cpu_ratio_to_floor_no_mess": rounded(no_mess["cpu_seconds"] / floor["cpu_seconds"]),
        # What one window adds: the same raster with a 16x larger window, the extra peak per extra frame MiB
        # (the fixed part -- GDAL's cache, the COG copy, the map, LightGBM -- is in both runs and cancels).
        "window_memory": {
            "window_cells": [narrow["window_cells"], wide["window_cells"]],
            "frame_mib": [rounded(f, 1) for f in frames],
            "windows_peak_rss_added_mib": [narrow["windows_peak_rss_added_mib"], wide["windows_peak_rss_added_mib"]],
            "ratio_to_frame": rounded(added / (frames[1] - frames[0])),
        },
        "machine": machine(),
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
