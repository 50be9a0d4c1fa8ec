"""``python -m cloudfree.cli``."""

import sys

from cloudfree.cli import main

sys.exit(main())
