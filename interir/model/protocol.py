"""What every network of the zoo offers the commands: the restoration protocol (docs/ops.md, "Adding a model").

A registered network subclasses `RestorationModel` and gives at least `cfg` (a dataclass), `padding_multiple`
and `forward(x, return_stages=False)`; the rest has defaults that say "not applicable":

    forward(x, return_stages=False)    B×C×H×W in [0, 1] → restored; with return_stages, (restored, [stage
                                       images, first to last; the last is the restored image])
    padding_multiple                   side multiple the network pads its input to (tiling aligns to it)
    validate_inputs                    False skips the per-call input check (training data is valid)
    full_precision_layers              layer names an int8 weights file keeps in float16 (`interir pack`)
    step_sizes() / step_labels()       learned step sizes of an unfolded solver, and their names (or None)
    initial_step_size                  their initial value, drawn as a reference line (or None)
    stage_labels(n)                    captions of the n stage images
    stage_text, step_text              one paragraph (HTML) saying what the stages / step sizes are
    explainable_convs()                (name, ExplainableConv) in forward order; [] when there are none
    record_explanations(on)            make those convs keep their last attention and mask
    explanation_group(name)            (file key, block label, conv label) grouping a conv for `explain`
"""
from __future__ import annotations

from typing import Any

import torch.nn as nn

from interir.model.blocks import ExplainableConv


class RestorationModel(nn.Module):
    """Base class of the zoo's networks: the protocol above, with its defaults."""

    cfg: Any
    validate_inputs: bool = True
    # layers kept float16 in an int8 weights file (interir/quantize.py): those whose errors land on the pixels
    full_precision_layers: tuple[str, ...] = ()
    stage_text: str = ""
    step_text: str = ""

    @property
    def padding_multiple(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must say its padding multiple")

    def step_sizes(self) -> list[float] | None:
        return None

    def step_labels(self) -> list[str]:
        return [f"stage {i + 1}" for i in range(len(self.step_sizes() or []))]

    @property
    def initial_step_size(self) -> float | None:
        return None

    def stage_labels(self, count: int) -> list[str]:
        return [f"stage {i + 1}" for i in range(count - 1)] + [f"stage {count} (output)"]

    def explainable_convs(self) -> list[tuple[str, ExplainableConv]]:
        """(name, module) of every ExplainableConv, in forward order."""
        return [(n, mod) for n, mod in self.named_modules() if isinstance(mod, ExplainableConv)]

    def record_explanations(self, enabled: bool = True) -> None:
        """Make every ExplainableConv keep its last attention and mask (see ExplainableConv)."""
        for _, mod in self.explainable_convs():
            mod.record = enabled
            if not enabled:
                mod.last_attention = mod.last_mask = None

    def explanation_group(self, conv_name: str) -> tuple[str, str, str]:
        """(key for file names, block label, conv label) of an explainable conv's module name."""
        parts = conv_name.split(".")
        return parts[0], parts[0], " ".join(p.upper() for p in parts[1:]) or conv_name
