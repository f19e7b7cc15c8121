"""``python -m biodiv_dagster.cli``: the `biodiv` console script (what a warm fork of it runs)."""

import sys

from biodiv_dagster.cli import main

sys.exit(main())
