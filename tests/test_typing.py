# SPDX-License-Identifier: MIT
"""`mypy --strict` over posd/ (pyproject.toml [tool.mypy]); e.g. a bare int where Fen is due."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_mypy_strict_is_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
