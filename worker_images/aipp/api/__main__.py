"""`python -m aipp.api`: the task API (aipp.api.server)."""

import sys

from aipp.api.server import main

sys.exit(main())
