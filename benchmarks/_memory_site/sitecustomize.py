"""Put on PYTHONPATH by ``_util.run_measured(..., tree=True)``: every Python process of the measured tree reports
its own peak memory at exit into $BIODIV_BENCH_MEMORY_DIR (see ../_memory_probe.py), then the sitecustomize
that would have run without this folder first on the path runs (e.g. backfill.py's threading shim)."""

import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))

if os.environ.get("BIODIV_BENCH_MEMORY_DIR"):
    _spec = importlib.util.spec_from_file_location("_memory_probe", os.path.join(_HERE, "..", "_memory_probe.py"))
    _probe = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_probe)
    # A probed top process already has its own `_memory_probe` (as __main__); this copy only reports the tree.
    _probe.install_tree_report(os.environ["BIODIV_BENCH_MEMORY_DIR"])

_rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
_next = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _next is not None and _next.origin and os.path.dirname(os.path.abspath(_next.origin)) != _HERE:
    _module = importlib.util.module_from_spec(_next)
    _next.loader.exec_module(_module)
