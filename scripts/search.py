#!/usr/bin/env python
"""Search a space of spiking topologies: `python scripts/search.py --space dense_additive`."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from snnas.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["search", *sys.argv[1:]]))
