"""``python -m benchmarks``: every benchmark against one private PostgreSQL (see suite.py)."""

import sys
from pathlib import Path

# The scripts import their helpers as top-level modules (_common, report, ...), as when run directly.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import suite

sys.exit(suite.main())
