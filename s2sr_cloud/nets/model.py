"""DSen2 network (Lanaras et al. 2018) in PyTorch.

Architecture, as in the reference: the input channels (10 m guides in B4, B3, B2, B8
order, then the LR bands upsampled to 10 m) go through conv3x3(C_in→f)+ReLU, then ``d``
residual blocks ``x + 0.1·conv(relu(conv(x)))``, then conv3x3(f→C_out), and the
upsampled LR bands of the output are added (global residual). All convolutions are 3x3,
"same" zero padding, with bias. Input and output are DN / 2000.
"""

from __future__ import annotations

import torch
from torch import nn

from ..bands import NetSpec, VariantSpec, net_spec, variant_spec


class ResBlock(nn.Module):
    """``x + scale · conv2(relu(conv1(x)))``."""

    def __init__(self, features: int, scale: float = 0.1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:  # folded into conv2 (:func:`fold_residual_scale`): one multiply less
            return x + self.conv2(torch.relu(self.conv1(x)))
        return x + self.conv2(torch.relu(self.conv1(x))) * self.scale


class DSen2(nn.Module):
    """One DSen2 net (20 m or 60 m; DSen2 or VDSen2 variant)."""

    def __init__(self, net: NetSpec, variant: VariantSpec) -> None:
        super().__init__()
        self.spec = net
        self.variant = variant
        f = variant.features
        self.head = nn.Conv2d(net.in_channels, f, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(f) for _ in range(variant.depth)])
        self.tail = nn.Conv2d(f, net.out_channels, 3, padding=1)
        self._res0 = net.in_channels - net.out_channels
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.head(x))
        y = self.blocks(y)
        y = self.tail(y)
        return y + x[:, self._res0 :]

    @property
    def halo(self) -> int:
        return self.variant.receptive_radius

    def conv_layers(self) -> list[nn.Conv2d]:
        """The convolutions in the reference (Keras) layer order."""
        convs: list[nn.Conv2d] = [self.head]
        for b in self.blocks:
            convs += [b.conv1, b.conv2]
        convs.append(self.tail)
        return convs


def fold_residual_scale(model: DSen2) -> DSen2:
    """A copy of ``model`` for inference with each block's ``× scale`` folded into its second conv
    (weights and bias times the scale; the same function up to float rounding, one elementwise
    pass less per block). The original is untouched, so training and checkpoints keep the
    reference layout (the fold is done at load, never saved)."""
    import copy

    folded = copy.deepcopy(model)
    with torch.no_grad():
        for b in folded.blocks:
            if b.scale != 1.0:
                b.conv2.weight.mul_(b.scale)
                b.conv2.bias.mul_(b.scale)
                b.scale = 1.0
    return folded


def build_net(net: str, variant: str = "dsen2") -> DSen2:
    """A freshly initialised net: ``build_net("20", "dsen2")``."""
    return DSen2(net_spec(net), variant_spec(variant))


class TorchRunner:
    """A :class:`~s2sr_cloud.sr.Runner` over a PyTorch module (reference and training)."""

    backend = "torch-cpu"

    def __init__(self, model: DSen2, device: str = "cpu", *, name: str | None = None, checkpoint_sha256: str | None = None) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.net = model.spec.name
        self.halo = model.halo
        self.backend = f"torch-{device}"
        self.model_info = {
            "name": name or f"{self.net}_{model.variant.name}", "net": self.net, "variant": model.variant.name,
            "checkpoint_sha256": checkpoint_sha256, "onnx_sha256": None, "precision": "fp32",
            "backend": self.backend,
        }

    @torch.no_grad()
    def __call__(self, x):  # type: ignore[no-untyped-def]
        t = torch.from_numpy(x).to(self.device)
        return self.model(t).float().cpu().numpy()
