"""The tolerance rule every fused backend is held to (docs/testing.md), in one place."""
import torch


def assert_within_reference_error(got: torch.Tensor, same_dtype: torch.Tensor, exact: torch.Tensor, floor: float,
                                  what: str = "") -> None:
    """|got − exact|∞ ≤ 2·|same_dtype − exact|∞ + floor.

    got: the fused result; same_dtype: the reference run in got's dtype; exact: the reference in float64;
    floor: a small absolute slack (each test derives it from the magnitude of its terms). Also: got has the
    exact result's shape and the same-dtype reference's dtype, and every element is finite, so an element
    no kernel wrote (outputs are NaN-poisoned in the tests) fails."""
    assert got.shape == exact.shape, f"{what}: shape {tuple(got.shape)} != {tuple(exact.shape)}"
    assert got.dtype == same_dtype.dtype, f"{what}: dtype {got.dtype} != {same_dtype.dtype}"
    assert torch.isfinite(got).all(), f"{what}: non-finite elements (an output element left unwritten?)"
    if not got.numel():
        return
    exact = exact.to(torch.float64).cpu()
    err = (got.to(torch.float64).cpu() - exact).abs().max().item()
    err_ref = (same_dtype.to(torch.float64).cpu() - exact).abs().max().item()
    assert err <= 2 * err_ref + floor, (
        f"{what}: error {err:.3g} > 2 × same-dtype reference error {err_ref:.3g} + floor {floor:.3g}")
