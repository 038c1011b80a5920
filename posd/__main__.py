# SPDX-License-Identifier: MIT
"""`python -m posd`: the command line (posd.cli)."""

from posd.cli import main

raise SystemExit(main())
