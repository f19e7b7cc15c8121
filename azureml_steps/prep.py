"""Step `prep`: gold data + features -> prepared features and targets (asset `prepared_data`).

python -m azureml_steps.prep --features DIR --species-dir DIR --species NAME --output DIR [--correlation-id ID]
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting

ASSET_KEY = "prepared_data"
logger = logging.getLogger("azureml_steps.prep")


def build_parser():
    p = _cli.parser("prep", __doc__.splitlines()[0])
    p.add_argument("--features", required=True, help="feature table: file or folder (one data-asset version)")
    p.add_argument("--species-dir", required=True, help="folder holding <species>_golddata.csv")
    p.add_argument(
        "--species", required=True, help="species name as in candidate_species.csv, e.g. 'Cygnus buccinator'"
    )
    p.add_argument("--output", required=True, help="output folder (must not exist or be empty)")
    p.add_argument("--site", default=None, help="site name, recorded in the summary and metadata (optional)")
    p.add_argument(
        "--min-rows-per-class",
        type=int,
        default=None,
        help="fail (writing nothing) if a class has fewer rows, e.g. the CV folds (optional)",
    )
    return p


def main(
    features: str,
    species_dir: str,
    species: str,
    output: str,
    site: str | None = None,
    correlation_id: str | None = None,
    min_rows_per_class: int | None = None,
) -> dict:
    from biodiv_core.prep import run_prep

    summary = run_prep(
        features=features,
        species_dir=species_dir,
        species=species,
        output=output,
        site=site,
        correlation_id=correlation_id,
        min_rows_per_class=min_rows_per_class,
    )
    reporting.report(ASSET_KEY, prepared_metadata(summary, output, correlation_id))
    return summary


def prepared_metadata(summary: dict[str, Any], output: str, correlation_id: str | None) -> dict[str, Any]:
    rows, n_present, n_absent = int(summary["rows"]), int(summary["n_present"]), int(summary["n_absent"])
    features = list(summary.get("features") or [])
    metadata: dict[str, Any] = {
        "path": reporting.path(output),
        "correlation_id": reporting.text(correlation_id or ""),
        "rows": reporting.integer(rows),
        "n_present": reporting.integer(n_present),
        "n_absent": reporting.integer(n_absent),
        "present_fraction": reporting.number(n_present / rows if rows else 0.0),
        "n_features": reporting.integer(summary.get("n_features", len(features))),
        "features": reporting.as_json(features),
        "duplicate_ids": reporting.integer(duplicate_ids(Path(output))),
        "class_balance": reporting.md(
            reporting.markdown_table(
                [
                    {"class": "PRESENT (1)", "rows": n_present, "share": n_present / rows if rows else 0.0},
                    {"class": "ABSENT (0)", "rows": n_absent, "share": n_absent / rows if rows else 0.0},
                ],
                ["class", "rows", "share"],
            )
        ),
    }
    for key in ("species", "site"):
        if summary.get(key):
            metadata[key] = reporting.text(summary[key])
    for key in ("gold_rows", "feature_rows", "dropped_null_targets", "gold_rows_without_features"):
        if summary.get(key) is not None:
            metadata[key] = reporting.integer(summary[key])
    return metadata


def duplicate_ids(folder: Path) -> int:
    """gbifids appearing more than once in the written targets (checked on the output, not trusted from the stage)."""
    import pyarrow.parquet as pq

    table = pq.read_table(folder / "targets.parquet")
    names = [name for name in table.column_names if name.lower() == "gbifid"]
    if not names:
        return 0
    ids = table.column(names[0])
    return len(ids) - len(ids.unique())


def cli(argv=None) -> int:
    return _cli.cli("prep", build_parser, main, sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(cli())
