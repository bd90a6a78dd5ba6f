"""The kernel tests once more with Numba's JIT off: the Python path must agree too."""

import os
import subprocess
import sys
from pathlib import Path


def test_kernels_without_jit():
    here = Path(__file__).parent
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         str(here / "test_threshold_kernels.py"), str(here / "test_windows.py")],
        env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
