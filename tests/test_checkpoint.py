"""Weights files are untrusted input: their metadata, shapes and values are checked before anything is built."""
import json

import pytest
import torch
from safetensors.torch import save_file

import interir
from interir import checkpoint as ck
from interir.errors import InterIRError


def _state(model):
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def test_metadata_describing_a_bigger_network_is_refused_before_it_is_built(tmp_path, monkeypatch):
    """A 1 MB file whose metadata asks for channels 1024 × 8 blocks (a 27 GB network) must not build it."""
    path = tmp_path / "crafted.safetensors"
    spec = {"name": "interir", "preset": "tiny", **interir.build_model("tiny").cfg.to_dict()}
    spec.update(channels=1024, num_blocks=8)
    spec.pop("extra")
    save_file(_state(interir.build_model("tiny")), str(path),
              metadata={"format": ck.FORMAT, "model": json.dumps(spec)})
    built_on = []
    real_build = ck.build

    def spy(description):
        built_on.append(torch.empty(()).device.type)  # the default device at the time of the build
        return real_build(description)

    monkeypatch.setattr(ck, "build", spy)
    with pytest.raises(InterIRError, match="does not fit this network"):
        ck.load_model(path)
    assert built_on == ["meta"]


@pytest.mark.parametrize("metadata, needle", [
    ({"format": ck.FORMAT, "model": "{not json"}, "not valid JSON"),
    ({"format": ck.FORMAT, "model": "[1, 2, 3]"}, "model description is malformed"),
    ({"format": ck.FORMAT, "model": '{"name": 5}'}, "model description is malformed"),
    ({"format": ck.FORMAT, "model": '{"name": "interir", "preset": "tiny"}', "extra": "[]"}, "'extra'"),
    ({"format": ck.FORMAT, "model": '{"name": "interir", "preset": "tiny", "channels": "many"}'},
     "channels must be an integer"),
    ({"format": "other/9", "model": "{}"}, "not an interir checkpoint"),
])
def test_malformed_metadata_is_one_line(tmp_path, metadata, needle):
    path = tmp_path / "m.safetensors"
    save_file(_state(interir.build_model("tiny")), str(path), metadata=metadata)
    with pytest.raises(InterIRError, match=needle) as info:
        ck.load_model(path)
    assert "\n" not in str(info.value)


def test_truncated_weights_are_one_line(tmp_path):
    path = ck.save_weights(tmp_path / "w.safetensors", interir.build_model("tiny"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    with pytest.raises(InterIRError, match="w.safetensors"):
        ck.load_model(path)


def test_nan_weights_are_refused_by_name(tmp_path):
    model = interir.build_model("tiny")
    with torch.no_grad():
        model.up[0].weight[0, 0, 0, 0] = float("inf")
    path = ck.save_weights(tmp_path / "w.safetensors", model)
    with pytest.raises(InterIRError, match=r"NaN or Inf values in 1 tensor\(s\) \(e.g. up.0.weight\)"):
        ck.load_model(path)


def test_checkpoints_are_flushed_to_disk_before_they_are_renamed(tmp_path, monkeypatch):
    import os

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(f"replace {os.path.basename(b)}"),
                                                     real_replace(a, b))[1])
    ck.CheckpointDir(tmp_path).save(3, interir.build_model("tiny"), {"step": 3, "optimizer": {}, "rng": {}})
    replaced = [e for e in events if e.startswith("replace")]
    assert replaced == ["replace step_00000003.safetensors", "replace step_00000003.state.pt", "replace latest.json"]
    for i, e in enumerate(events):
        if e.startswith("replace"):
            assert events[i - 1] == "fsync"  # the file's data reached the disk before it got its name


def test_shipped_names_the_shipped_model_unless_a_file_of_that_name_is_there(tmp_path, monkeypatch):
    from interir.checkpoint import resolve_weights, shipped_checkpoint

    monkeypatch.chdir(tmp_path)
    assert resolve_weights("shipped") == shipped_checkpoint()
    (tmp_path / "shipped").mkdir()  # a user's experiment folder called `shipped` wins, as any path does
    with pytest.raises(InterIRError, match="holds no checkpoint"):
        resolve_weights("shipped")
