"""``python -m gim_plugins.training`` (what ``torchrun -m gim_plugins.training`` runs): see
:mod:`gim_plugins.training.cli`."""

import sys

from gim_plugins.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
