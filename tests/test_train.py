"""Training: resume equals uninterrupted, DDP keeps ranks identical, atomic checkpoints, config errors."""
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from interir import checkpoint as ck
from interir.cli import main
from interir.config import load_config
from interir.train import train


def _photos(folder: Path, n: int = 3, size: int = 48) -> Path:
    """Small crops of scikit-image's bundled photographs."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(("astronaut", "chelsea", "coffee", "rocket")[:n]):
        img = getattr(data, name)()
        top, left = img.shape[0] // 3, img.shape[1] // 3
        Image.fromarray(img[top:top + size, left:left + size]).save(folder / f"{name}.png")
    return folder


def _cfg(tmp_path: Path, **over):
    overrides = [
        f"path.experiments_root={tmp_path / 'exp'}",
        "name=run",
        "model.preset=tiny",
        f"datasets.train.root={_photos(tmp_path / 'clean')}",
        "datasets.train.patch_size=32",
        "datasets.train.batch_size_per_gpu=2",
        "datasets.train.num_workers=0",
        "train.total_iter=10",
        "train.ema_decay=0.9",
        "logger.save_checkpoint_freq=5",
        "logger.print_freq=1",
        "logger.tensorboard=false",
    ] + [f"{k}={v}" for k, v in over.items()]
    return load_config(None, overrides)


def test_resume_equals_uninterrupted(tmp_path):
    full = train(_cfg(tmp_path / "a"), progress=False)
    first = train(_cfg(tmp_path / "b"), progress=False, stop_at=5)
    assert first["steps"] == 5 and ck.CheckpointDir(tmp_path / "b" / "exp" / "run").latest()["step"] == 5
    second = train(_cfg(tmp_path / "b"), resume=True, progress=False)
    assert second["steps"] == 10 and len(second["losses"]) == 5
    np.testing.assert_allclose(first["losses"] + second["losses"], full["losses"], rtol=1e-5, atol=1e-7)
    for (name, a), b in zip(full["model"].state_dict().items(), second["model"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(full["ema"].state_dict().values(), second["ema"].state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_checkpoint_rebuilds_its_network_and_log_is_written(tmp_path):
    result = train(_cfg(tmp_path, **{"model.explainable": "false"}), progress=False)
    folder = Path(result["folder"])
    model, meta = ck.load_model(folder)  # the experiment folder → latest EMA weights
    assert meta["model"]["preset"] == "tiny" and meta["model"]["explainable"] is False
    assert meta["extra"]["step"] == 10 and meta["extra"]["ema"] is True
    for a, b in zip(model.state_dict().values(), result["ema"].state_dict().values()):
        torch.testing.assert_close(a, b)
    log = (folder / "train.log").read_text()
    assert "step 10 loss" in log and "saved checkpoint at step 10" in log
    assert sorted(p.name for p in folder.glob("step_*.safetensors")) == [
        "step_00000005.ema.safetensors", "step_00000005.safetensors",
        "step_00000010.ema.safetensors", "step_00000010.safetensors"]
    with pytest.raises(ck.InterIRError, match="expected 'small'"):
        ck.load_model(folder, expect={"preset": "small"})


def test_killed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    cfg = _cfg(tmp_path)
    train(cfg, progress=False, stop_at=5)
    folder = tmp_path / "exp" / "run"
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "train.log"}

    def dying_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")  # half a file, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(ck, "save_file", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, resume=True, progress=False)
    after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "train.log"}
    assert after == before  # nothing partial left, the step-5 files and latest.json unchanged
    assert json.loads((folder / "latest.json").read_text())["step"] == 5
    ck.load_model(folder)


def test_dgunet_loss_requires_dgunet(tmp_path):
    with pytest.raises(ck.InterIRError, match="needs model.name: dgunet"):
        train(_cfg(tmp_path, **{"train.loss.type": "dgunet"}), progress=False)


def test_bf16_autocast_trains(tmp_path):
    result = train(_cfg(tmp_path, **{"train.bf16": "true", "train.total_iter": 2}), progress=False)
    assert result["steps"] == 2 and all(np.isfinite(result["losses"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg, out):
    """One process of `world`: trains `cfg` and saves its losses and weights to out/rank<rank>.pt."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    result = train(cfg, progress=False)
    torch.save({"losses": result["losses"],
                "weights": {k: v.clone() for k, v in result["model"].state_dict().items()}}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_keep_parameters_identical(tmp_path):
    cfg = _cfg(tmp_path, **{"train.total_iter": 3})
    mp.spawn(_ddp_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt")["weights"], torch.load(tmp_path / "rank1.pt")["weights"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    init = __import__("interir").build_model("tiny")
    assert any(not torch.equal(a[k], v) for k, v in init.state_dict().items())  # it did train


def test_two_processes_with_half_batches_train_as_one_process(tmp_path):
    """docs/training.md, "Two processes on one CPU": world 2 × batch 2 reads the samples of world 1 × batch 4,
    step for step, and averages the same gradients, so the losses (the whole batch's, on every process) and the
    weights agree to float round-off."""
    steps = {"train.total_iter": 4, "train.ema_decay": 0}
    one = train(_cfg(tmp_path / "one", **steps, **{"datasets.train.batch_size_per_gpu": 4}), progress=False)
    two = _cfg(tmp_path / "two", **steps)  # batch_size_per_gpu 2
    mp.spawn(_ddp_worker, args=(2, _free_port(), two, str(tmp_path)), nprocs=2, join=True)
    split = torch.load(tmp_path / "rank0.pt")
    np.testing.assert_allclose(split["losses"], one["losses"], rtol=1e-5)
    assert len(set(one["losses"])) == 4  # the steps read different samples
    for (name, a), b in zip(one["model"].state_dict().items(), split["weights"].values()):
        # Adam turns the gradients' round-off into at most a few 1e-6 on a few weights after 4 steps (lr 5e-4)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=2e-5, msg=name)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "missing.yml"], "config file not found"),
        (["train", "{tmp}"], "is a folder; give its YAML file"),
        (["train", "{tmp}/photo.png"], "is not a YAML text file"),
        (["train", "{cfg}", "--set", "train.totl_iter=3"], "unknown config key 'train.totl_iter'"),
        (["train", "{cfg}", "--set", "datasets.train.root=/nonexistent"], "does not exist"),
        (["train", "{cfg}", "--set", "train.scheduler.type=step"], "cosine, constant or multistep"),
        (["train", "{cfg}", "--set", "train.scheduler.warmup_iter=-1"], "train.scheduler.warmup_iter must be"),
        (["train", "{cfg}", "--set", "datasets.train.stages=[[5, 32, 1]]"], "sum to 5 iterations but train.total_iter"),
        (["train", "{cfg}", "--set", "model.preset=huge"], "unknown InterIR preset"),
        # values of the wrong type or range, each named before any work (issue: "nothing lost, no traceback")
        (["train", "{cfg}", "--set", "train=5"], "'train' is a section"),
        (["train", "{cfg}", "--set", "datasets.train=null"], "'datasets.train' is a section"),
        (["train", "{cfg}", "--set", "train.optim.lr=fast"], "train.optim.lr must be a finite number"),
        (["train", "{cfg}", "--set", "train.optim.lr=[1"], "is not valid YAML"),
        (["train", "{cfg}", "--set", "train.optim.betas=[0.9]"], "train.optim.betas"),
        (["train", "{cfg}", "--set", "model.channels=abc"], "channels must be an integer"),
        (["train", "{cfg}", "--set", "datasets.train.patch_size=abc"], "datasets.train.patch_size must be an integer"),
        (["train", "{cfg}", "--set", "datasets.train.combos=[H, Q]"], "unknown degradation combination"),
        (["train", "{cfg}", "--set", "train.grad_clip=-1"], "train.grad_clip must be a finite number ≥ 0"),
        (["train", "{cfg}", "--set", "train.ema_decay=2"], "train.ema_decay must be a finite number ≥ 0 and < 1"),
        (["train", "{cfg}", "--set", "train.total_iter=-5"], "train.total_iter must be an integer ≥ 1"),
        (["train", "{cfg}", "--set", "train.total_iter=2.5"], "train.total_iter must be an integer"),
        (["train", "{cfg}", "--set", "logger.print_freq=0"], "logger.print_freq must be an integer ≥ 1"),
        (["train", "{cfg}", "--set", "logger.save_checkpoint_freq=0"], "logger.save_checkpoint_freq"),
        (["train", "{cfg}", "--set", "train.bf16=maybe"], "train.bf16 must be true or false"),
        (["train", "{cfg}", "--set", "model.scale=0"], "scale must be an integer ≥ 1"),
        (["train", "{cfg}", "--set", "model.num_blocks=-1"], "num_blocks must be an integer ≥ 0"),
        (["train", "{cfg}", "--set", "model.eta_init=.nan"], "eta_init must be a finite number"),
        (["train", "{cfg}", "--set", "train.loss.l1=0", "--set", "train.loss.fft=0"], "both 0"),
        (["train", "{cfg}", "--set", "name=../escape"], "name must be a relative path inside"),
        (["train", "{cfg}", "--set", "name=/tmp/abs"], "name must be a relative path inside"),
        (["train", "{cfg}", "--set", "device=tpu"], "device must be"),
        (["train", "{cfg}", "--set", "datasets.val={type: bogus, root: .}"], "datasets.val.type"),
        # found by the data loader's first batch, still before the experiment folder is made
        (["train", "{cfg}", "--set", "datasets.train.patch_size=256"], "smaller than patch_size 256"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    cfg_file = tmp_path / "cfg.yml"
    cfg_file.write_text(f"name: x\npath: {{experiments_root: {tmp_path}}}\nmodel: {{preset: tiny}}\n"
                        f"datasets: {{train: {{root: {_photos(tmp_path / 'c', 1)}, num_workers: 0}}}}\n")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")  # not UTF-8
    code = main([a.replace("{cfg}", str(cfg_file)).replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and message in err and "\n" not in err, err
    assert not (tmp_path / "x").exists()  # refused before the experiment folder was made


def _tiny_yaml(tmp_path: Path, total_iter: int) -> Path:
    """A YAML experiment file: tiny model, one photo, batch 1 of 32² patches."""
    cfg_file = tmp_path / "cfg.yml"
    cfg_file.write_text(f"name: x\npath: {{experiments_root: {tmp_path / 'exp'}}}\nmodel: {{preset: tiny}}\n"
                        f"datasets: {{train: {{root: {_photos(tmp_path / 'c', 1)}, num_workers: 0, patch_size: 32,"
                        f" batch_size_per_gpu: 1}}}}\ntrain: {{total_iter: {total_iter}}}\n"
                        f"logger: {{tensorboard: false}}\n")
    return cfg_file


def test_cli_refuses_to_overwrite_an_experiment(tmp_path, capsys):
    cfg_file = _tiny_yaml(tmp_path, 1)
    assert main(["train", str(cfg_file), "--no-progress"]) == 0
    assert main(["train", str(cfg_file), "--no-progress"]) == 1
    assert "pass --resume" in capsys.readouterr().err
    assert main(["train", str(cfg_file), "--no-progress", "--resume", "--set", "train.total_iter=2"]) == 0


def test_dgunet_trains_evaluates_and_reloads_through_the_same_tools(tmp_path):
    cfg = _cfg(tmp_path, **{"model.name": "dgunet", "model.preset": "dgunet-tiny", "train.total_iter": 3})
    result = train(cfg, progress=False)
    assert result["steps"] == 3 and all(np.isfinite(result["losses"]))
    model, meta = ck.load_model(result["folder"])
    assert type(model).__name__ == "DGUNet" and meta["model"]["preset"] == "dgunet-tiny"
    x = torch.rand(1, 3, 24, 20)
    with torch.no_grad():
        torch.testing.assert_close(model(x), result["ema"].eval()(x))


def test_pretrained_weights_are_the_starting_point(tmp_path):
    first = train(_cfg(tmp_path / "a", **{"train.total_iter": 2}), progress=False)
    cfg = _cfg(tmp_path / "b", **{"train.total_iter": 1, "train.optim.lr": 0.0})
    cfg["path"]["pretrained"] = first["folder"]  # its latest EMA weights
    second = train(cfg, progress=False)
    for a, b in zip(first["ema"].state_dict().values(), second["model"].state_dict().values()):
        torch.testing.assert_close(a, b)  # lr 0: the pretrained weights are unchanged


def _log_lrs(folder: Path) -> dict[int, float]:
    """{step: learning rate} from train.log."""
    out = {}
    for line in (folder / "train.log").read_text().splitlines():
        parts = line.split()
        if "loss" in parts and "lr" in parts:
            out[int(parts[parts.index("step") + 1])] = float(parts[parts.index("lr") + 1])
    return out


def test_extending_a_finished_run_follows_the_new_schedule_and_says_so(tmp_path, capsys):
    from interir.train import learning_rate

    train(_cfg(tmp_path, **{"train.total_iter": 4}), progress=False)
    capsys.readouterr()
    longer = _cfg(tmp_path, **{"train.total_iter": 8})
    result = train(longer, resume=True, progress=False)
    err = capsys.readouterr().err
    assert result["steps"] == 8 and len(result["losses"]) == 4
    assert "made for 4" in err and "runs to step 8" in err
    folder = Path(result["folder"])
    lrs = _log_lrs(folder)
    for step in range(5, 9):
        assert lrs[step] == pytest.approx(learning_rate(step - 1, longer), rel=1e-3)
    assert [lrs[s] for s in range(5, 9)] == sorted((lrs[s] for s in range(5, 9)), reverse=True)  # no climb back
    assert json.loads((folder / "config.json").read_text())["train"]["total_iter"] == 8  # and that is now true


def test_resuming_a_finished_run_trains_nothing_and_says_so(tmp_path, capsys):
    cfg_file = _tiny_yaml(tmp_path, 2)
    assert main(["train", str(cfg_file), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg_file), "--no-progress", "--resume"]) == 0
    cap = capsys.readouterr()
    assert "nothing to train" in cap.err and "nothing trained" in cap.out and "nan" not in cap.out + cap.err


def _ten_steps(tmp_path):
    cfg = _cfg(tmp_path)
    first = train(cfg, progress=False)
    return cfg, Path(first["folder"])


@pytest.mark.parametrize("damage", ["truncated weights", "truncated ema", "truncated state", "pickled object",
                                    "missing state"])
def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys, damage):
    cfg, folder = _ten_steps(tmp_path)
    if damage.startswith("truncated"):
        name = {"weights": "step_00000010.safetensors", "ema": "step_00000010.ema.safetensors",
                "state": "step_00000010.state.pt"}[damage.split()[1]]
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2])
    elif damage == "pickled object":
        torch.save({"step": 10, "optimizer": {}, "rng": {}, "evil": Path("x")}, folder / "step_00000010.state.pt")
    else:
        (folder / "step_00000010.state.pt").unlink()
    capsys.readouterr()
    cfg["train"]["total_iter"] = 12
    result = train(cfg, resume=True, progress=False)
    err = capsys.readouterr().err
    assert result["steps"] == 12 and len(result["losses"]) == 7  # steps 6…12: resumed from step 5
    assert "step 10 checkpoint cannot be used" in err and "resuming from step 5" in err
    assert "weights_only=False" not in err and "Traceback" not in err


def test_no_intact_checkpoint_is_one_line_without_unsafe_advice(tmp_path, capsys):
    cfg, folder = _ten_steps(tmp_path)
    for step in (5, 10):
        torch.save({"step": step, "evil": Path("x")}, folder / f"step_{step:08d}.state.pt")
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps(cfg))  # JSON is YAML
    capsys.readouterr()
    assert main(["train", str(cfg_file), "--resume", "--no-progress", "--set", "train.total_iter=12"]) == 1
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("interir train: error: no intact checkpoint") and "other than tensors" in last
    assert "weights_only=False" not in err


