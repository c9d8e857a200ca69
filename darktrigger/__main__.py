"""``python -m darktrigger``: the ``darktrigger`` command."""

import sys

from darktrigger.daq.cli import main

sys.exit(main())
