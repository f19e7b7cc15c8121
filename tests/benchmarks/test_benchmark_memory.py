"""benchmarks/_util.run_measured: a child's peak memory is its own, whatever the parent holds.

On Linux a child's ru_maxrss (wait4, RUSAGE_CHILDREN) starts from the parent's RSS at fork, and exec() does not
reset it, so a benchmark that first built a big data set in-process saw every child at least that big.
"""

import importlib.util
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads /proc/<pid>/status (Linux)")


def load_util():
    spec = importlib.util.spec_from_file_location("benchmarks_util", REPO / "benchmarks" / "_util.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHILD = """
import sys
import _memory_probe
_memory_probe.mark("imports")
block = b"\\x01" * (int(sys.argv[1]) * 2**20)  # bytes(n) * k writes every page: resident, not just reserved
print(len(block))
"""


def test_child_peak_is_its_own_not_the_parents():
    util = load_util()
    before = util.own_rss_mib()
    ballast = b"\x01" * (500 * MIB)  # written, so resident
    assert util.own_rss_mib() - before > 450, "the parent's 500 MB ballast should be resident"

    result = util.run_measured(["-c", CHILD, "10"])
    assert result["returncode"] == 0, result["stderr"]
    assert result["stdout"].strip() == str(10 * MIB)
    added = util.added_peak_mib(result, "imports")
    assert 5 <= added < 60, result["memory"]
    # The bare interpreter, not the parent: well under the 500 MB ballast.
    assert result["memory"]["peak_rss_mib"] < 200, result["memory"]
    assert result["memory"]["start_rss_mib"] < 100, result["memory"]

    # The old way (wait4's ru_maxrss, as run_with_rusage reported it) counts the parent's ballast.
    assert result["wait4_max_rss_mib"] >= 450, result
    assert len(ballast) == 500 * MIB


def test_module_and_script_targets_run_as_python_would(tmp_path):
    util = load_util()
    script = tmp_path / "target.py"
    script.write_text("import sys\nprint(__name__, sys.argv[1:], sys.path[0])\nraise SystemExit(3)\n")
    result = util.run_measured([str(script), "a", "b"])
    assert result["returncode"] == 3
    assert result["stdout"].split() == ["__main__", "['a',", "'b']", str(tmp_path)]
    assert result["peak_rss_mib"] > 0

    result = util.run_measured(["-m", "json.tool", "--help"], cwd=str(tmp_path))
    assert result["returncode"] == 0 and "json.tool" in result["stdout"]
    assert result["memory"]["target"] == ["-m", "json.tool"]


def test_no_report_when_the_child_skips_exit_handlers():
    util = load_util()
    result = util.run_measured(["-c", "import os; os._exit(0)"])
    assert result["returncode"] == 0 and result["memory"] is None
    with pytest.raises(RuntimeError, match="no memory report"):
        util.added_peak_mib(result)


PARENT_OF_TREE = """
import subprocess, sys
ballast = b"\\x01" * (200 * 2**20)  # the grandchild must not count it either
code = "import os; block = b'\\\\x01' * (10 * 2**20); print(os.environ.get('OTHER_SITECUSTOMIZE'))"
print(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip())
"""


def test_tree_reports_every_python_process_and_keeps_an_existing_sitecustomize(tmp_path):
    util = load_util()
    other = tmp_path / "other_site"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nos.environ['OTHER_SITECUSTOMIZE'] = 'ran'\n")
    env = {**os.environ, "PYTHONPATH": str(other)}
    result = util.run_measured(["-c", PARENT_OF_TREE], env=env, tree=True)
    assert result["returncode"] == 0, result["stderr"]
    assert result["stdout"].strip() == "ran"  # the other sitecustomize still ran, in the grandchild
    assert len(result["tree"]) == 2, result["tree"]
    top = next(r for r in result["tree"] if r["pid"] == result["memory"]["pid"])
    child = next(r for r in result["tree"] if r is not top)
    assert top["peak_rss_mib"] - top["start_rss_mib"] > 190
    assert child["argv"][0] == "-c"
    assert 5 <= child["peak_rss_mib"] - child["start_rss_mib"] < 60, child
    assert child["children_ru_maxrss_mib"] == 0
    assert child["self_ru_maxrss_mib"] > 190  # what ru_maxrss would have said: the parent's ballast
