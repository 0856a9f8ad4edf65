"""``python -m vce_core.evaluate``: the low-dose evaluation report (see :mod:`vce_core.evaluate.lowdose`)."""

import sys

from .lowdose import main

sys.exit(main())
