"""Named configurations of InterIR (docs/model.md, "Presets") and its ablation switches: data only."""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    "paper": dict(channels=48, num_blocks=16, expand=8),  # 29.04 M parameters (the paper reports 27 M)
    "small": dict(channels=32, num_blocks=4, expand=8),  # CPU training, the shipped demo model
    "tiny": dict(channels=16, num_blocks=1, expand=8),  # tests
}

# The paper's Table 4 ablation switches; all three off gives a DeepSN-Net-style baseline.
ABLATIONS = ("explainable", "additive_resm", "weighted_dmum")
