"""Presence-only species through the real `biodiv` processes: generate-data makes one, `biodiv run --json` trains
it with background points and says so; with nothing left to draw background from, one line and exit 2."""

import json
import subprocess
import sys

import pandas as pd

from biodiv_core import settings
from biodiv_core.data import datastore as ds
from biodiv_core.data.background import AUC_CAVEAT

CLI = [sys.executable, "-c", "import sys; from biodiv_dagster.cli import main; sys.exit(main())"]
SITE, SPECIES, WITH_ABSENCES = "everglades", "Cygnus buccinator", "Lynx canadensis"
TINY = ["--max-evals", "2", "--folds", "3", "--num-threads", "1"]


def biodiv(*args):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=settings.REPO_ROOT, timeout=600)


def _generate(root, *args):
    completed = biodiv(
        "generate-data", "--root", str(root), "--sites", SITE, "--species", SPECIES, WITH_ABSENCES,
        "--presence-only", SPECIES, "--rows", "600", "--raster-size", "20", "--json", *args,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout)


def test_run_json_reports_the_background_points_of_a_presence_only_species(tmp_path):
    root = tmp_path / "data"
    info = _generate(root)["sites"][SITE]["species"]
    assert info[SPECIES]["presence_only"] and info[SPECIES]["n_absent"] == 0
    assert not info[WITH_ABSENCES]["presence_only"] and info[WITH_ABSENCES]["n_absent"] > 0

    completed = biodiv(
        "run", "--site", SITE, "--species", SPECIES, "--data-root", str(root), "--background-points", "300", "--json",
        *TINY,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout)
    assert result["background_points"] == result["n_absent"] == 300  # from the 20 x 20 raster cells
    assert result["n_present"] == info[SPECIES]["n_present"] and result["auc_caveat"] == AUC_CAVEAT
    assert 0.5 < result["roc_auc"] <= 1 and result["threshold"] is not None  # the gate and thresholds as ever

    import dagster as dg

    [prepared] = dg.DagsterInstance.get().fetch_materializations(dg.AssetKey("prepared_data"), limit=1).records
    metadata = prepared.asset_materialization.metadata
    assert metadata["background_points"].value == 300
    assert metadata["background_source"].value == "raster_cells"
    assert metadata["auc_caveat"].value == AUC_CAVEAT


def test_presence_only_species_without_rows_for_background_is_one_line(tmp_path):
    root = tmp_path / "data"
    _generate(root, "--raster-size", "0")
    ids = ds.read_table(ds.features_dir(root, SITE), ["gbifid"])["gbifid"]  # every point of the site a presence
    pd.DataFrame({"gbifID": ids, "occurrenceStatus": "PRESENT"}).to_csv(
        ds.species_file(root, SITE, SPECIES), index=False
    )
    completed = biodiv("run", "--site", SITE, "--species", SPECIES, "--data-root", str(root), "--json", *TINY)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert completed.stdout == "" and "Traceback" not in completed.stderr
    assert "no rows besides the 600 presences" in completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1, completed.stderr
