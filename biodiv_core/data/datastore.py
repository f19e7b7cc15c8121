"""The local versioned data store (DESIGN section 3) and the table reader everything else uses.

Layout::

    <root>/<site>-training-features/<version>/*.csv|*.parquet
    <root>/<site>-training-species/<version>/<species_file>
    <root>/<site>-covariates/<version>/<covariate>.tif           (optional: one GeoTIFF per covariate, `rasters`)
    <root>/<site>-truth/<version>/<species_stem>_truth.csv      (generated data only; never read by training)
    <root>/<site>-truth/<version>/<species_stem>_probability.tif  (the true surface, generated data only)

``<version>`` is a positive integer folder and "latest" is the highest. Reading goes through pyarrow
so that only the requested columns are parsed (gold files can be wide GBIF exports) and column names
are matched case-insensitively (GBIF says ``gbifID``, ``occurrenceStatus``).
"""

from __future__ import annotations

import csv
import os
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from biodiv_core.errors import DataContractError, NotFoundError
from biodiv_core.naming import (
    covariates_asset_name,
    features_asset_name,
    species_asset_name,
    species_file_name,
    species_stem,
    truth_asset_name,
)

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


# --------------------------------------------------------------------------- versions and assets


def _is_version(name: str) -> bool:
    # Canonical only: "01" would be version 1 here but not at the path `asset_dir` builds from the number.
    return name.isascii() and name.isdigit() and int(name) > 0 and name == str(int(name))


def _not_versions(folder: Path) -> str:
    """What an asset folder holds instead of version folders, for the error message."""
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir() if not p.name.startswith("."))
    shown = ", ".join(repr(n) for n in names[:8]) + (" ..." if len(names) > 8 else "")
    return (
        f"Data asset folder {folder} has no version folders (found: {shown or 'nothing'}); the layout is "
        f"{folder}/<version>/<files>, a version being a positive whole number without leading zeros (1, 2, ...): "
        "rename or move the folders."
    )


def list_assets(root: str | os.PathLike) -> list[str]:
    """Names of the data assets (sub-folders holding at least one version) under ``root``."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any(_is_version(c.name) for c in p.iterdir()))


def list_versions(root: str | os.PathLike, asset: str) -> list[int]:
    """Versions of ``asset`` under ``root``, ascending; empty if the asset does not exist."""
    folder = Path(root) / asset
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and _is_version(p.name))


def resolve_version(root: str | os.PathLike, asset: str, version: int | str | None = None) -> int:
    """The explicit ``version`` if it exists, else the latest; NotFoundError lists what exists."""
    versions = list_versions(root, asset)
    if not versions and (Path(root) / asset).is_dir():
        raise NotFoundError(_not_versions(Path(root) / asset))
    if not versions:
        assets = list_assets(root)
        raise NotFoundError(
            f"Data asset {asset!r} not found in data store {root}. "
            f"Assets there: {', '.join(assets) if assets else 'none'}. "
            "Generate sample data with `biodiv generate-data --root DIR` or point BIODIV_DATA_ROOT at your data store."
        )
    if version is None or (isinstance(version, str) and version.strip().lower() in ("", "latest")):
        return versions[-1]
    try:
        wanted = int(version)
    except (TypeError, ValueError):
        raise NotFoundError(
            f"Version {version!r} of data asset {asset!r} is not a positive integer; "
            f"versions in {Path(root) / asset}: {', '.join(map(str, versions))}."
        ) from None
    if wanted not in versions:
        raise NotFoundError(
            f"Version {wanted} of data asset {asset!r} does not exist in {Path(root) / asset}; "
            f"versions that exist: {', '.join(map(str, versions))} (omit the version to use the latest, "
            f"{versions[-1]})."
        )
    return wanted


def asset_dir(root: str | os.PathLike, asset: str, version: int | str | None = None) -> Path:
    """Folder of one version of ``asset`` (latest when ``version`` is None)."""
    return Path(root) / asset / str(resolve_version(root, asset, version))


def features_dir(root: str | os.PathLike, site: str, version: int | str | None = None) -> Path:
    return asset_dir(root, features_asset_name(site), version)


def species_dir(root: str | os.PathLike, site: str, version: int | str | None = None) -> Path:
    return asset_dir(root, species_asset_name(site), version)


def covariates_dir(root: str | os.PathLike, site: str, version: int | str | None = None) -> Path | None:
    """Folder of the site's covariate rasters (latest version when ``version`` is None); None when it has none."""
    if version is None and not list_versions(root, covariates_asset_name(site)):
        return None
    return asset_dir(root, covariates_asset_name(site), version)


