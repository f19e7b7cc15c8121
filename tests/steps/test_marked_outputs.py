"""Output folders written in place with a completion marker (`OutputCommit.MARKER`, what AzureML mounts get)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from biodiv_core.atomic import COMMIT_ENV, COMPLETE_MARKER, OutputCommit, output_dir, require_complete
from biodiv_core.errors import ConfigError, NotFoundError
from biodiv_core.step_args import PrepArgs
from biodiv_dagster.launcher.base import canonical_results
from biodiv_dagster.launcher.spec import StepSpec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def marker_mode(monkeypatch):
    monkeypatch.setenv(COMMIT_ENV, OutputCommit.MARKER.value)


def test_marker_mode_writes_in_place_and_marks_completion_last(marker_mode, tmp_path, monkeypatch):
    def no_directory_rename(src, dst):
        if os.path.isdir(src):
            raise OSError(95, "directory rename refused", src)
        return real_replace(src, dst)

    real_replace = os.replace
    monkeypatch.setattr(os, "replace", no_directory_rename)
    monkeypatch.setattr(os, "rename", no_directory_rename)
    target = tmp_path / "mount" / "run-1"
    with output_dir(target) as folder:
        assert folder == target
        (folder / "a.parquet").write_text("x")
        assert not (target / COMPLETE_MARKER).exists()  # a reader meanwhile sees an unfinished folder
        with pytest.raises(NotFoundError, match=f"no {COMPLETE_MARKER} marker.*materialize prepared_data again"):
            require_complete(target, "prepared_data")
    assert (target / COMPLETE_MARKER).is_file() and (target / "a.parquet").is_file()
    require_complete(target, "prepared_data")
    with pytest.raises(FileExistsError, match="already holds a finished output"), output_dir(target):
        pass


def test_marker_mode_leaves_nothing_on_error_and_a_new_attempt_clears_a_killed_one(marker_mode, tmp_path):
    target = tmp_path / "run-1"
    with pytest.raises(RuntimeError), output_dir(target) as folder:
        (folder / "sub").mkdir()
        (folder / "sub" / "part.parquet").write_text("x")
        raise RuntimeError("boom")
    assert target.is_dir() and not any(target.iterdir())
    # A process killed mid-write runs no cleanup at all: half its files stay, without the marker.
    code = (
        "import os, sys; from biodiv_core.atomic import output_dir\n"
        "with output_dir(sys.argv[1]) as f:\n"
        "    (f / 'features.parquet').write_text('half')\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(target)], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -9
    assert (target / "features.parquet").exists() and not (target / COMPLETE_MARKER).exists()
    with output_dir(target) as folder:  # the retry of that step
        (folder / "targets.parquet").write_text("whole")
    assert sorted(p.name for p in target.iterdir()) == [COMPLETE_MARKER, "targets.parquet"]


def test_downstream_step_refuses_an_upstream_folder_without_its_marker(tmp_path):
    partial = tmp_path / "prepared_data" / "run-1"
    partial.mkdir(parents=True)
    (partial / "features.parquet").write_text("half written")
    env = {**os.environ, "PYTHONPATH": str(REPO), **OutputCommit.MARKER.env()}
    argv = ["--site", "s", "--species", "Cygnus buccinator", "--prepared", str(partial)]
    argv += ["--best-parameters", str(tmp_path / "best"), "--split", str(tmp_path / "split")]
    argv += ["--params-config", str(REPO / "config" / "lgbm_params.yml")]
    done = subprocess.run(
        [sys.executable, "-m", "azureml_steps.train", *argv], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    assert f"{partial} has no {COMPLETE_MARKER} marker" in done.stderr and "prepared_data" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "best").exists() and not (tmp_path / "split").exists()


def test_rename_mode_needs_no_marker_and_a_bad_mode_is_a_config_error(tmp_path, monkeypatch):
    with output_dir(tmp_path / "out") as folder:
        (folder / "a").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # renamed into place, no marker
    require_complete(tmp_path / "out", "scores")
    monkeypatch.setenv(COMMIT_ENV, "move")
    with pytest.raises(ConfigError, match=f"{COMMIT_ENV}='move' is not one of rename, marker"):
        require_complete(tmp_path / "out", "scores")


def test_the_launcher_refuses_an_in_place_output_reported_without_its_marker(tmp_path):
    spec = StepSpec(PrepArgs(site="s", species="x", features="f", species_dir="g", output=str(tmp_path / "out")))
    bare = dg.MaterializeResult(asset_key="prepared_data", metadata={"path": dg.MetadataValue.path("/mnt/out")})
    canonical_results(spec, [bare], OutputCommit.RENAME)
    with pytest.raises(dg.Failure, match=f"without its {COMPLETE_MARKER} marker"):
        canonical_results(spec, [bare], OutputCommit.MARKER)
    marked = dg.MaterializeResult(
        asset_key="prepared_data",
        metadata={"path": "/mnt/out", "complete_marker": dg.MetadataValue.path(f"/mnt/out/{COMPLETE_MARKER}")},
    )
    [result] = canonical_results(spec, [marked], OutputCommit.MARKER)
    assert result.metadata["complete_marker"].value == str(tmp_path / "out" / COMPLETE_MARKER)
