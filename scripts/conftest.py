"""The study scripts import their shared report helpers as a sibling module (they run as
`bin/streamad python scripts/<name>.py`); collecting their doctests needs the same path."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
