"""Step `prep`: gold data + features -> prepared features and targets (asset `prepared_data`).

python -m azureml_steps.prep --site NAME --species NAME --features DIR --species-dir DIR --output DIR
    [--min-rows-per-class N] [--correlation-id ID]   (all options: --help; contract: biodiv_core.step_args.PrepArgs)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from azureml_steps import _cli, reporting
from biodiv_core.step_args import PrepArgs


def main(args: PrepArgs) -> dict:
    from biodiv_core.data.prep import run_prep

    summary = run_prep(args)
    reporting.report(PrepArgs.asset_keys()["output"], prepared_metadata(summary, args))
    return summary


def prepared_metadata(summary: dict[str, Any], args: PrepArgs) -> dict[str, Any]:
    rows, n_present, n_absent = int(summary["rows"]), int(summary["n_present"]), int(summary["n_absent"])
    features = list(summary.get("features") or [])
    metadata: dict[str, Any] = {
        **reporting.common(args.output, args),
        "rows": reporting.integer(rows),
        "n_present": reporting.integer(n_present),
        "n_absent": reporting.integer(n_absent),
        "present_fraction": reporting.number(n_present / rows if rows else 0.0),
        "n_features": reporting.integer(summary.get("n_features", len(features))),
        "features": reporting.as_json(features),
        "duplicate_ids": reporting.integer(duplicate_ids(Path(args.output))),
        "class_balance": reporting.md(
            reporting.markdown_table(
                [
                    {"class": "PRESENT (1)", "rows": n_present, "share": n_present / rows if rows else 0.0},
                    {
                        "class": "background (0)" if summary.get("background_points") else "ABSENT (0)",
                        "rows": n_absent,
                        "share": n_absent / rows if rows else 0.0,
                    },
                ],
                ["class", "rows", "share"],
            )
        ),
    }
    # Background points (label 0) of a presence-only species: 0 when the gold data had real absences.
    metadata["background_points"] = reporting.integer(int(summary.get("background_points") or 0))
    for key in ("species", "site", "background_source", "auc_caveat"):
        if summary.get(key):
            metadata[key] = reporting.text(summary[key])
    # Whether the output depends on the covariate rasters (background cells, thinning): prepared_data then
    # counts their version among its inputs.
    metadata["covariates_used"] = reporting.boolean(summary.get("covariates_used"))
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
    return _cli.cli(PrepArgs, main, argv)


if __name__ == "__main__":
    sys.exit(cli())
