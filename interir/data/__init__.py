"""Data for InterIR: degradation synthesis (docs/data.md), image files, datasets; `interir synth` lives in synth.py.

    from interir.data.degrade import degrade, sample_levels, COMBINATIONS
    from interir.data import read_image, PairedFolderDataset, load_synthetic_testset

(`interir.data.degrade` stays the module: the function is not re-exported here, so the two never shadow
each other.)
"""
from interir.data.datasets import (MultiDegradationDataset, PairedFolderDataset, load_synthetic_testset,
                                   read_manifest)
from interir.data.degrade import COMBINATIONS, GENERATOR_VERSION, LEVEL_MAX, degrade_combo, parse_combo, sample_levels
from interir.data.imageio import list_images, load_image, read_image, write_image

__all__ = ["COMBINATIONS", "GENERATOR_VERSION", "LEVEL_MAX", "MultiDegradationDataset", "PairedFolderDataset",
           "degrade_combo", "list_images", "load_image", "load_synthetic_testset", "parse_combo", "read_image",
           "read_manifest", "sample_levels", "write_image"]
