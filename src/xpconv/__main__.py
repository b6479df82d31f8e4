"""``python -m xpconv check | bench | demo``: see :mod:`xpconv.tools.cli`."""

import sys

from xpconv.tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
