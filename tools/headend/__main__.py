"""`python -m tools.headend ...`: see tools/headend/cli.py."""

import sys

from tools.headend.cli import main

sys.exit(main())
