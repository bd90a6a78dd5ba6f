"""Run a benchmark script as it was at an earlier git revision (its own code, from a
temporary worktree), so that one invocation can print the figures before and after."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_at(rev: str, script: str, args: list[str]) -> str:
    """Standard output of ``bench/<script> <args>`` at ``rev`` (this checkout's Python)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
                       check=True, capture_output=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            return subprocess.run([sys.executable, str(tree / "bench" / script), *args],
                                  check=True, capture_output=True, text=True, env=env,
                                  cwd=tree).stdout
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(tree)], capture_output=True)
