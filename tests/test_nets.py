"""The DSen2 modules: architecture facts and the receptive field the halo relies on."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from s2sr_cloud.bands import NETS, VARIANTS  # noqa: E402
from s2sr_cloud.nets import build_net  # noqa: E402


@pytest.mark.parametrize(("variant", "convs", "radius"), [("dsen2", 14, 14), ("vdsen2", 66, 66)])
@pytest.mark.parametrize("net", ["20", "60"])
def test_architecture(net, variant, convs, radius):
    m = build_net(net, variant)
    layers = m.conv_layers()
    spec, var = NETS[f"net{net}"], VARIANTS[variant]
    assert len(layers) == convs and m.halo == radius == var.receptive_radius
    assert layers[0].in_channels == spec.in_channels and layers[-1].out_channels == spec.out_channels
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in layers)
    assert {c.out_channels for c in layers[:-1]} == {var.features}


def test_receptive_field_is_the_halo():
    """An input change at one pixel moves outputs only within the receptive radius (14 px)."""
    torch.manual_seed(0)
    m = build_net("20").eval()
    with torch.no_grad():
        for p in m.tail.parameters():  # a fresh net starts with a zero last conv: make it see
            p.normal_(0, 0.1)
        x = torch.rand(1, 10, 41, 41)
        y0 = m(x)
        x[0, 3, 20, 20] += 1.0
        diff = (m(x) - y0).abs().amax(dim=(0, 1))
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    assert rows.min() == 20 - 14 and rows.max() == 20 + 14
    assert cols.min() == 20 - 14 and cols.max() == 20 + 14


def test_global_residual():
    """With a zero last convolution the net returns its upsampled LR input bands."""
    m = build_net("60").eval()
    with torch.no_grad():
        m.tail.weight.zero_()
        m.tail.bias.zero_()
        x = torch.rand(2, 12, 16, 16)
        torch.testing.assert_close(m(x), x[:, 10:])
