"""``python -m capacity``: see capacity.cli."""

from capacity.cli import main

raise SystemExit(main())
