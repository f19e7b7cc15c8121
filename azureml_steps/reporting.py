"""Report step outputs to Dagster through Pipes, or to the log when no orchestrator launched us.

A step runs the same way on a laptop, under Dagster's subprocess client and inside an AzureML
job: only the *channel* differs, and `_open_channel()` is the one place that picks it.
Metadata values are wrapped in Pipes' typed form (``{"raw_value": ..., "type": ...}``) so the
Dagster UI renders JSON, markdown tables, paths and links properly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from biodiv_core.atomic import COMPLETE_MARKER, COMPLETE_MARKER_KEY

logger = logging.getLogger("azureml_steps")

# Prefix of the one-line JSON record a step prints per output when no orchestrator listens.
REPORT_PREFIX = "biodiv-report "

_channel: _Channel | None = None


class _Channel:
    """Where reports go: the log (stdout line) by default."""

    name = "log"

    def report(self, asset_key: str, metadata: Mapping[str, Any]) -> None:
        plain = {key: value.get("raw_value") if _is_typed(value) else value for key, value in metadata.items()}
        record = {"asset_key": asset_key, "metadata": plain}
        print(REPORT_PREFIX + json.dumps(record, default=str), flush=True)
        logger.info("materialized %s at %s", asset_key, plain.get("path"))

    def log(self, level: int, message: str) -> None:
        pass

    def close(self, exc: BaseException | None = None) -> None:
        pass


class _PipesChannel(_Channel):
    name = "pipes"

    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes

    def report(self, asset_key: str, metadata: Mapping[str, Any]) -> None:
        self._pipes.report_asset_materialization(asset_key=asset_key, metadata=dict(metadata))
        logger.info("reported %s to Dagster", asset_key)

    def log(self, level: int, message: str) -> None:
        # Forwarded lines show in the Dagster run's event log, next to the step that wrote them.
        if level >= logging.ERROR:
            self._pipes.log.error(message)
        elif level >= logging.WARNING:
            self._pipes.log.warning(message)
        else:
            self._pipes.log.info(message)

    def close(self, exc: BaseException | None = None) -> None:
        self._pipes.__exit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)


def _open_channel() -> _Channel:
    """Pick the reporting channel from the environment (the single place to add channels).

    - Dagster Pipes params in the environment (``DAGSTER_PIPES_CONTEXT``): the Pipes context loader
      and message writer the launcher chose: temp files locally (subprocess client), a Blob container
      in an AzureML job (`azureml_steps.pipes_blob` reads which from the bootstrap params).
    - otherwise: log lines and a ``biodiv-report {json}`` line per output on stdout.
    """
    from dagster_pipes import PipesEnvVarParamsLoader

    if PipesEnvVarParamsLoader().is_dagster_pipes_process():
        from dagster_pipes import open_dagster_pipes

        from azureml_steps.pipes_blob import pipes_channel_kwargs

        return _PipesChannel(open_dagster_pipes(**pipes_channel_kwargs()))
    return _Channel()


@contextlib.contextmanager
def session() -> Iterator[_Channel]:
    """Open the reporting channel for the life of a step; close it (flushing Pipes messages) at the end."""
    global _channel
    channel = _open_channel()
    _channel = channel
    handler = _ForwardHandler(channel)
    logging.getLogger().addHandler(handler)
    try:
        yield channel
    finally:
        logging.getLogger().removeHandler(handler)
        _channel = None
        channel.close(sys.exc_info()[1])


def report(asset_key: str, metadata: Mapping[str, Any]) -> None:
    """Report one materialized output; works inside or outside `session()`."""
    if _channel is not None:
        _channel.report(asset_key, metadata)
    else:
        _Channel().report(asset_key, metadata)


def log_error(message: str) -> None:
    """Send an error line to the orchestrator (Pipes log) when there is one."""
    if _channel is not None:
        _channel.log(logging.ERROR, message)


class _ForwardHandler(logging.Handler):
    """Forward our own INFO+ log lines (steps and biodiv_core) to the orchestrator's log."""

    def __init__(self, channel: _Channel) -> None:
        super().__init__(logging.INFO)
        self._channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith(("azureml_steps", "biodiv_core")) or record.levelno >= logging.ERROR:
            return  # errors are sent once, by the step runner, with the clean message
        try:
            self._channel.log(record.levelno, record.getMessage())
        except Exception:  # a closed or broken channel must never break the step itself
            pass


# --- typed metadata values (Pipes wire format) ---------------------------------------------------


def _is_typed(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"raw_value", "type"}


def text(value: str) -> dict[str, Any]:
    return {"raw_value": str(value), "type": "text"}


def path(value: str | os.PathLike) -> dict[str, Any]:
    return {"raw_value": os.path.abspath(value) if "://" not in str(value) else str(value), "type": "path"}


def url(value: str) -> dict[str, Any]:
    return {"raw_value": str(value), "type": "url"}


def md(value: str) -> dict[str, Any]:
    return {"raw_value": value, "type": "md"}


def as_json(value: Any) -> dict[str, Any]:
    # Round-trip so numpy scalars and paths become plain JSON before they reach the wire.
    return {"raw_value": json.loads(json.dumps(value, default=_json_default)), "type": "json"}


def integer(value: Any) -> dict[str, Any]:
    return {"raw_value": int(value), "type": "int"}


def boolean(value: Any) -> dict[str, Any]:
    return {"raw_value": bool(value), "type": "bool"}


SIGNIFICANT_DIGITS = 4


def significant(value: Any, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (0.814793... -> 0.8148): what a reader compares."""
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else value


def number(value: Any) -> dict[str, Any]:
    """A float entry, rounded to 4 significant digits (the files in the output folder keep full precision)."""
    value = significant(value)
    return {"raw_value": value if math.isfinite(value) else None, "type": "float" if math.isfinite(value) else "null"}


def common(output: str | os.PathLike, args: Any) -> dict[str, Any]:
    """Keys every output reports: its folder, the run's correlation id (``args``: the step's StepArgs) and, for a
    folder written in place, its completion marker (`biodiv_core.atomic`; the launcher requires it then)."""
    keys = {"path": path(output), "correlation_id": text(args.correlation_id or "")}
    marker = Path(output) / COMPLETE_MARKER
    if marker.is_file():
        keys[COMPLETE_MARKER_KEY] = path(marker)
    return keys


def mlflow_run(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The step's MLflow run and experiment ids (the orchestrator links the run in the MLflow UI from them)."""
    keys = ("mlflow_run_id", "mlflow_experiment_id")
    return {key: text(summary[key]) for key in keys if summary.get(key)}


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub-flavoured markdown table; floats to 4 significant digits."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return str(significant(value))
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(col, "")) for col in columns) + " |" for row in rows]
    return "\n".join(lines)
