"""`biodiv generate-data`: write synthetic GBIF-like sample data into a local data store."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate-data",
        help="Write synthetic sample data (features, gold data, true probabilities) into a data store.",
        description=(
            "Write <root>/<site>-training-features/<version>/, <root>/<site>-training-species/<version>/ "
            "(one <species>_golddata.csv per species), <root>/<site>-covariates/<version>/ (one GeoTIFF per "
            "covariate; the points take their cell's values) and <root>/<site>-truth/<version>/ (true "
            "probabilities at the points and as a surface, for tests). Deterministic for a seed."
        ),
    )
    parser.add_argument("--root", help="data store folder (default: BIODIV_DATA_ROOT, else $BIODIV_HOME/data)")
    parser.add_argument("--sites", nargs="+", metavar="SITE", help="site names (default: config/sites.csv)")
    parser.add_argument(
        "--species", nargs="+", metavar="NAME", help='species names, e.g. "Cygnus buccinator" (default: config)'
    )
    parser.add_argument(
        "--presence-only",
        nargs="+",
        metavar="NAME",
        default=(),
        help="species (of --species) whose gold data keeps its PRESENT rows only, as most GBIF downloads",
    )
    parser.add_argument("--rows", type=int, default=5000, help="points per site (default 5000)")
    parser.add_argument("--gold-rows", type=int, help="labelled points per species (default 80%% of --rows)")
    parser.add_argument("--covariates", type=int, default=12, help="covariate columns incl. land_cover (default 12)")
    parser.add_argument("--format", choices=("csv", "parquet"), default="csv", help="feature file format (default csv)")
    parser.add_argument("--parts", type=int, default=1, help="feature files per site (default 1)")
    parser.add_argument(
        "--raster-size",
        type=int,
        metavar="N",
        help="covariate rasters of N x N cells per site; 0 writes none (default: the generator's, 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data (default 0)")
    parser.add_argument("--version", type=int, default=1, help="data asset version to write (default 1)")
    parser.add_argument(
        "--if-exists",
        choices=("error", "overwrite", "skip"),
        default="error",
        help="what to do when that version already exists (default: error)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=generate_data)


def _config_column(file_name: str, column: str) -> list[str]:
    from biodiv_core.data.datastore import read_table
    from biodiv_core.settings import config_dir

    path = config_dir() / file_name
    if not path.is_file():
        return []
    return [str(v).strip() for v in read_table(path, [column])[column].dropna() if str(v).strip()]


def generate_data(args: argparse.Namespace) -> int:
    from biodiv_core.data.generate import generate_datastore
    from biodiv_core.data.landscape import DEFAULT_SITES, DEFAULT_SPECIES
    from biodiv_core.settings import data_root

    root = args.root or data_root()
    sites = args.sites or _config_column("sites.csv", "site") or list(DEFAULT_SITES)
    species = args.species or _config_column("candidate_species.csv", "species") or list(DEFAULT_SPECIES)
    summary = generate_datastore(
        root,
        sites=sites,
        species=species,
        rows=args.rows,
        seed=args.seed,
        version=args.version,
        fmt=args.format,
        n_covariates=args.covariates,
        gold_rows=args.gold_rows,
        parts=args.parts,
        if_exists=args.if_exists,
        presence_only=args.presence_only,
        **({} if args.raster_size is None else {"raster_size": args.raster_size}),
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    for site, info in summary["sites"].items():
        if info.get("skipped"):
            print(f"{site}: version {summary['version']} already in {root}, kept as is")
            continue
        print(f"{site}: {info['rows']} points, {len(info['covariates'])} covariates -> {info['features']}")
        for name, sp in info["species"].items():
            print(f"  {name}: {sp['n_present']} PRESENT / {sp['n_absent']} ABSENT -> {sp['gold_file']}")
    return 0
