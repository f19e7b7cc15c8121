"""AzureML's batch driver, as far as a scoring script can tell, for running one in a fresh process.

    python tests/batch_driver.py --code SNAPSHOT --scoring-script azureml_steps/batch_scoring.py --model-dir DIR
        --input FOLDER --output predictions.csv [--mini-batch-size N] [--error-threshold T] [--max-retries R]
        [--log-dir DIR]

What the driver does (azure-ai-ml batch deployments, output_action append_row): imports the scoring script from
the code snapshot with only the script's folder on sys.path, sets AZUREML_MODEL_DIR, calls ``init()`` once, then
``run(files)`` on each mini-batch of ``--mini-batch-size`` input files (sorted paths); a mini-batch whose ``run``
raises is retried ``--max-retries`` times and then counts its files as failed; the rows returned are appended to
the output file (CSV, no header); more failed files than ``--error-threshold`` (``-1``: no limit) fails the job.
Prints a JSON summary (rows, failed_files, errors, where biodiv_core was imported from); exit 1 when the job fails.
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

DRIVER = Path(__file__).resolve()
SCRIPT = "azureml_steps/batch_scoring.py"
COLUMNS = ["gbifid", "probability", "presence"]
MESS_COLUMNS = ["mess", "extrapolated"]  # models saved with a covariate reference add these


def run_driver(
    code: Path, model_dir: Path, inputs: Path, output: Path, scoring_script: str = SCRIPT, **settings
) -> tuple[int, dict]:
    """The driver in a fresh process; no PYTHONPATH, so biodiv_core can come only from the snapshot (or the venv)."""
    options = [f"--{key.replace('_', '-')}={value}" for key, value in settings.items()]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(DRIVER), f"--code={code}", f"--scoring-script={scoring_script}",
         f"--model-dir={model_dir}", f"--input={inputs}", f"--output={output}", *options],
        capture_output=True, text=True, timeout=300, cwd=code, env=env,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr[-3000:]
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def read_predictions(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, header=None)  # append_row output: rows, no header
    frame.columns = (COLUMNS + MESS_COLUMNS)[: len(frame.columns)]
    return frame


def _log_error(log_dir: str | None, batch: list[str], exc: Exception) -> None:
    """``logs/user/error/<node ip>/process000.txt``: where the batch driver keeps a failed mini-batch's exception."""
    if log_dir:
        target = Path(log_dir) / "logs" / "user" / "error" / "10.0.0.4" / "process000.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "a") as log:
            log.write(f"mini batch {batch} failed: {type(exc).__name__}: {exc}\n")


def main() -> int:
    parser = argparse.ArgumentParser()
    for option in ("--code", "--scoring-script", "--model-dir", "--input", "--output"):
        parser.add_argument(option, required=True)
    parser.add_argument("--mini-batch-size", type=int, default=1)
    parser.add_argument("--error-threshold", type=int, default=0)
    parser.add_argument("--max-retries", type=int, default=0)
    parser.add_argument("--log-dir", default=None, help="write each mini-batch error where AzureML's driver does")
    args = parser.parse_args()

    script = Path(args.code) / args.scoring_script
    sys.path[0] = str(script.parent)  # instead of this file's folder
    os.environ["AZUREML_MODEL_DIR"] = args.model_dir
    spec = importlib.util.spec_from_file_location("entry_script", script)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    entry.init()

    files = sorted(str(p) for p in Path(args.input).rglob("*") if p.is_file())
    batches = [files[i : i + args.mini_batch_size] for i in range(0, len(files), args.mini_batch_size)]
    failed, errors, rows = 0, [], 0
    for batch in batches:
        for attempt in range(args.max_retries + 1):
            try:
                result = entry.run(batch)
                break
            except Exception as exc:  # what the driver logs to logs/user/error, per attempt
                if attempt == args.max_retries:
                    failed += len(batch)
                    errors.append(f"{type(exc).__name__}: {exc}")
                    _log_error(args.log_dir, batch, exc)
                    result = None
        if result is not None:
            result.to_csv(args.output, mode="a", header=False, index=False)
            rows += len(result)
        if 0 <= args.error_threshold < failed:
            break
    job_failed = 0 <= args.error_threshold < failed
    summary = {
        "rows": rows,
        "files": len(files),
        "failed_files": failed,
        "errors": errors,
        "status": "Failed" if job_failed else "Completed",
        "biodiv_core": sys.modules["biodiv_core"].__file__,
    }
    print(json.dumps(summary))
    return 1 if job_failed else 0


if __name__ == "__main__":
    sys.exit(main())
