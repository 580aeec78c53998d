"""A source checkout that was never installed (a GPU machine given only the working tree) still has every
backend: interir.kernels is found in the repository's kernels/ folder."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import sys
# Forget the installation: no editable-install finder, and the copy first on the path.
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
sys.path.insert(0, sys.argv[1])
import importlib
import interir
from interir.ops import backends
kernels = importlib.import_module("interir.kernels")
print(interir.__file__)
print(kernels.__file__)
print(backends.load("triton"))
"""


def test_the_triton_kernels_load_from_an_uninstalled_checkout(tmp_path):
    for folder in ("interir", "kernels"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path)], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    package, kernels, reason = proc.stdout.splitlines()[-3:]
    assert Path(package).parent == tmp_path / "interir"
    assert Path(kernels).parent == tmp_path / "kernels"
    assert reason == "None"
