"""``python -m dfer`` runs the command line (used by the Snakemake rules)."""

import sys

from dfer.cli import main

sys.exit(main())
