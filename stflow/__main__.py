"""``python -m stflow``: the command line without the console script (the workflow's rules
use workflow/run_stflow.py, which needs no installed package and no PYTHONPATH)."""

import sys

from stflow.cli import main

sys.exit(main())
