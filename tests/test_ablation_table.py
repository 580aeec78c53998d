"""scripts/ablation_table.py (docs/ablation.md): the study's tables from the results.json beside each config, and
docs/ablation.md's rows held to what it prints."""
import json
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
table = load_script("ablation_table")


def _run(folder: Path, name: str, gains: dict[str, float] | None, steps: int = 5000) -> None:
    """A config, and (when `gains` is given) its results.json: each set's input at 10 dB, output at 10 + gain."""
    (folder / f"{name}.yml").write_text(f"name: ablation_{name}\ntrain: {{total_iter: {steps}}}\n")
    if gains is not None:
        rows = [{"set": s, "psnr_input": 10.0, "psnr": 10.0 + g, "ssim_input": 0.3, "ssim": 0.5}
                for s, g in gains.items()]
        (folder / f"{name}.results.json").write_text(json.dumps({"rows": rows}))


def _gains(average: float, h: float = 0.0) -> dict[str, float]:
    return {s: {"average": average, "H": h}.get(s, 1.0) for s in table.SETS}


def test_rows_claims_and_spreads_from_the_results(tmp_path):
    _run(tmp_path, "interir_s0", _gains(3.0, h=2.0))
    _run(tmp_path, "interir_s1", _gains(3.5, h=4.0))
    _run(tmp_path, "baseline_s0", _gains(2.5, h=1.0), steps=1234)
    _run(tmp_path, "no_explainable", None)
    out = table.tables(tmp_path)
    assert ("| interir_s1 | 5,000 | 13.50 / 0.5000 | +3.50 | +1.00 | +1.00 | +1.00 | +1.00 | +4.00 | +1.00 | +1.00 |"
            in out)
    assert "| baseline_s0 | 1,234 | 12.50 / 0.5000 | +2.50 |" in out
    assert "Not finished (no results.json yet): `no_explainable`." in out
    # the mean of InterIR's two seeds (3.25; H 3.0) against the baseline's one (2.5; H 1.0)
    assert ("| all three changes | +1.11 | +0.75 | +0.00 | +0.00 | +0.00 | +0.00 | +2.00 | +0.00 | +0.00 "
            "| interir 2, baseline 1 |") in out
    assert "| explainable convolution | +0.72 | (no_explainable: not finished) |" in out
    assert "| interir | 2 | 0.50 | 2.00 (H) |" in out and "| baseline |" not in out.split("| design |")[1]


def test_signs_use_a_true_minus_and_no_negative_zero():
    assert table.signed(-0.204) == "−0.20" and table.signed(0.0049) == "+0.00" and table.signed(-0.004) == "+0.00"
    assert table.design_of("interir_s1") == "interir" and table.design_of("no_explainable") == "no_explainable"


def test_a_damaged_results_file_and_an_empty_folder_are_one_line_errors(tmp_path, capsys):
    assert table.main([str(tmp_path)]) == 2
    assert "no experiment configs" in capsys.readouterr().err
    _run(tmp_path, "interir_s0", _gains(3.0))
    (tmp_path / "interir_s0.results.json").write_text('{"rows": [{"set": "H"}]}')
    assert table.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not an `interir eval` results.json" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        table.main([str(tmp_path / "missing")])


def test_the_docs_rows_are_what_the_results_say():
    """Every finished run's row in docs/ablation.md is the row this script prints from its results.json."""
    docs = (ROOT / "docs" / "ablation.md").read_text(encoding="utf-8")
    runs = table.tables(ROOT / "configs" / "ablation").split("\n\n")[0].splitlines()[2:]  # the first table's rows
    assert len(runs) >= 7
    missing = [line for line in runs if line not in docs]
    assert not missing, missing
