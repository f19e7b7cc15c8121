"""AzureML outputs are blobfuse read-write mounts: the fake's mounts refuse directory renames, as blobfuse does."""

import dagster as dg
import pytest
from azureml_helpers import fake_workspace  # noqa: F401 - fixture
from test_azureml_launcher import PARTITION, SITE, SPECIES, _failure_text, _prep_asset, uploaded  # noqa: F401

from biodiv_core.atomic import COMPLETE_MARKER, OutputCommit
from biodiv_dagster.launcher.azureml import AzureMLStepLauncher

pytestmark = pytest.mark.azurite


class RenamingAzureMLStepLauncher(AzureMLStepLauncher):
    """The azureml launcher with the local way of committing outputs (a temp folder renamed into place)."""

    def output_commit(self) -> OutputCommit:
        return OutputCommit.RENAME


def _run(launcher):
    defs = dg.Definitions(assets=[_prep_asset()], resources={"step_launcher": launcher})
    return defs.get_implicit_global_asset_job_def().execute_in_process(
        partition_key=PARTITION, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )


def test_a_directory_rename_in_the_mount_fails_as_on_blobfuse(uploaded):  # noqa: F811
    result = _run(RenamingAzureMLStepLauncher())
    assert not result.success
    assert "a directory cannot be renamed" in _failure_text(result)


def test_azureml_steps_write_in_place_and_report_their_marker(uploaded):  # noqa: F811
    result = _run(AzureMLStepLauncher())
    assert result.success
    meta = {k: v.value for k, v in result.asset_materializations_for_node("prepared_data")[0].metadata.items()}
    base = f"azureml://datastores/workspaceblobstore/paths/prepared_data/{SITE}/{SPECIES}/{result.run_id}"
    assert meta["complete_marker"] == f"{base}/{COMPLETE_MARKER}"
    folder = uploaded.datastore_path(base + "/")
    assert (folder / COMPLETE_MARKER).is_file() and (folder / "features.parquet").is_file()
    assert [p.name for p in folder.parent.iterdir()] == [result.run_id]  # nothing beside it: no temp folder
