"""Training losses: InterIR's L1 + FFT-L1 (the paper's loss) and DGUNet's multi-stage loss.

    loss_fn = TrainingLoss({"type": "auto", "l1": 1.0, "fft": 0.1}, model_name="interir")
    loss = loss_fn(model_output, target)
"""
from __future__ import annotations

from typing import Any

import torch

from interir import ops
from interir.errors import InterIRError


class TrainingLoss:
    """`l1_fft` = l1·mean|Î − I| + fft·FFT-L1 (FSNet's full-spectrum form, docs/model.md), or DGUNet's
    multi-stage loss (Charbonnier + 0.05·edge on every stage's output); `auto` picks the model's own."""

    def __init__(self, cfg: dict[str, Any], model_name: str):
        self.kind = cfg.get("type", "auto")
        if self.kind == "auto":
            self.kind = "dgunet" if model_name == "dgunet" else "l1_fft"
        if self.kind not in ("l1_fft", "dgunet"):
            raise InterIRError(f"train.loss.type must be 'auto', 'l1_fft' or 'dgunet', got {self.kind!r}")
        if self.kind == "dgunet" and model_name != "dgunet":
            raise InterIRError("train.loss.type 'dgunet' needs model.name: dgunet")
        self.l1, self.fft = float(cfg.get("l1", 1.0)), float(cfg.get("fft", 0.1))
        if self.kind == "l1_fft" and self.l1 == 0 and self.fft == 0:
            raise InterIRError("train.loss.l1 and train.loss.fft are both 0: the loss would always be 0")
        self.needs_stages = self.kind == "dgunet"

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        if self.kind == "dgunet":
            from interir.model.dgunet import dgunet_loss

            return dgunet_loss(output[1], target)
        pred = output.float()
        loss = self.l1 * (pred - target).abs().mean()
        if self.fft:
            loss = loss + self.fft * ops.fft_l1_loss(pred, target)
        return loss
