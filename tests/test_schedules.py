"""Schedules as pure functions of the step (docs/training.md): learning-rate curves at given steps, the
progressive stages and the stream positions each step reads, and the validation images' writer."""
import math

import pytest
import torch

from interir.config import load_config
from interir.schedules import learning_rate, stage_at, stages, step_positions


def _cfg(*overrides):
    return load_config(None, ["train.optim.lr=1e-3", *overrides])


def test_default_cosine_is_the_closed_form_bit_for_bit():
    cfg = _cfg("train.total_iter=1000")
    assert cfg["train"]["scheduler"]["warmup_iter"] == 0
    for step in (0, 1, 250, 500, 999, 1000, 1200):
        expected = 1e-6 + (1e-3 - 1e-6) * (1 + math.cos(math.pi * min(step, 1000) / 1000)) / 2
        assert learning_rate(step, cfg) == expected, step  # exactly: resuming old runs must not drift


def test_linear_warmup_then_cosine_from_the_end_of_warmup():
    cfg = _cfg("train.total_iter=110", "train.scheduler.warmup_iter=10", "train.scheduler.eta_min=0")
    lr = [learning_rate(s, cfg) for s in range(111)]
    assert lr[0] == pytest.approx(1e-4) and lr[4] == pytest.approx(5e-4) and lr[9] == pytest.approx(1e-3)
    assert lr[10] == pytest.approx(1e-3)  # the cosine starts at the base lr where warmup ends
    assert lr[60] == pytest.approx(5e-4)  # half-way through the 100 cosine steps
    assert lr[110] == pytest.approx(0, abs=1e-12)
    assert lr[:10] == sorted(lr[:10]) and lr[10:] == sorted(lr[10:], reverse=True)


def test_warmup_then_constant():
    cfg = _cfg("train.total_iter=50", "train.scheduler.warmup_iter=4", "train.scheduler.type=constant")
    assert [learning_rate(s, cfg) for s in (0, 1, 3, 4, 49)] == pytest.approx([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3])


def test_multistep_counts_milestones_like_torch_multisteplr():
    cfg = _cfg("train.total_iter=100", "train.scheduler.type=multistep", "train.scheduler.milestones=[30, 60]",
               "train.scheduler.gamma=0.5")
    assert [learning_rate(s, cfg) for s in (0, 29, 30, 59, 60, 99)] == pytest.approx(
        [1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4, 2.5e-4])
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    reference = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[30, 60], gamma=0.5)
    for step in range(100):  # torch's lr of step s is the one after s scheduler.step() calls
        assert learning_rate(step, cfg) == pytest.approx(optimizer.param_groups[0]["lr"]), step
        optimizer.step()
        reference.step()


def test_warmup_then_multistep():
    cfg = _cfg("train.total_iter=100", "train.scheduler.type=multistep", "train.scheduler.milestones=[50]",
               "train.scheduler.gamma=0.1", "train.scheduler.warmup_iter=5")
    assert [learning_rate(s, cfg) for s in (0, 4, 5, 49, 50, 99)] == pytest.approx(
        [2e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])


def test_default_plan_is_the_fixed_batch_order():
    cfg = _cfg("train.total_iter=20", "datasets.train.batch_size_per_gpu=3", "datasets.train.patch_size=64")
    (only,) = stages(cfg)
    assert (only.start, only.iters, only.patch, only.batch) == (0, 20, 64, 3)
    for world in (1, 2, 4):
        for rank in range(world):
            for step in range(25):  # also past the end: a raised total_iter continues the same order
                first = step * 3 * world + rank * 3
                assert step_positions([only], step, rank, world) == range(first, first + 3)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_stage_positions_read_the_stream_once_in_order(world):
    """Every sample of every earlier step (all ranks) comes before a step's first position: no position is
    read twice or skipped when the batch changes between stages."""
    cfg = _cfg("train.total_iter=9", "datasets.train.stages=[[3, 16, 2], [2, 24, 5], [4, 32, 1]]")
    plan = stages(cfg)
    assert [(s.start, s.end, s.patch, s.batch, s.position) for s in plan] == [
        (0, 3, 16, 2, 0), (3, 5, 24, 5, 6), (5, 9, 32, 1, 16)]
    read = [p for step in range(9) for rank in range(world) for p in step_positions(plan, step, rank, world)]
    assert read == list(range((3 * 2 + 2 * 5 + 4 * 1) * world))
    assert [stage_at(plan, s).index for s in range(9)] == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert [len(step_positions(plan, s, 0, world)) for s in range(9)] == [2, 2, 2, 5, 5, 1, 1, 1, 1]


