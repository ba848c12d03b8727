"""``python -m gim_plugins`` is the ``gim`` command."""

from gim_plugins.cli import main

raise SystemExit(main())
