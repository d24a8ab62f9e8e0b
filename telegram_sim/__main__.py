"""`python -m telegram_sim`: same as `tgms sim`."""

import sys

from telegram_sim.cli import main

sys.exit(main())
