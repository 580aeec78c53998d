"""The repository explains itself: the walk-throughs of docs/ run as written, and the code cites only docs/
or the paper."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.mark.parametrize("index", range(len(_python_blocks(DOCS / "ops.md"))))
def test_ops_page_walk_throughs_run(index, tmp_path):
    """Each block of docs/ops.md (adding an op, a backend, a model) in a fresh process, as a reader would."""
    block = _python_blocks(DOCS / "ops.md")[index]
    script = tmp_path / "walk_through.py"
    script.write_text(block, encoding="utf-8")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_the_ops_page_has_its_three_walk_throughs():
    assert len(_python_blocks(DOCS / "ops.md")) == 3


def _sources():
    for pattern in ("interir/**/*.py", "kernels/**/*.py", "bench/**/*.py", "tests/**/*.py", "scripts/*",
                    "csrc/*", "configs/*.yml", "setup.py", ".ci/*", "README.md", "docs/*.md"):
        yield from (p for p in ROOT.glob(pattern) if p.is_file())


def test_code_cites_only_the_repositorys_own_documents():
    """Comments and docs point at docs/ (or the paper), never at documents the repository does not have."""
    outside = re.compile(r"SPEC(\.md)?\s*§|DESIGN\.md|HOUSE\.md|REFERENCES\.md|\bSPEC\.md")
    this = Path(__file__).resolve()
    hits = [f"{p.relative_to(ROOT)}:{n}" for p in _sources() if p.resolve() != this
            for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if outside.search(line)]
    assert not hits, hits
    for p in _sources():
        for ref in re.findall(r"docs/[\w./-]+\.md", p.read_text(encoding="utf-8", errors="replace")):
            assert (ROOT / ref).is_file(), f"{p.relative_to(ROOT)} cites {ref}, which does not exist"
