"""interir.tiling: tiled inference equals untiled inference for local networks (overlap ≥ receptive-field
radius), differs when the overlap is too small, and approximates InterIR (which has global operations)."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import interir
from tests.conftest import wake_up
from interir.model import RestorationModel
from interir.tiling import axis_weights, model_multiple, pad_to_multiple, restore_tiled, tile_starts


pytestmark = pytest.mark.usefixtures("one_thread")


def local_net(depth: int, channels: int = 6) -> nn.Module:
    """`depth` 3×3 convs (zero padding) with nonlinearities: output depends on inputs within radius `depth`."""
    layers, cin = [], 3
    for i in range(depth):
        cout = 3 if i == depth - 1 else channels
        layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.Tanh()]
        cin = cout
    return nn.Sequential(*layers[:-1]).eval()


class CellNet(RestorationModel):
    """A local network on 4×4 cells like InterIR's Down/Up path: pad to a multiple of 4 (reflect), PixelUnshuffle,
    two 3×3 convs at 1/4 resolution, PixelShuffle, crop. Its pixel receptive-field radius is below 4·(2 + 1),
    and tiles must start on the 4×4 grid to match the untiled output. It declares its padding multiple as the
    zoo's networks do (interir.model.protocol)."""

    padding_multiple = 4

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.PixelUnshuffle(4), nn.Conv2d(48, 24, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(24, 48, 3, padding=1), nn.PixelShuffle(4))

    def forward(self, x):
        h, w = x.shape[-2:]
        return x + self.body(pad_to_multiple(x, 4))[..., :h, :w]


@pytest.mark.parametrize("h, w, tile, depth", [(101, 77, 32, 3), (67, 130, 40, 5), (45, 200, 24, 2), (64, 64, 28, 4)])
def test_tiled_equals_untiled_for_local_model(h, w, tile, depth):
    net = local_net(depth)
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        ref = net(x)
    for overlap in (depth, depth + 3):
        if tile <= 3 * overlap:
            continue
        y = restore_tiled(net, x, tile=tile, overlap=overlap)
        assert y.shape == ref.shape
        assert (y - ref).abs().max().item() < 1e-4, (overlap, (y - ref).abs().max().item())


def test_overlap_below_receptive_field_differs():
    depth = 5
    net = local_net(depth)
    x = torch.rand(1, 3, 90, 83)
    with torch.no_grad():
        ref = net(x)
    assert (restore_tiled(net, x, tile=36, overlap=depth) - ref).abs().max().item() < 1e-4
    err = (restore_tiled(net, x, tile=36, overlap=depth - 2) - ref).abs().max().item()
    assert err > 1e-3, err  # the test above can fail: too little context shows


@pytest.mark.parametrize("h, w", [(97, 131), (64, 150), (33, 70)])
def test_tiles_follow_the_model_cell_grid(h, w):
    """Odd sizes: the image is padded like the model pads it and tiles start on multiples of 4."""
    net = CellNet().eval()
    assert model_multiple(net) == 4
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        ref = net(x)
    y = restore_tiled(net, x, tile=48, overlap=12)  # radius < 4·(2+1) = 12
    assert (y - ref).abs().max().item() < 1e-4


def test_starts_cover_align_and_share_three_overlaps():
    for length, tile, overlap, mult in [(4000, 1024, 32, 4), (3000, 512, 32, 4), (101, 32, 3, 1), (52, 48, 0, 4),
                                        (1000, 100, 33, 1)]:
        starts = tile_starts(length, tile, overlap, mult)
        assert starts[0] == 0 and starts[-1] + tile == length
        assert all(s % mult == 0 for s in starts)
        assert all(b - a <= tile - 3 * overlap for a, b in zip(starts, starts[1:]))
        assert all(b > a for a, b in zip(starts, starts[1:]))
        ws = axis_weights(length, starts, tile, overlap)
        total = torch.zeros(length, dtype=torch.float64)
        for s, wt in zip(starts, ws):
            assert (wt >= 0).all()
            if overlap and len(starts) > 1:  # context pixels at inner edges carry no weight
                if s > 0:
                    assert (wt[:overlap] == 0).all()
                if s + tile < length:
                    assert (wt[-overlap:] == 0).all()
            total[s:s + tile] += wt
        assert torch.allclose(total, torch.ones(length, dtype=torch.float64))
    assert tile_starts(100, 128, 32, 4) == [0]


def test_image_smaller_than_tile_is_one_forward():
    net = local_net(3)
    x = torch.rand(1, 3, 40, 50)
    with torch.no_grad():
        ref = net(x)
    assert torch.equal(restore_tiled(net, x, tile=64, overlap=8), ref)
    assert torch.equal(restore_tiled(net, x, tile=0, overlap=8), ref)


def test_bad_arguments():
    net = CellNet().eval()
    x = torch.rand(1, 3, 100, 100)
    with pytest.raises(ValueError, match="multiple of 4"):
        restore_tiled(net, x, tile=50, overlap=4)
    with pytest.raises(ValueError, match="too small"):
        restore_tiled(net, x, tile=32, overlap=10)
    with pytest.raises(ValueError, match="1×C×H×W"):
        restore_tiled(net, torch.rand(2, 3, 100, 100), tile=32, overlap=4)
    with pytest.raises(ValueError, match="non-negative"):
        restore_tiled(net, x, tile=32, overlap=-1)


def test_interir_tiled_is_a_close_approximation():
    """InterIR has global operations (P1/P2 over whole rows/columns, channel attention, pooled masks), so tiles
    differ from the whole image; the result must still be finite, the right shape and close to untiled."""
    from skimage import data

    model = wake_up(interir.build_model("tiny")).eval()  # β, γ ≠ 0: every EPBlock (and its global pooling) acts
    img = torch.from_numpy(data.astronaut()[200:296, 180:308].copy()).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref = model(img)
    y = restore_tiled(model, img, tile=64, overlap=8)
    assert y.shape == ref.shape and torch.isfinite(y).all()
    psnr = 10 * math.log10(1 / F.mse_loss(y.clamp(0, 1), ref.clamp(0, 1)).item())
    print(f"tiny InterIR, tile 64 / overlap 8 vs untiled: PSNR {psnr:.2f} dB")
    assert psnr > 25, psnr
