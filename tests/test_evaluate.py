"""`interir eval`: the Table-1 rows of a checkpoint on a synth set, a paired folder, and error paths."""
import csv
import json

import pytest
import torch

import interir
from interir.checkpoint import save_weights
from interir.cli import main
from interir.data.datasets import load_synthetic_testset
from interir.data.synth import build_testset
from interir.evaluate import evaluate_sets
from interir.metrics import psnr
from tests.test_train import _photos

COMBOS = ["H+R+N", "H+R", "H+N", "R+N", "H", "R", "N"]


@pytest.fixture(scope="module")
def testset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    build_testset(_photos(root / "clean", 2, 40), root / "set", seed=3, progress=False)
    return root


def test_eval_cli_writes_table_one(testset, tmp_path, capsys):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "results"
    assert main(["eval", str(ckpt), "--data", str(testset / "set"), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["set"] for r in rows] == COMBOS + ["average"]
    assert all(r["images"] == "2" for r in rows[:-1]) and rows[-1]["images"] == "14"
    saved = json.loads((out / "results.json").read_text())
    assert saved["model"]["preset"] == "tiny" and saved["colour_space"] == "RGB"
    # the input columns are the metric of the degraded files themselves, averaged over the set
    sets = load_synthetic_testset(testset / "set")
    item = sets["N"][0]
    expected = (psnr(item["input"], item["target"]) + psnr(sets["N"][1]["input"], sets["N"][1]["target"])) / 2
    assert float(rows[COMBOS.index("N")]["psnr_input"]) == pytest.approx(expected, abs=1e-9)
    avg = sum(float(r["psnr"]) for r in rows[:-1]) / 7
    assert float(rows[-1]["psnr"]) == pytest.approx(avg, abs=1e-9)
    assert "| average |" in printed


def test_evaluate_sets_perfect_model_gives_infinite_psnr(testset):
    class Oracle(torch.nn.Module):
        """Returns the clean image: PSNR must be inf and SSIM 1 for every set."""

        def __init__(self, sets):
            super().__init__()
            self.lookup = {}
            for ds in sets.values():
                for i in range(len(ds)):
                    it = ds[i]
                    self.lookup[it["input"].sum().item()] = it["target"]

        def forward(self, x):
            return self.lookup[x[0].sum().item()][None]

    sets = load_synthetic_testset(testset / "set")
    rows = evaluate_sets(Oracle(sets), sets, progress=False)
    assert all(r["psnr"] == float("inf") and r["ssim"] == pytest.approx(1.0) for r in rows)


def test_eval_synthetic_and_paired_folder(testset, tmp_path):
    ckpt = save_weights(tmp_path / "t.safetensors", interir.build_model("tiny"))
    assert main(["eval", str(ckpt), "--synthetic", str(testset / "clean"), "--out", str(tmp_path / "a"),
                 "--max-images", "1"]) == 0
    assert len(list(csv.DictReader(open(tmp_path / "a" / "results.csv")))) == 8
    assert main(["eval", str(ckpt), "--data", str(testset / "set" / "H"), "--out", str(tmp_path / "b"),
                 "--y-channel"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "b" / "results.csv")))
    assert [r["set"] for r in rows] == ["H", "average"]


@pytest.mark.parametrize("argv, message", [
    (["eval", "{tmp}/missing.safetensors", "--data", "{set}"], "checkpoint not found"),
    (["eval", "{ckpt}", "--data", "{tmp}/nowhere"], "dataset folder not found"),
    (["eval", "{bad}", "--data", "{set}"], "not a readable safetensors checkpoint"),
    (["eval", "{ckpt}", "--data", "{set}", "--crop-border", "-1"], "--crop-border"),
    (["eval", "{ckpt}", "--data", "{tmp}"], "no input/target sub-folders"),
])
def test_eval_errors_are_one_line(testset, tmp_path, capsys, argv, message):
    ckpt = save_weights(tmp_path / "t.safetensors", interir.build_model("tiny"))
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    subs = {"{tmp}": str(tmp_path), "{set}": str(testset / "set"), "{ckpt}": str(ckpt),
            "{bad}": str(tmp_path / "bad.safetensors")}
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err, err
    assert "input_dir=" not in err  # no advice about options the command line does not have


def test_eval_never_silently_replaces_earlier_results(testset, tmp_path, capsys):
    ckpt = save_weights(tmp_path / "tiny.safetensors", interir.build_model("tiny"))
    out = tmp_path / "results"
    argv = ["eval", str(ckpt), "--data", str(testset / "set"), "--out", str(out), "--device", "cpu",
            "--max-images", "1"]
    assert main(argv) == 0
    (out / "results.json").write_text("an earlier run's figures")
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "--overwrite" in err and "results" in err and "\n" not in err
    assert (out / "results.json").read_text() == "an earlier run's figures"
    assert main(argv + ["--overwrite"]) == 0
    assert json.loads((out / "results.json").read_text())["rows"]
