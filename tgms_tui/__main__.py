"""`python -m tgms_tui [--read-only]`: the same control center as `tgms tui`."""

from tgms_tui.tui_command import main

raise SystemExit(main())