@pytest.mark.parametrize("latest", ['{"step": 10, "weigh', '[1, 2]', '{"step": "ten", "weights": 5}',
                                    '{"step": 10, "weights": "../../x.safetensors", "ema": null, "state": "s.pt"}'])
def test_malformed_latest_json(tmp_path, capsys, latest):
    cfg, folder = _ten_steps(tmp_path)
    (folder / "latest.json").write_text(latest)
    with pytest.raises(ck.InterIRError, match="latest.json"):
        ck.load_model(folder)  # restore / eval / explain: one line naming the file
    capsys.readouterr()
    cfg["train"]["total_iter"] = 11
    result = train(cfg, resume=True, progress=False)  # training: the newest checkpoint found in the folder
    assert result["steps"] == 11 and len(result["losses"]) == 1
    assert "latest.json" in capsys.readouterr().err


def test_missing_tensorboard_is_said_on_the_terminal(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    train(_cfg(tmp_path, **{"train.total_iter": 1, "logger.tensorboard": "true"}), progress=False)
    assert "tensorboard is not installed" in capsys.readouterr().err


def test_a_killed_runs_temporary_files_are_removed_on_resume(tmp_path):
    from interir.atomic import temp_name

    cfg = _cfg(tmp_path, **{"train.total_iter": 2})
    folder = Path(train(cfg, progress=False)["folder"])
    stale = folder / temp_name("step_00000004.state.pt").replace(f"-{os.getpid()}-", "-999999999-")
    stale.write_bytes(b"half a checkpoint")
    cfg["train"]["total_iter"] = 3
    train(cfg, resume=True, progress=False)
    assert not stale.exists()


def test_a_checkpoint_written_by_the_previous_version_resumes_exactly(tmp_path):
    """Training states written before the schedule became a function of the step hold CosineAnnealingLR's
    state (and `initial_lr` in the optimizer's groups): they still resume, onto the same losses."""
    full = train(_cfg(tmp_path / "a"), progress=False)
    first = train(_cfg(tmp_path / "b"), progress=False, stop_at=5)
    path = Path(first["folder"]) / "step_00000005.state.pt"
    state = torch.load(path, weights_only=True)
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    old = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=1e-6)
    for _ in range(5):
        optimizer.step()
        old.step()
    state["scheduler"] = old.state_dict()
    for group in state["optimizer"]["param_groups"]:
        group["initial_lr"] = 5e-4
    torch.save(state, path)
    second = train(_cfg(tmp_path / "b"), resume=True, progress=False)
    np.testing.assert_allclose(first["losses"] + second["losses"], full["losses"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.yml")))
def test_every_shipped_config_loads(name):
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / name)
    assert cfg["train"]["total_iter"] >= 1


# ------------------------------------------------------------------------------ schedules (docs/training.md)
def test_warmup_and_multistep_resume_exactly_and_follow_their_curve(tmp_path):
    over = {"train.scheduler.type": "multistep", "train.scheduler.milestones": "[6, 8]",
            "train.scheduler.gamma": 0.5, "train.scheduler.warmup_iter": 3}
    full = train(_cfg(tmp_path / "a", **over), progress=False)
    first = train(_cfg(tmp_path / "b", **over), progress=False, stop_at=2)  # stopped inside the warmup
    second = train(_cfg(tmp_path / "b", **over), resume=True, progress=False)
    assert first["losses"] + second["losses"] == full["losses"]  # bit for bit
    lrs = _log_lrs(Path(full["folder"]))  # the lr of step n (1-based in the log) is that of 0-based step n − 1
    expected = [5e-4 / 3, 2 * 5e-4 / 3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4, 2.5e-4, 1.25e-4, 1.25e-4]
    assert [lrs[s] for s in range(1, 11)] == pytest.approx(expected, rel=1e-3)
    assert _log_lrs(Path(second["folder"])) == lrs  # the resumed run logged the same rates


def test_warmup_then_cosine_trains_along_its_curve(tmp_path):
    from interir.train import learning_rate

    cfg = _cfg(tmp_path, **{"train.scheduler.warmup_iter": 4, "train.total_iter": 8})
    lrs = _log_lrs(Path(train(cfg, progress=False)["folder"]))
    assert [lrs[s] for s in range(1, 9)] == pytest.approx([learning_rate(s, cfg) for s in range(8)], rel=1e-3)
    assert lrs[1] == pytest.approx(5e-4 / 4, rel=1e-3) and lrs[4] == lrs[5] == pytest.approx(5e-4, rel=1e-3)


_STAGES = "[[4, 24, 2], [3, 32, 3], [3, 40, 1]]"  # Restormer-style: growing patches, shrinking batches


def _record_batches(monkeypatch) -> list:
    import interir.train as tr

    shapes = []
    real = tr._collate

    def collate(items):
        batch = real(items)
        shapes.append(tuple(batch["input"].shape))
        return batch

    monkeypatch.setattr(tr, "_collate", collate)
    return shapes


@pytest.mark.parametrize("stop", [5, 4])  # inside stage 2, at the stage 1 → 2 boundary
def test_progressive_stages_resume_exactly(tmp_path, monkeypatch, stop):
    over = {"datasets.train.stages": _STAGES}
    full = train(_cfg(tmp_path / "a", **over, **{"datasets.train.num_workers": 1}), progress=False)  # a worker
    shapes = _record_batches(monkeypatch)
    first = train(_cfg(tmp_path / "b", **over), progress=False, stop_at=stop)
    second = train(_cfg(tmp_path / "b", **over), resume=True, progress=False)
    assert first["steps"] == stop and second["steps"] == 10
    assert first["losses"] + second["losses"] == full["losses"]  # bit for bit
    for a, b in zip(full["model"].state_dict().values(), second["model"].state_dict().values()):
        assert torch.equal(a, b)
    # each stage's batch and patch, on both sides of the stop
    assert shapes == [(2, 3, 24, 24)] * 4 + [(3, 3, 32, 32)] * 3 + [(1, 3, 40, 40)] * 3
    log = (Path(second["folder"]) / "train.log").read_text()
    assert "stage 1/3 starts at step 0: patch 24, batch 2×1 (to step 4)" in log
    assert "stage 3/3 starts at step 7: patch 40, batch 1×1 (to step 10)" in log
    assert ("stage 2/3 resumes at step 5" if stop == 5 else "stage 2/3 starts at step 4") in log


def test_stages_read_the_same_samples_as_one_fixed_stage_when_they_match_it(tmp_path):
    """Two stages of the default patch and batch are the default run: a stage boundary moves no position."""
    fixed = train(_cfg(tmp_path / "a", **{"train.total_iter": 6}), progress=False)
    two = {"train.total_iter": 6, "datasets.train.stages": "[[2, 32, 2], [4, 32, 2]]"}
    staged = train(_cfg(tmp_path / "b", **two), progress=False)
    assert staged["losses"] == fixed["losses"]


def test_validation_writes_image_crops_to_tensorboard(tmp_path, monkeypatch):
    import sys
    import types

    val = tmp_path / "val"
    for sub in ("input", "target"):
        _photos(val / sub, n=2, size=40)
    calls = []

    class Writer:
        def __init__(self, folder):
            pass

        def add_scalar(self, tag, value, step):
            calls.append(("scalar", tag, step))

        def add_image(self, tag, image, step, dataformats="CHW"):
            calls.append(("image", tag, step, tuple(image.shape), dataformats))

        def close(self):
            pass

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    cfg = _cfg(tmp_path, **{"train.total_iter": 2, "logger.tensorboard": "true", "logger.val_freq": 1})
    cfg["datasets"]["val"] = {"root": str(val)}
    train(cfg, progress=False)
    images = [c for c in calls if c[0] == "image"]
    assert images == [("image", f"val/val/{i}", s, (3, 40, 40 * 3 + 4), "CHW") for s in (1, 2) for i in (0, 1)]
    assert ("scalar", "val/psnr", 1) in calls


@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
def test_the_optimizer_steps_all_tensors_together_and_equals_the_per_tensor_loop(kind):
    """make_optimizer's foreach update gives the per-tensor loop's weights bit for bit, over several steps."""
    from interir.train import make_optimizer

    cfg = {"type": kind, "betas": [0.9, 0.99], "weight_decay": 0.01}
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in [(5, 3), (7,), (2, 4, 3, 3), (1,)]]
    together = [torch.nn.Parameter(t.clone()) for t in start]
    looped = [torch.nn.Parameter(t.clone()) for t in start]
    fast = make_optimizer(together, cfg, 1e-2)
    slow = (torch.optim.AdamW if kind == "AdamW" else torch.optim.Adam)(
        looped, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01, foreach=False)
    assert fast.param_groups[0]["foreach"] is True
    for _ in range(4):
        for a, b in zip(together, looped):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        fast.step(), slow.step()
    assert all(torch.equal(a, b) for a, b in zip(together, looped))
