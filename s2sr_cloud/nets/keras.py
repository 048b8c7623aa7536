"""Import the original DSen2 Keras weights (lanha/DSen2 ``.hdf5``, Keras 2 layout).

In those files every Conv2D layer is a group ``model_weights/<layer>/<layer>/`` holding
``kernel:0`` (kh, kw, in, out: HWIO) and ``bias:0``; the root attribute ``layer_names``
gives the layer order. The reference model has the same layer sequence as
:class:`~s2sr_cloud.nets.model.DSen2` (first conv, d residual blocks of two convs, last
conv) and feeds the 10 m bands as B4, B3, B2, B8, which is this package's channel order,
so the kernels only need the HWIO → OIHW transpose.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointMismatch, ModelError
from .model import DSen2, build_net


def _names(attr: Any) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in attr]


def read_keras_convs(path: str | os.PathLike[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel HWIO, bias) of every layer with weights, in model order."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelError(f"cannot open {path} as HDF5: {err}") from err
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        if "layer_names" not in root.attrs:
            raise ModelError(f"{path}: no 'layer_names' attribute; not a Keras 2 weights file")
        convs = []
        for layer in _names(root.attrs["layer_names"]):
            g = root[layer]
            wnames = _names(g.attrs.get("weight_names", []))
            if not wnames:
                continue
            arrays = {n.split("/")[-1].split(":")[0]: np.asarray(g[n]) for n in wnames}
            if set(arrays) != {"kernel", "bias"}:
                raise ModelError(f"{path}: layer {layer!r} has weights {sorted(arrays)}; expected kernel and bias")
            convs.append((arrays["kernel"], arrays["bias"]))
    return convs


def import_keras_weights(path: str | os.PathLike[str], net: str, variant: str = "dsen2") -> DSen2:
    """A :class:`DSen2` module carrying the weights of a Keras ``.hdf5`` file."""
    model = build_net(net, variant)
    layers = model.conv_layers()
    convs = read_keras_convs(path)
    if len(convs) != len(layers):
        raise CheckpointMismatch(
            f"{path} has {len(convs)} conv layers; a {variant} {model.spec.name} net has {len(layers)} "
            "(wrong --net or --variant?)"
        )
    with torch.no_grad():
        for i, ((k, b), conv) in enumerate(zip(convs, layers, strict=True)):
            w = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))).float()
            if w.shape != conv.weight.shape or b.shape != tuple(conv.bias.shape):
                raise CheckpointMismatch(
                    f"{path}: layer {i} kernel {k.shape} (HWIO) does not fit {tuple(conv.weight.shape)} "
                    f"(OIHW) of a {variant} {model.spec.name} net (wrong --net or --variant?)"
                )
            conv.weight.copy_(w)
            conv.bias.copy_(torch.from_numpy(b).float())
    return model.eval()
