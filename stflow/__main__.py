"""``python -m stflow``: the workflow's rules call the library this way (no console script
needed in the rule's environment, only the repository on PYTHONPATH)."""

import sys

from stflow.cli import main

sys.exit(main())
