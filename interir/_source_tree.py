"""Running from a source checkout that was never installed (`python -m interir` in the repository, or a GPU
machine given only the working tree): the Triton kernels live in the repository's top-level kernels/ folder,
which pyproject.toml maps to the subpackage interir.kernels at install time. This finder makes that same
mapping when no installation provides it, so the `triton` backend is there either way."""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from pathlib import Path

KERNELS = "interir.kernels"


class SourceTreeKernels(importlib.abc.MetaPathFinder):
    """Finds interir.kernels (and nothing else) in `folder`."""

    def __init__(self, folder: Path):
        self.folder = folder

    def find_spec(self, name, path=None, target=None):
        if name != KERNELS:
            return None
        return importlib.util.spec_from_file_location(name, self.folder / "__init__.py",
                                                      submodule_search_locations=[str(self.folder)])


def install_if_needed() -> None:
    """Add the finder when the repository's kernels/ folder sits beside this package and no installation
    provides interir.kernels (an installed package has no kernels/ beside it: one file check, nothing else)."""
    folder = Path(__file__).resolve().parent.parent / "kernels"
    if not (folder / "__init__.py").is_file() or any(isinstance(f, SourceTreeKernels) for f in sys.meta_path):
        return
    if importlib.util.find_spec(KERNELS) is None:
        sys.meta_path.append(SourceTreeKernels(folder))