def gold_file_in(folder: str | os.PathLike, species: str) -> Path:
    """The gold-data file of ``species`` in a species folder; NotFoundError lists the species that are there."""
    folder = Path(folder)
    path = folder / species_file_name(species)  # validates the name first (InvalidNameError)
    if path.is_file():
        return path
    # The same name in another Unicode normalization (macOS writes NFD): the file the user means.
    for candidate in folder.glob("*_golddata.csv") if folder.is_dir() else []:
        if unicodedata.normalize("NFC", candidate.name) == path.name and candidate.is_file():
            return candidate
    present = sorted(p.name for p in folder.glob("*_golddata.csv")) if folder.is_dir() else []
    where = f"folder {folder}" if folder.is_dir() else f"folder {folder}, which does not exist"
    raise NotFoundError(
        f"No gold data for species {species!r}: expected file {path.name} in {where}. "
        f"Gold files there: {', '.join(present) if present else 'none'}. "
        "Add the species' gold data to the species data asset, or remove it from config/candidate_species.csv."
    )


def species_file(root: str | os.PathLike, site: str, species: str, version: int | str | None = None) -> Path:
    """Gold-data file of ``species`` at ``site`` (latest species version when ``version`` is None)."""
    species_file_name(species)  # an unsafe name must fail before any path is built
    return gold_file_in(species_dir(root, site, version), species)


def truth_file(root: str | os.PathLike, site: str, species: str, version: int | str | None = None) -> Path:
    """True presence probabilities written by the generator (tests only)."""
    path = asset_dir(root, truth_asset_name(site), version) / f"{species_stem(species)}_truth.csv"
    if not path.is_file():
        raise NotFoundError(f"No truth file {path}: it exists only for data written by `biodiv generate-data`.")
    return path


def truth_surface_file(root: str | os.PathLike, site: str, species: str, version: int | str | None = None) -> Path:
    """The true presence-probability raster written by the generator (tests only)."""
    path = asset_dir(root, truth_asset_name(site), version) / f"{species_stem(species)}_probability.tif"
    if not path.is_file():
        raise NotFoundError(f"No truth surface {path}: generated data has one when it is written with rasters.")
    return path


def resolve_data_path(path: str | os.PathLike, version: int | str | None = None) -> Path:
    """A data input given as a file, a folder of tables, or an asset folder holding version sub-folders.

    Step inputs are usually one resolved version (AzureML mounts it); locally a caller may pass the
    asset folder itself, and then ``version`` (latest by default) picks the sub-folder.
    """
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise NotFoundError(
            f"Input {path} does not exist: check the path, or generate data with `biodiv generate-data`."
        )
    if version is None and _table_files(path):
        return path
    if list_versions(path.parent, path.name):
        return asset_dir(path.parent, path.name, version)
    if version is not None:
        raise NotFoundError(f"Version {version} requested but {path} holds no version folders (1, 2, ...).")
    return path


# --------------------------------------------------------------------------- reading tables


def _table_files(folder: Path) -> list[Path]:
    # Hidden and underscore files are writer bookkeeping (_SUCCESS, .crc), never data.
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES and not p.name.startswith((".", "_"))
    )


