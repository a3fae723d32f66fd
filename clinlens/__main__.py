"""``python -m clinlens``: the same entry point as the ``clinlens`` command and main.py."""

import sys

from clinlens.command import main

sys.exit(main())
