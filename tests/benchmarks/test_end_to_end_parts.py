"""The pieces of benchmarks/end_to_end.py that decide what its figures compare: partition sizes, the baseline."""

import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import end_to_end  # noqa: E402


def test_partition_sizes_are_drawn_like_gbif_species():
    sizes = end_to_end.labelled_sizes(500, seed=0)
    assert min(sizes) >= 150 and max(sizes) <= 5000
    assert 400 <= statistics.median(sizes) <= 600  # log-normal around ~500 labelled rows
    assert end_to_end.labelled_sizes(24, seed=0) == end_to_end.labelled_sizes(24, seed=0)  # same data each run


def test_generated_partitions_have_their_drawn_sizes_and_both_classes(tmp_path):
    parts = end_to_end.generate(tmp_path, 4, seed=1)
    assert [p.labelled for p in parts] == end_to_end.labelled_sizes(4, seed=1)
    for part in parts:
        statuses = set(line.rsplit(",", 1)[1].strip().strip('"') for line in
                       end_to_end.gold_file(tmp_path, part).read_text().splitlines()[1:])  # fmt: skip
        assert statuses == {"PRESENT", "ABSENT"}


def test_the_straightforward_script_trains_scores_and_saves_a_model(tmp_path):
    parts = end_to_end.generate(tmp_path / "data", 2, seed=2)
    part, out = parts[0], tmp_path / "out"
    out.mkdir()
    data = tmp_path / "data"
    inputs = [str(end_to_end.features_file(data, part.site)), str(end_to_end.gold_file(data, part))]
    command = [sys.executable, str(end_to_end.SCRIPT), *inputs, str(out), "--max-evals", "2", "--folds", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == part.labelled and 0.5 < summary["roc_auc"] <= 1.0
    assert (out / "lgbm_gbif_model" / "MLmodel").is_file() and (out / "confusion_matrix.png").is_file()
