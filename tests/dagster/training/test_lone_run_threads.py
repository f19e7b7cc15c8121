"""`biodiv run` alone gets every core for LightGBM; beside runs in progress, its share."""

import dagster as dg

from biodiv_dagster.cli.platform import lone_run_threads


def test_a_lone_run_gets_every_core_and_shares_them_with_runs_in_progress(monkeypatch):
    monkeypatch.setattr("biodiv_core.threads.available_cores", lambda: 4)
    monkeypatch.delenv("BIODIV_NUM_THREADS", raising=False)
    with dg.instance_for_test() as instance:
        assert lone_run_threads(instance, {"num_threads": None})["num_threads"] == 4
        job = dg.GraphDefinition("stand_in", node_defs=[]).to_job()
        instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        instance.create_run_for_job(job, status=dg.DagsterRunStatus.SUCCESS)  # finished: not counted
        assert lone_run_threads(instance, {"num_threads": None})["num_threads"] == 2
        # An explicit setting (flag, config/run.yml, BIODIV_NUM_THREADS) is kept as it is.
        assert lone_run_threads(instance, {"num_threads": 1})["num_threads"] == 1
        monkeypatch.setenv("BIODIV_NUM_THREADS", "3")
        assert lone_run_threads(instance, {"num_threads": None}) == {"num_threads": None}
