"""``python -m adapters.driving.cli``: what the ``rma`` script runs."""

import sys

from adapters.driving.cli import main

sys.exit(main())
