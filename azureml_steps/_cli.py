"""What every step entry point shares: argparse basics, logging with the correlation id, exit codes.

Exit codes: 0 success; 2 a `BiodivError` (bad data/config/names: the message, no traceback, goes to
stderr, to the Pipes log and to ``$BIODIV_STEP_ERROR_FILE`` so the launcher can put it in the
Dagster failure); 1 anything else (a bug: the traceback is printed).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from azureml_steps import reporting
from azureml_steps._orphan import exit_with_parent
from biodiv_core.atomic import require_complete
from biodiv_core.step_args import CORRELATION_ENV, StepArgs
from biodiv_core.threads import native_thread_limit
from biodiv_core.training.progress import PROGRESS_LOGGER

logger = logging.getLogger("azureml_steps")

# Set by the launcher: where a failing step writes {"type", "message"} for the Dagster failure.
ERROR_FILE_ENV = "BIODIV_STEP_ERROR_FILE"
LOG_LEVEL_ENV = "BIODIV_STEP_LOG_LEVEL"


def resolve_correlation_id(value: str | None) -> str:
    return value or os.environ.get(CORRELATION_ENV) or f"local-{uuid.uuid4().hex[:12]}"


class _CorrelationFilter(logging.Filter):
    def __init__(self, correlation_id: str) -> None:
        super().__init__()
        self.correlation_id = correlation_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = self.correlation_id
        return True


class _QuietFilter(logging.Filter):
    """Lines at ``level`` or above, and progress lines whatever the level (a quiet terminal still shows them)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level if isinstance(level, int) else logging.INFO

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or record.name == PROGRESS_LOGGER


class _StepFormatter(logging.Formatter):
    """Time, level, correlation id, logger: except progress lines on a quiet terminal, which read as a list."""

    def __init__(self, short_progress: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s [correlation_id=%(correlation_id)s] %(name)s: %(message)s")
        self._short_progress = short_progress

    def format(self, record: logging.LogRecord) -> str:
        if self._short_progress and record.name == PROGRESS_LOGGER:
            return "  " + record.getMessage()
        return super().format(record)


def configure_logging(correlation_id: str, level: int = logging.INFO) -> None:
    """Log lines on stderr, each carrying the correlation id (also for biodiv_core's loggers).

    ``BIODIV_STEP_LOG_LEVEL`` (e.g. WARNING) quiets stderr only, but for progress lines: lines forwarded to
    Dagster keep INFO.
    """
    handler = logging.StreamHandler(sys.stderr)
    quiet = _QuietFilter(logging.getLevelName(os.environ.get(LOG_LEVEL_ENV, "INFO").upper()))
    handler.addFilter(quiet)
    handler.addFilter(_CorrelationFilter(correlation_id))
    handler.setFormatter(_StepFormatter(short_progress=quiet.level > logging.INFO))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_biodiv_step", False)]:
        root.removeHandler(old)
    handler._biodiv_step = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter (MLflow, alembic, hyperopt) stays at WARNING.
    for noisy in ("mlflow", "alembic", "hyperopt", "urllib3", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


QUIET_ERRORS_ENV = "BIODIV_STEP_QUIET_ERRORS"


def _errors_quiet() -> bool:
    """``BIODIV_STEP_QUIET_ERRORS=1`` (what `biodiv run`/`main` set without --verbose): the launching CLI prints the
    failure's one line itself (from the error file), so the step prints neither the line nor a traceback."""
    return os.environ.get(QUIET_ERRORS_ENV, "").strip() == "1"


# A full or read-only disk fails the same way on every retry: the user must act, so it is reported like bad data.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM}


def _user_error(exc: BaseException) -> str | None:
    """The one-line message of an error the user must fix (bad data/config, a full or read-only disk), else None."""
    from biodiv_core.errors import BiodivError

    if isinstance(exc, BiodivError):
        return str(exc)
    if storage_error(exc):
        where = f" {exc.filename}" if exc.filename else ""
        return (
            f"cannot write{where} ({exc.strerror or os.strerror(exc.errno)}): free space there, or point BIODIV_HOME "
            "(or BIODIV_STORAGE_ROOT) at a writable folder with room."
        )
    return None


def storage_error(exc: BaseException) -> bool:
    """A full or read-only disk (or no permission to write): the launcher then retracts the run's outputs."""
    return isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS


def _write_error_file(exc: BaseException, user_error: bool, message: str | None = None) -> None:
    target = os.environ.get(ERROR_FILE_ENV)
    if not target:
        return
    payload = {
        "type": type(exc).__name__,
        "message": message or str(exc),
        "user_error": user_error,
        "storage_error": storage_error(exc),
    }
    try:
        Path(target).write_text(json.dumps(payload))
    except OSError:
        pass  # the message is on stderr anyway


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM (main thread only: steps also run in-process in tests); return the old one."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _require_upstream(args: StepArgs) -> None:
    """Refuse an upstream output folder its step never finished (written in place without its marker)."""
    locations = args.inputs()
    for field, asset in args.upstream_assets().items():
        if locations.get(field):
            require_complete(locations[field], asset)


def run_step(args: StepArgs, main: Callable[[StepArgs], Any]) -> int:
    """Call ``main(args)`` inside the reporting session and turn errors into exit codes."""
    # SIGTERM (a cancelled AzureML job, `kill`, a container stop) unwinds like Ctrl-C: MLflow runs end FAILED
    # and half-written output folders are removed, instead of the process vanishing mid-write.
    previous = _on_sigterm(_terminated)
    exit_with_parent()  # after the handler: a launcher killed with SIGKILL takes its step down the same way
    args = args.replace(correlation_id=resolve_correlation_id(args.correlation_id))
    configure_logging(args.correlation_id)
    logger.info("step %s starting (%s)", args.step, args.partition)
    code = 0
    threads = getattr(args, "num_threads", None)
    with reporting.session(), native_thread_limit(threads) if threads else contextlib.nullcontext():
        try:
            _require_upstream(args)
            main(args)
        except Exception as exc:
            user_error = _user_error(exc)
            if user_error is not None:
                code = 2
                logger.debug("step %s failed", args.step, exc_info=True)
                if not _errors_quiet():
                    print(f"error: {user_error}", file=sys.stderr, flush=True)
                reporting.log_error(f"step {args.step} failed: {user_error}")
                _write_error_file(exc, user_error=True, message=user_error)
            else:
                code = 1
                if not _errors_quiet():
                    traceback.print_exc()
                # The traceback goes to the orchestrator's log either way (the Dagster event log, the UI).
                reporting.log_error(
                    f"step {args.step} failed with an unexpected {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
                )
                _write_error_file(exc, user_error=False)
        finally:
            if previous is not None:
                _on_sigterm(previous)
    if code == 0:
        logger.info("step %s done", args.step)
    return code


def cli(args_type: type[StepArgs], main: Callable[[StepArgs], Any], argv: Sequence[str] | None = None) -> int:
    """``python -m azureml_steps.<step> --option value ...``: argv -> the step's dataclass -> ``main``.

    Bad argument values (a check on a field) exit 2 with one line, like bad data.
    """
    from biodiv_core.errors import BiodivError

    try:
        args = args_type.from_argv(sys.argv[1:] if argv is None else argv)
    except BiodivError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        _write_error_file(exc, user_error=True)
        return 2
    return run_step(args, main)
