"""scripts/deepen.py: a deeper InterIR keeps every trained weight; its new IPBlocks copy the last one with η = 0."""
import pytest
import torch

import interir
from interir.checkpoint import load_model, save_weights
from interir.errors import InterIRError
from interir.model import build
from tests.conftest import load_script

deepen = load_script("deepen")


def _trained(num_blocks=2):
    torch.manual_seed(0)
    net = interir.build_model("tiny", num_blocks=num_blocks).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def test_new_blocks_copy_the_last_one_and_leave_x_unchanged():
    net = _trained()
    deeper = deepen.deepen(net, 4)
    assert len(deeper.blocks) == 4
    own, new = net.state_dict(), deeper.state_dict()
    for k, v in own.items():
        assert torch.equal(new[k], v), k  # every trained weight where it was
    for i in (2, 3):
        for k, v in own.items():
            if k.startswith("blocks.1.") and not k.endswith("resm.eta"):
                assert torch.equal(new[f"blocks.{i}." + k[len("blocks.1."):]], v)
        assert float(new[f"blocks.{i}.resm.eta"]) == 0 and float(own["blocks.1.resm.eta"]) != 0
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        _, stages = deeper(x, return_stages=True)
    torch.testing.assert_close(stages[2], stages[1], rtol=0, atol=0)  # η = 0: X passes the new blocks as it is
    torch.testing.assert_close(stages[3], stages[1], rtol=0, atol=0)


def test_the_script_writes_a_loadable_file_and_refuses_bad_requests(tmp_path, capsys):
    src = save_weights(tmp_path / "two.safetensors", _trained())
    out = tmp_path / "three.safetensors"
    assert deepen.main([str(src), str(out), "--num-blocks", "3", "--storage", "int8"]) == 0
    model, meta = load_model(out)
    assert len(model.blocks) == 3 and meta["model"]["num_blocks"] == 3 and meta["extra"]["deepened_from"] == str(src)
    for argv, needle in [([str(src), str(tmp_path / "x.safetensors"), "--num-blocks", "2"], "must be above"),
                         ([str(src), str(out), "--num-blocks", "4"], "--overwrite"),
                         ([str(src), str(src), "--num-blocks", "4", "--overwrite"], "is also an input"),
                         ([str(src), str(tmp_path / "x.pt"), "--num-blocks", "4"], "must end in .safetensors"),
                         ([str(src), str(tmp_path / "no" / "x.safetensors"), "--num-blocks", "4"], "does not exist")]:
        assert deepen.main(argv) == 1
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err


def test_only_interir_deepens():
    with pytest.raises(InterIRError, match="only an InterIR"):
        deepen.deepen(build({"name": "dgunet", "preset": "dgunet-tiny"}), 3)