@pytest.mark.parametrize("overrides, message", [
    (["train.scheduler.warmup_iter=-1"], "train.scheduler.warmup_iter must be an integer ≥ 0"),
    (["train.scheduler.warmup_iter=1.5"], "train.scheduler.warmup_iter must be an integer"),
    (["train.scheduler.warmup_iter=10"], "train.scheduler.warmup_iter must be < train.total_iter (10), got 10"),
    (["train.scheduler.type=multistep"], "train.scheduler.milestones must be a non-empty list"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[5, 5]"], "strictly increasing"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[6, 3]"], "strictly increasing"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[3, 10]"], "before train.total_iter (10), got 10"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[0]"], "got 0"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[2.5]"], "integer steps"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[2]", "train.scheduler.warmup_iter=2"],
     "after train.scheduler.warmup_iter (2)"),
    (["train.scheduler.type=multistep", "train.scheduler.milestones=[5]", "train.scheduler.gamma=0"],
     "train.scheduler.gamma must be a finite number > 0 and ≤ 1"),
    (["train.scheduler.gamma=1.5"], "train.scheduler.gamma must be a finite number > 0 and ≤ 1"),
    (["train.scheduler.milestones=[5]"], "train.scheduler.milestones is set but train.scheduler.type is cosine"),
    (["datasets.train.stages=[[4, 32, 2], [5, 48, 1]]"],
     "datasets.train.stages sum to 9 iterations but train.total_iter is 10"),
    (["datasets.train.stages=[[10, 32]]"], "datasets.train.stages[0] must be [iters, patch, batch]"),
    (["datasets.train.stages=[[5, 32, 2], [5, 0, 1]]"], "datasets.train.stages[1] patch must be an integer ≥ 1"),
    (["datasets.train.stages=[[5, 32, 2], [5, 48, 0]]"], "datasets.train.stages[1] batch must be an integer ≥ 1"),
    (["datasets.train.stages=[[0, 32, 2], [10, 48, 1]]"], "datasets.train.stages[0] iters must be an integer ≥ 1"),
    (["datasets.train.stages=[]"], "datasets.train.stages must be a non-empty list"),
    (["datasets.train.stages=5"], "datasets.train.stages must be a non-empty list"),
])
def test_schedule_keys_are_checked_in_one_line_naming_the_key(overrides, message):
    from interir.errors import InterIRError

    with pytest.raises(InterIRError) as info:
        load_config(None, ["train.total_iter=10", *overrides])
    assert message in str(info.value) and "\n" not in str(info.value), str(info.value)


def test_valid_schedule_keys_are_normalised():
    cfg = load_config(None, ["train.total_iter=10", "train.scheduler.type=multistep", "train.scheduler.gamma=1",
                             "train.scheduler.milestones=[4, 8]", "train.scheduler.warmup_iter=3",
                             "datasets.train.stages=[[6, 32, 2], [4, 48, 1]]"])
    assert cfg["train"]["scheduler"] == {"type": "multistep", "eta_min": 1e-6, "warmup_iter": 3,
                                         "milestones": [4, 8], "gamma": 1.0}
    assert cfg["datasets"]["train"]["stages"] == [[6, 32, 2], [4, 48, 1]]


# ------------------------------------------------------------------------------------------- validation images
class FakeWriter:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step, dataformats="CHW"):
        self.images.append((tag, image.clone(), step, dataformats))


def test_write_val_images_puts_input_restored_target_side_by_side():
    from interir.train import write_val_images

    x, r, y = (torch.full((3, 5, 7), v) for v in (0.2, 0.5, 0.8))
    r[0, 0, 0] = 2.0  # out of range: clamped
    writer = FakeWriter()
    write_val_images(writer, 40, [("H+R/0", x, r, y), ("N/0", y, x, r)])
    assert [(tag, step, fmt) for tag, _, step, fmt in writer.images] == [("val/H+R/0", 40, "CHW"),
                                                                        ("val/N/0", 40, "CHW")]
    row = writer.images[0][1]
    assert row.shape == (3, 5, 7 * 3 + 2 * 2)
    torch.testing.assert_close(row[..., 0:7], x)
    torch.testing.assert_close(row[..., 9:16], r.clamp(0, 1))
    torch.testing.assert_close(row[..., 18:25], y)
    assert torch.all(row[..., 7:9] == 1) and torch.all(row[..., 16:18] == 1)  # white gaps


class _Set(torch.utils.data.Dataset):
    def __init__(self, n, h, w, value):
        self.n, self.h, self.w, self.value = n, h, w, value

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        ramp = torch.arange(self.h * self.w, dtype=torch.float32).reshape(1, self.h, self.w) / (self.h * self.w)
        return {"input": (ramp * self.value + i / 10).expand(3, -1, -1).clamp(0, 1),
                "target": ramp.expand(3, -1, -1)}


def test_val_samples_take_centre_crops_from_each_set_in_turn():
    from interir.train import val_samples

    sets = {"A": _Set(3, 300, 280, 0.5), "B": _Set(1, 40, 30, 0.25)}
    model = torch.nn.Identity().train()
    samples = val_samples(model, sets, torch.device("cpu"))
    assert [name for name, *_ in samples] == ["A/0", "B/0", "A/1"]
    name, x, restored, y = samples[0]
    assert x.shape == restored.shape == y.shape == (3, 256, 256)  # at most 256² …
    full = sets["A"][0]
    torch.testing.assert_close(x, full["input"][:, 22:278, 12:268])  # … from the centre
    torch.testing.assert_close(y, full["target"][:, 22:278, 12:268])
    torch.testing.assert_close(restored, x)  # the identity "restores" the crop itself
    assert samples[1][1].shape == (3, 40, 30)  # a smaller image whole
    assert [n for n, *_ in val_samples(model, sets, torch.device("cpu"), max_images=1)] == ["A/0", "B/0"]


def test_write_val_images_into_real_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    from interir.train import write_val_images

    writer = SummaryWriter(str(tmp_path))
    x = torch.rand(3, 16, 12)
    write_val_images(writer, 7, [("N/0", x, x, x)])
    writer.close()
    events = EventAccumulator(str(tmp_path)).Reload()
    (image,) = events.Images("val/N/0")
    assert (image.step, image.width, image.height) == (7, 12 * 3 + 4, 16)


def test_the_yaml_examples_of_docs_training_load(tmp_path):
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[1] / "docs" / "training.md"
    blocks = re.findall(r"```yaml\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert len(blocks) == 4
    for i, block in enumerate(blocks):
        (tmp_path / f"{i}.yml").write_text(block, encoding="utf-8")
        load_config(tmp_path / f"{i}.yml")
    progressive = load_config(Path(__file__).resolve().parents[1] / "configs" / "progressive_small.yml")
    assert [s.patch for s in stages(progressive)] == [64, 96, 128, 192]
    assert progressive["train"]["scheduler"]["warmup_iter"] == 500
