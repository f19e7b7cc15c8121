"""Tiny jobs for the run launcher tests: loaded by the run worker from this module (its code origin)."""

import os
import time
from pathlib import Path

import dagster as dg


@dg.op(config_schema={"marker": str, "sleep": float})
def note_pid(context) -> None:
    Path(context.op_config["marker"]).write_text(f"{os.getpid()}|{os.getppid()}")
    time.sleep(context.op_config["sleep"])


@dg.job
def note_pid_job():
    note_pid()