def table_files(path: str | os.PathLike) -> list[Path]:
    """The files ``read_table(path)`` would read, in order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NotFoundError(f"Table {path} does not exist: check the path.")
    files = _table_files(path)
    if not files:
        present = sorted(p.name for p in path.iterdir())[:10]
        raise NotFoundError(
            f"Folder {path} holds no .csv or .parquet files (found: {', '.join(present) if present else 'nothing'}). "
            "Put the table files directly in the folder."
        )
    return files


def _header(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8-sig") as handle:
            row = next(csv.reader(handle), None)
        if not row:
            raise DataContractError(f"File {path} has no header row: it must start with the column names.")
        return row
    return list(pq.ParquetFile(path).schema_arrow.names)


def _column_map(path: Path, names: list[str]) -> dict[str, str]:
    """lower-cased name -> name as written in the file; duplicates after lower-casing are an error."""
    mapping: dict[str, str] = {}
    for name in names:
        key = name.strip().lower()
        if key in mapping:
            raise DataContractError(
                f"File {path} has columns {mapping[key]!r} and {name!r}, which are the same name ignoring case: "
                "column names are case-insensitive, drop or rename one of them."
            )
        mapping[key] = name
    return mapping


def _read_csv(path: Path, include: list[str]) -> pa.Table:
    # read_csv (unlike the streaming reader) widens a column whose later blocks do not fit the type
    # inferred from the first one, e.g. an id column with a stray "abc" deep in the file becomes text,
    # which prep then reports by value instead of surfacing a parser error.
    try:
        return pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(include_columns=include, strings_can_be_null=True)
        )
    except pa.ArrowInvalid as exc:
        raise DataContractError(f"Could not parse CSV file {path}: {exc}. Fix the file's format.") from exc


def select_columns(path: Path, columns: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """(lower-cased names, names as written in the file) of ``columns`` (all when None) in one file.

    Raises the DataContractError ``read_arrow`` gives for an empty file, a bad header or a missing column.
    """
    if path.stat().st_size == 0:
        raise DataContractError(f"File {path} is empty (0 bytes): re-export it, or remove it from the data asset.")
    try:
        mapping = _column_map(path, _header(path))
    except UnicodeDecodeError as exc:
        raise DataContractError(f"File {path} is not UTF-8 text ({exc}): save it as UTF-8.") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataContractError(f"Could not read {path} as a parquet file: {exc}. Re-export the file.") from exc
    if columns is None:
        wanted = list(mapping)
    else:
        wanted = [c.strip().lower() for c in columns]
        missing = [c for c in wanted if c not in mapping]
        if missing:
            raise DataContractError(
                f"File {path} has no column {', '.join(repr(c) for c in missing)} (matched ignoring case); "
                f"its columns are: {', '.join(mapping.values())}. Add the column or fix its name."
            )
    return wanted, [mapping[c] for c in wanted]


def _read_one(path: Path, columns: Sequence[str] | None) -> pa.Table:
    wanted, include = select_columns(path, columns)
    if path.suffix.lower() == ".csv":
        table = _read_csv(path, include)
    else:
        try:
            table = pq.read_table(path, columns=include)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataContractError(f"Could not read parquet file {path}: {exc}. Re-export the file.") from exc
    table = table.rename_columns(wanted)
    if table.num_rows == 0:
        raise DataContractError(
            f"File {path} has column names but no rows: re-export it, or remove it from the data asset."
        )
    return table


def iter_file_batches(
    path: Path, columns: Sequence[str] | None = None, batch_rows: int = 65_536
) -> Iterator[pa.RecordBatch]:
    """Stream one csv/parquet file as record batches (names lower-cased as in ``read_arrow``), so a caller
    can filter a large table without holding all of it.

    The file-level checks of ``read_arrow`` (empty file, header, missing columns) raise the same
    DataContractError before the first batch; a file with a header but no rows yields nothing. A CSV is
    typed from its first block here, so a later block that does not fit raises ``pa.ArrowInvalid`` mid-way
    where ``read_arrow`` would widen the type: callers fall back to ``read_arrow`` on ``pa.ArrowInvalid``.
    """
    wanted, include = select_columns(path, columns)
    if path.suffix.lower() == ".csv":
        reader = pacsv.open_csv(
            path, convert_options=pacsv.ConvertOptions(include_columns=include, strings_can_be_null=True)
        )
    else:
        try:
            # pre_buffer=False: do not load a whole (possibly file-sized) row group's column chunks up front.
            reader = pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_rows, columns=include)
        except OSError as exc:
            raise DataContractError(f"Could not read parquet file {path}: {exc}. Re-export the file.") from exc
    for batch in reader:
        # Parquet may hand back columns in file order; select by written name so the order is `wanted`'s.
        yield pa.RecordBatch.from_arrays([batch.column(name) for name in include], names=wanted)


def read_arrow(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """Read a csv/parquet file, or every such file of a folder concatenated, as a pyarrow Table.

    Column names come back lower-cased and stripped; ``columns`` (any case) selects and orders them,
    and only those are parsed. All files of a folder must have the same columns.
    """
    files = table_files(path)
    tables = [_read_one(f, columns) for f in files]
    if len(tables) == 1:
        return tables[0]
    first = tables[0].column_names
    for f, t in zip(files[1:], tables[1:], strict=True):
        if set(t.column_names) != set(first):
            extra, missing = set(t.column_names) - set(first), set(first) - set(t.column_names)
            raise DataContractError(
                f"File {f} does not have the same columns as {files[0]} (extra: {sorted(extra)}, "
                f"missing: {sorted(missing)}): all files of a data asset folder must share their columns."
            )
    tables = [t.select(first) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataContractError(
            f"The files of {path} disagree on column types ({exc}): make each column hold the same kind of value "
            "(numbers or text) in every file."
        ) from exc


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a csv/parquet file or folder of files into pandas (see ``read_arrow``); strings become categories."""
    table = read_arrow(path, columns)
    return table.to_pandas(strings_to_categorical=True, split_blocks=True, self_destruct=True)
