"""``python -m examples.demo``: run the demo (see :mod:`examples.demo.launcher`)."""

import sys

from examples.demo.launcher import main

sys.exit(main())
