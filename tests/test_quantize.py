"""Int8 weight files (interir/quantize.py, `interir pack`): the rounding bound, what stays float16, damaged files."""
import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import interir
from interir import checkpoint as ck
from interir import quantize
from interir.cli import main
from interir.errors import InterIRError
from interir.model import model_spec


def _trained_like(preset="tiny", seed=0):
    """A network whose zero-initialised scales (β, γ, η …) are random too, so every weight matters."""
    torch.manual_seed(seed)
    net = interir.build_model(preset).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def test_rounding_error_is_at_most_half_a_step_per_output_channel():
    magnitudes = torch.logspace(-4, 1, 7, dtype=torch.float64)[:, None, None, None]
    w = torch.randn(7, 5, 3, 3, dtype=torch.float64) * magnitudes
    w[3] = 0  # an all-zero channel
    q, scale = quantize.quantize(w)
    assert q.dtype == torch.int8 and q.shape == w.shape and scale.shape == (7,) and scale.dtype == torch.float32
    assert int(q.abs().max()) == 127 and int(q[3].abs().max()) == 0 and float(scale[3]) == 0
    err = (quantize.dequantize(q, scale).double() - w).abs().amax((1, 2, 3))
    step = scale.double()
    assert bool((err <= step / 2 * (1 + 1e-6) + 1e-12).all()), (err / step).tolist()
    assert bool((err[step > 0] > 0).any())  # it does round


def test_pack_keeps_vectors_and_the_named_layers_float16():
    state = {"a.weight": torch.randn(4, 3, 3, 3), "a.bias": torch.randn(4), "up.0.weight": torch.randn(4, 4, 1, 1),
             "eta": torch.tensor(0.5), "count": torch.tensor(3)}
    stored = quantize.pack(state, keep=lambda name: name.startswith("up."))
    assert stored["a.weight"].dtype == torch.int8 and stored["a.weight" + quantize.SCALE_SUFFIX].shape == (4,)
    assert {k: v.dtype for k, v in stored.items() if k != "a.weight" and not quantize.is_scale_name(k)} == {
        "a.bias": torch.float16, "up.0.weight": torch.float16, "eta": torch.float16, "count": torch.int64}
    back = quantize.unpack(stored, "f")
    assert set(back) == set(state)
    torch.testing.assert_close(back["a.weight"], state["a.weight"], atol=float(state["a.weight"].abs().max()) / 254,
                               rtol=0)


@pytest.mark.parametrize("bad, needle", [
    ({"w": torch.tensor([[float("nan"), 1.0]])}, "NaN or Inf"),
    ({"w" + quantize.SCALE_SUFFIX: torch.ones(2, 2)}, "reserved"),
])
def test_pack_refuses_what_int8_cannot_hold(bad, needle):
    with pytest.raises(InterIRError, match=needle):
        quantize.pack(bad, keep=lambda name: False)


@pytest.mark.parametrize("damage, needle", [
    (lambda s: s.pop("w" + quantize.SCALE_SUFFIX), "has no scale"),
    (lambda s: s.pop("w"), "has no tensor"),
    (lambda s: s.update({"w" + quantize.SCALE_SUFFIX: torch.ones(3)}), "expected \\(2,\\)"),
    (lambda s: s.update({"b" + quantize.SCALE_SUFFIX: torch.ones(2)}), "but has an int8 scale"),
])
def test_damaged_int8_state_is_one_line(damage, needle):
    stored = quantize.pack({"w": torch.randn(2, 3), "b": torch.randn(2)}, keep=lambda name: False)
    damage(stored)
    with pytest.raises(InterIRError, match=needle) as info:
        quantize.unpack(stored, "f.safetensors")
    assert "\n" not in str(info.value) and "f.safetensors" in str(info.value)


def test_an_int8_file_rebuilds_the_network_within_its_rounding(tmp_path):
    net = _trained_like()
    full = ck.save_weights(tmp_path / "full.safetensors", net)
    small = ck.save_weights(tmp_path / "small.safetensors", net, dtype=torch.int8)
    assert small.stat().st_size < 0.35 * full.stat().st_size  # int8 against float32 (0.31× for `tiny`)
    with safe_open(str(small), framework="pt") as f:
        assert f.metadata()["storage"] == ck.INT8
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes["blocks.0.resm.ep0.conv2.weight"] == "I8"
    assert dtypes["down.1.weight"] == "F16" and dtypes["up.0.weight"] == "F16"  # InterIR.full_precision_layers
    assert set(ck.tensor_shapes(small)) == set(net.state_dict())
    loaded, _ = ck.load_model(small)
    into = interir.build_model("tiny")
    ck.load_weights_into(into, small)  # as `path.pretrained` starts a training from it
    assert all(torch.equal(into.state_dict()[k], v) for k, v in loaded.state_dict().items())
    for k, v in net.state_dict().items():
        got = loaded.state_dict()[k]
        bound = float(v.abs().max()) / 254 + float(v.abs().max()) * 2**-10 + 1e-7  # int8 step / 2, or float16
        assert float((got - v).abs().max()) <= bound, k
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        y, y8 = net(x), loaded(x)
    assert 0 < float((y8 - y).abs().max()) < 0.05


@pytest.mark.parametrize("metadata, tensors, needle", [
    ({"storage": "int4"}, {}, "storage 'int4'"),
    ({}, {"x" + quantize.SCALE_SUFFIX: torch.ones(2)}, "no 'int8' storage metadata"),
])
def test_a_file_with_unknown_or_missing_storage_is_one_line(tmp_path, metadata, tensors, needle):
    net = interir.build_model("tiny")
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / "w.safetensors"
    meta = {"format": ck.FORMAT, "model": json.dumps(model_spec(net)), **metadata}
    save_file({**state, **tensors}, str(path), metadata=meta)
    with pytest.raises(InterIRError, match=needle) as info:
        ck.read_weights(path)
    assert "\n" not in str(info.value)


def test_pack_command(tmp_path, capsys):
    source = ck.save_weights(tmp_path / "w.safetensors", _trained_like(), extra={"step": 7})
    out = tmp_path / "w8.safetensors"
    assert main(["pack", str(source), str(out)]) == 0
    assert "int8" in capsys.readouterr().out
    assert ck.read_metadata(out)["extra"] == {"step": 7}
    assert main(["pack", str(source), str(out)]) == 1  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["pack", str(source), str(out), "--storage", "float16", "--overwrite"]) == 0
    with safe_open(str(out), framework="pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F16"}
    before = source.read_bytes()
    assert main(["pack", str(source), str(source), "--overwrite"]) == 1  # never its own input
    assert "is also an input" in capsys.readouterr().err and source.read_bytes() == before
    assert main(["pack", str(source), str(tmp_path / "w.pt")]) == 1
    assert main(["pack", str(source), str(tmp_path / "missing" / "w.safetensors")]) == 1
    err = capsys.readouterr().err
    assert "must end in .safetensors" in err and "does not exist" in err and "Traceback" not in err
