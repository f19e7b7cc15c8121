"""Species names whose gold-data file name the file system refuses, or spells differently, through the real CLI.

Was: a species name of more than 255 bytes once encoded ("ü" * 150 is 300 bytes) ended in `OSError: [Errno 36]
File name too long` with a traceback; a gold file written in NFD (as macOS does) was "not found" while the
message listed a file that looked exactly like the one expected.
"""

from __future__ import annotations

import subprocess
import sys
import unicodedata

from cli_process import assert_clean_user_error, biodiv, run_args
from reliability_helpers import SITE, valid_tables, write_store

from biodiv_core import settings


def test_a_species_name_too_long_for_a_file_name_is_one_line(tmp_path):
    write_store(tmp_path / "data", *valid_tables())
    completed = biodiv(*run_args(tmp_path / "data", SITE, "ü" * 150))
    assert_clean_user_error(completed, "gives a gold-data file name of 313 bytes", "shorter species name")


def test_a_gold_file_named_in_nfd_is_found_for_the_nfc_name(tmp_path):
    species = "Grüne Rübe"
    features, gold = valid_tables()
    _, sdir = write_store(tmp_path / "data", features, gold)
    nfd = unicodedata.normalize("NFD", "grüne_rübe_golddata.csv")
    (sdir / "cygnus_buccinator_golddata.csv").rename(sdir / nfd)
    output = tmp_path / "prepared"
    completed = subprocess.run(
        [sys.executable, "-m", "azureml_steps.prep", "--site", SITE, "--species", species]
        + ["--features", str(tmp_path / "data" / f"{SITE}-training-features" / "1"), "--species-dir", str(sdir)]
        + ["--output", str(output)],
        capture_output=True,
        text=True,
        cwd=settings.REPO_ROOT,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (output / "targets.parquet").is_file()
