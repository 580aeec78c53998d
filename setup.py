"""Build script. The pure-Python package is described in pyproject.toml; this file exists so that the
optional CUDA extension (csrc/, built as interir._C) can be added with torch's cpp_extension."""
from setuptools import setup

setup()
