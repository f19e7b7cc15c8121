"""Many partitions: 100 sites x 100 species = 10,000 site x species partitions on a persistent (SQLite) instance.

- partition_sync_10k_seconds: `sync_partitions` from config (100 sites, 100 species) and a data store that
  has every site and gold file, on an empty instance; then the partition sync sensor's tick with nothing new.
- sensor_tick_1k_seconds: 1,000 new deployable_model materializations (instance.report_runless_asset_event,
  one per partition) and the registration sensor evaluated tick after tick from an empty cursor until it
  has requested them all (it reads BATCH_LIMIT events a tick); sensor_ticks_for_1k says how many ticks.
- ui_asset_page_seconds: the Dagster webserver (dagster-webserver on this instance and the code location)
  answering the GraphQL query of the deployable_model asset page: partition keys of both dimensions,
  the partition status ranges and stats, the latest materializations (median of --repeat, first discarded).

    python benchmarks/partitions.py --json [--sites 100] [--species 100] [--materializations 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _util import REPO, emit, isolated_state, machine, rounded

ASSET_PAGE_QUERY = """
query AssetPage($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      id
      partitionKeysByDimension { name partitionKeys }
      partitionStats { numMaterialized numPartitions numFailed numMaterializing }
      assetPartitionStatuses {
        ... on MultiPartitionStatuses {
          primaryDimensionName
          ranges {
            primaryDimStartKey primaryDimEndKey
            secondaryDim { ... on DefaultPartitionStatuses { materializedPartitions failedPartitions } }
          }
        }
      }
      assetMaterializations(limit: 25) { partition timestamp runId }
    }
  }
}
"""


def write_store(root: Path, config: Path, sites: list[str], species: list[str]) -> None:
    """The data-store layout sync looks at (one tiny file each: sync checks existence, never content)."""
    from biodiv_core.naming import features_asset_name, species_asset_name, species_file_name

    config.mkdir(parents=True)
    (config / "sites.csv").write_text("site\n" + "\n".join(sites) + "\n")
    (config / "candidate_species.csv").write_text("species\n" + "\n".join(species) + "\n")
    for name in ("lgbm_params.yml", "run.yml"):
        if (REPO / "config" / name).is_file():
            (config / name).write_text((REPO / "config" / name).read_text())
    for site in sites:
        features = root / features_asset_name(site) / "1"
        features.mkdir(parents=True)
        (features / "features.csv").write_text("gbifid,x\n1,0.5\n")
        gold = root / species_asset_name(site) / "1"
        gold.mkdir(parents=True)
        for name in species:
            (gold / species_file_name(name)).write_text("gbifid,occurrencestatus\n1,PRESENT\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def graphql(port: int, query: str, variables: dict) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.loads(response.read())


def ui_asset_page(repeat: int) -> dict:
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "dagster-webserver"),
        "-h", "127.0.0.1", "-p", str(port), "-m", "biodiv_dagster.definitions", "-a", "defs",
    ]  # fmt: skip
    log = open(Path(os.environ["BIODIV_HOME"]) / "webserver.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        started = time.perf_counter()
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"dagster-webserver exited {server.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=5):
                    break
            except OSError:
                if time.perf_counter() - started > 180:
                    raise RuntimeError("dagster-webserver did not answer within 180 s") from None
                time.sleep(0.5)
        ready = time.perf_counter() - started
        variables = {"assetKey": {"path": ["deployable_model"]}}
        times, answer = [], None
        for _ in range(repeat + 1):
            start = time.perf_counter()
            answer = graphql(port, ASSET_PAGE_QUERY, variables)
            times.append(time.perf_counter() - start)
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors'][:2]}")
        node = answer["data"]["assetNodeOrError"]
        return {
            "ui_asset_page_seconds": rounded(statistics.median(times[1:])),
            "ui_asset_page_first_seconds": rounded(times[0]),
            "ui_webserver_ready_seconds": rounded(ready),
            "ui_partitions_seen": node["partitionStats"]["numPartitions"],
            "ui_materialized_seen": node["partitionStats"]["numMaterialized"],
        }
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--species", type=int, default=100)
    parser.add_argument("--materializations", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-ui", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    with isolated_state("partitions") as base:
        sites = [f"Site {i:03d}" for i in range(args.sites)]
        species = [f"Genus{i // 10:02d} species{i:03d}" for i in range(args.species)]
        os.environ["BIODIV_DATA_ROOT"] = str(base / "data")
        os.environ["BIODIV_CONFIG_DIR"] = str(base / "config")
        write_store(base / "data", base / "config", sites, species)

        import logging

        import dagster as dg

        logging.getLogger("dagster").setLevel(logging.WARNING)  # the sensor logs every requested partition

        from biodiv_dagster.deployment.sensor import BATCH_LIMIT, registration_sensor
        from biodiv_dagster.instance import get_instance
        from biodiv_dagster.partitions import site_species_partitions
        from biodiv_dagster.training.sync import partition_sync_sensor, sync_partitions

        instance = get_instance()
        out: dict = {"sites": args.sites, "species": args.species}
        start = time.perf_counter()
        result = sync_partitions(instance)
        out["partition_sync_10k_seconds"] = rounded(time.perf_counter() - start)
        keys = site_species_partitions.get_partition_keys(dynamic_partitions_store=instance)
        out["partitions"] = len(keys)
        assert len(result.added_sites) == args.sites and len(result.added_species) == args.species
        start = time.perf_counter()
        partition_sync_sensor(dg.build_sensor_context(instance=instance))
        out["partition_sync_sensor_tick_seconds"] = rounded(time.perf_counter() - start)

        # 1,000 new models, spread over the partitions, as the training runs would report them.
        step = max(1, len(keys) // args.materializations)
        chosen = keys[::step][: args.materializations]
        start = time.perf_counter()
        for n, key in enumerate(chosen):
            instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    asset_key="deployable_model",
                    partition=key,
                    metadata={
                        "model_uri": f"file:///models/{n}",
                        "correlation_id": f"bench-{n}",
                        "path": f"/storage/deployable_model/{n}",
                    },
                )
            )
        out["report_1k_materializations_seconds"] = rounded(time.perf_counter() - start)

        cursor, requested, ticks, tick_times = None, 0, 0, []
        while True:
            start = time.perf_counter()
            tick = registration_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            tick_times.append(time.perf_counter() - start)
            ticks += 1
            requested += len(tick.run_requests or [])
            if not tick.run_requests:
                break
            cursor = tick.cursor
        out["sensor_tick_1k_seconds"] = rounded(sum(tick_times))
        out["sensor_ticks_for_1k"] = ticks
        out["sensor_batch_limit"] = BATCH_LIMIT
        out["sensor_single_tick_seconds_max"] = rounded(max(tick_times))
        out["sensor_requested"] = requested

        if not args.skip_ui:
            out.update(ui_asset_page(args.repeat))
        out["machine"] = machine()
    return emit(out, args.json)


if __name__ == "__main__":
    main()
