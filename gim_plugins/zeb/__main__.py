"""``python -m gim_plugins.zeb``: see :mod:`gim_plugins.zeb.cli`."""

import sys

from gim_plugins.zeb.cli import main

if __name__ == "__main__":
    sys.exit(main())
