"""`interir export` (docs/export.md): the export path's rewritten pieces equal the reference, and the exported
files (torch.export .pt2, ONNX through onnxruntime) equal the eager network at sizes other than the traced one."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from interir import export as ex
from interir.cli import main
from interir.checkpoint import save_weights
from interir.model import build
from interir.ops import backends
from interir.ops import reference as ref


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 97])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_pool_matrix_is_the_references_adaptive_pooling_matrix(n, k):
    assert torch.equal(ex.pool_matrix(n, k, torch.float64, "cpu"), ref.adaptive_pool_matrix(n, k, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(2, 3, 9, 14), (1, 5, 16, 16), (3, 2, 31, 7)])
def test_export_attention_equals_the_reference(shape):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g)
    theta = torch.tensor(0.1)
    for k in (3, 5):
        want = ref.explainable_attention(x, theta, k, 0.5)
        got = ex.explainable_attention(x, theta, k, 0.5)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("k", [1, 3])
def test_export_modulated_conv_equals_the_reference(groups, k):
    g = torch.Generator().manual_seed(2)
    b, cin, cout, h, w = 3, 4, 6, 11, 7
    x = torch.randn(b, cin, h, w, generator=g, dtype=torch.float64)
    weight = torch.randn(cout, cin // groups, k, k, generator=g, dtype=torch.float64)
    bias = torch.randn(cout, generator=g, dtype=torch.float64)
    attn = torch.rand(b, cin, k, k, generator=g, dtype=torch.float64) * 2
    torch.testing.assert_close(ex.modulated_conv(x, weight, bias, attn, groups),
                               ref.modulated_conv(x, weight, bias, attn, groups), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("size", [(8, 8), (9, 13), (16, 17), (31, 32)])
@pytest.mark.parametrize("multiple", [4, 8])
def test_in_graph_padding_is_reflect_padding(size, multiple):
    x = torch.rand(1, 2, *size)
    h, w = size
    want = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), mode="reflect")
    assert torch.equal(ex.reflect_pad_to_multiple(x, multiple), want)


@pytest.mark.parametrize("name", ["interir", "dgunet"])
def test_deployable_equals_the_network_at_odd_sizes(name):
    torch.manual_seed(0)
    net = build({"name": name, "preset": "tiny" if name == "interir" else "dgunet-tiny"}).eval()
    x = torch.rand(2, 3, 21, 34)
    with ex._prepared(net) as deployable, torch.no_grad(), backends.inline(ex.EXPORT_TABLE):
        got = deployable(x)
    with torch.no_grad(), backends.use_backend("reference"):
        want = net(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_net():
    torch.manual_seed(0)
    return build({"name": "interir", "preset": "tiny"}).eval()


def test_torch_export_program_serves_other_batch_and_image_sizes(tiny_net, tmp_path):
    path = ex.export(tiny_net, tmp_path / "tiny.pt2")
    rows = ex.parity(tiny_net, path, sizes=((61, 83), (64, 64), (8, 9)))
    assert [r["size"] for r in rows] == ["61x83", "64x64", "8x9"]
    for row in rows:
        assert row["max_abs_diff"] < 1e-5, row
    program = torch.export.load(str(path)).module()
    x = torch.rand(3, 3, 40, 24)
    with torch.no_grad(), backends.use_backend("reference"):
        torch.testing.assert_close(program(x), tiny_net(x), rtol=1e-5, atol=1e-5)


def test_onnx_runs_in_onnxruntime_at_two_sizes_equal_to_the_eager_network(tiny_net, tmp_path):
    pytest.importorskip("onnxscript")
    pytest.importorskip("onnxruntime")
    path = ex.export(tiny_net, tmp_path / "tiny.onnx")
    rows = ex.parity(tiny_net, path, sizes=((61, 83), (96, 128)))
    for row in rows:
        assert row["max_abs_diff"] < 1e-5, row
    import onnx
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["restored"]
    assert not [n.name for n in graph.node if n.metadata_props]  # the exporter's stack traces are stripped


def test_cli_refuses_bad_names_and_existing_files_in_one_line(tmp_path, capsys, tiny_net):
    weights = save_weights(tmp_path / "w.safetensors", tiny_net)
    assert main(["export", str(weights), str(tmp_path / "model.bin")]) != 0
    assert "must end in .onnx or .pt2" in capsys.readouterr().err
    (tmp_path / "taken.pt2").write_bytes(b"keep")
    assert main(["export", str(weights), str(tmp_path / "taken.pt2")]) != 0
    err = capsys.readouterr().err
    assert "--overwrite" in err and "Traceback" not in err
    assert (tmp_path / "taken.pt2").read_bytes() == b"keep"
    assert main(["export", str(weights), str(tmp_path / "model.onnx"), "--opset", "17"]) != 0
    assert "--opset must be at least 18" in capsys.readouterr().err
    assert main(["export", str(weights), str(tmp_path / "model.onnx"), "--opset", "10000"]) != 0
    err = capsys.readouterr().err.strip()
    assert "--opset must be" in err and "10000" in err and "\n" not in err
    (tmp_path / "model.pt2").mkdir()
    assert main(["export", str(weights), str(tmp_path / "model.pt2"), "--overwrite"]) != 0
    err = capsys.readouterr().err.strip()
    assert "is a folder" in err and "\n" not in err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


def test_cli_writes_and_checks_a_program(tmp_path, capsys, tiny_net):
    weights = save_weights(tmp_path / "w.safetensors", tiny_net)
    out = tmp_path / "model.pt2"
    assert main(["export", str(weights), str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "61x83: max |exported − eager|" in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind
