"""`python -m tgms_tui [--read-only]`: the same control center as `tgms tui`."""

from tgms_tui.commands.tui import main

raise SystemExit(main())
