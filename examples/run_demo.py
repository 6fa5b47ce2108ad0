"""`make demo`: the example pipeline end to end on the embedded defaults."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).parent / "core" / "walkthrough.py"), run_name="__main__")
    sys.exit(0)
