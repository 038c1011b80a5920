# SPDX-License-Identifier: MIT
from posd.cli import main

raise SystemExit(main())
