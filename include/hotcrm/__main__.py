"""Entry point of ``python -m hotcrm``."""

import sys

from hotcrm.cli import main

sys.exit(main())
