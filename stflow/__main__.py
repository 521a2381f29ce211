"""``python -m stflow``: the command line without the console script (the workflow's rules
run workflow/scripts/, which need no installed package and no PYTHONPATH)."""

import sys

from stflow.cli import main

sys.exit(main())
