"""Training losses: InterIR's L1 + FFT-L1 (the paper's loss, docs/model.md) and DGUNet's multi-stage loss.

    loss_fn = TrainingLoss({"type": "auto", "l1": 1.0, "fft": 0.1}, model_entry("interir"))
    loss = loss_fn(model(x, return_stages=True) if loss_fn.needs_stages else model(x), target)

`auto` takes the loss the model registered with (interir.model.registry); a loss made for one model (DGUNet's
stage-wise loss) refuses the others.
"""
from __future__ import annotations

from typing import Any

import torch

from interir import ops
from interir.errors import InterIRError

# name -> (the model it is made for, or None; whether it takes the stage images)
LOSSES = {"l1_fft": (None, False), "dgunet": ("dgunet", True)}


class TrainingLoss:
    """`l1_fft` = l1·mean|Î − I| + fft·FFT-L1 (FSNet's full-spectrum form), or `dgunet`: DGUNet's multi-stage
    loss (Charbonnier + 0.05·edge on every stage's output). cfg: the train.loss section; entry: the model's
    registry entry."""

    def __init__(self, cfg: dict[str, Any], entry):
        self.kind = cfg.get("type", "auto")
        if self.kind == "auto":
            self.kind = entry.loss
        if self.kind not in LOSSES:
            raise InterIRError(f"train.loss.type must be auto or one of {', '.join(LOSSES)}, got {self.kind!r}")
        owner, self.needs_stages = LOSSES[self.kind]
        if owner is not None and owner != entry.name:
            raise InterIRError(f"train.loss.type {self.kind!r} needs model.name: {owner}")
        self.l1, self.fft = float(cfg.get("l1", 1.0)), float(cfg.get("fft", 0.1))
        if self.kind == "l1_fft" and self.l1 == 0 and self.fft == 0:
            raise InterIRError("train.loss.l1 and train.loss.fft are both 0: the loss would always be 0")

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "dgunet":
            from interir.model.dgunet import dgunet_loss

            return dgunet_loss(output[1], target)
        pred = output.float()
        loss = self.l1 * (pred - target).abs().mean()
        if self.fft:
            loss = loss + self.fft * ops.fft_l1_loss(pred, target)
        return loss
