"""FP32 ONNX → mixed FP16/BF16 ONNX, for strongly typed TensorRT builds.

TensorRT 11 removed the builder flags that let it pick reduced-precision kernels on its
own (``BuilderFlag.FP16``/``BF16``); precision now lives in the graph. This module casts
the compute trunk of a DSen2 graph to the low type and keeps the rest in float32:

* the *trunk* is every node downstream of the first ``Conv`` whose op is in
  :data:`LOWP_OPS`, except the node that produces a graph output;
* graph inputs and outputs stay float32 (the runtime feeds and reads float32);
* so the input slice and the final global-residual ``Add`` stay float32: the
  upsampled LR band is added at full precision, and only the net's correction (a
  small number) carries the low-precision rounding;
* float32 initializers used only by trunk nodes are converted; ``Cast`` nodes are
  inserted on every float edge that crosses the boundary.

Needs the ``onnx`` package (in the ``gpu`` and ``train`` extras).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Ops that may run in low precision (elementwise + convolution).
LOWP_OPS = frozenset({"Conv", "ConvTranspose", "Relu", "LeakyRelu", "PRelu", "Add", "Sub", "Mul", "Div", "Sigmoid", "Concat", "Identity"})
#: ONNX opset that first allows bfloat16 on Conv.
BF16_MIN_OPSET = 22


def _low_type(precision: str) -> int:
    from onnx import TensorProto

    types = {"fp16": TensorProto.FLOAT16, "bf16": TensorProto.BFLOAT16}
    if precision not in types:
        raise ValueError(f"low precision must be fp16 or bf16, not {precision!r}")
    return types[precision]


def to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (uint16), round to nearest even; NaN stays NaN."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
    nan = np.isnan(x)
    out = rounded.astype(np.uint16)
    out[nan] = np.uint16(0x7FC0)
    return out


def from_bf16_bits(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) → float32."""
    return (bits.astype(np.uint32) << np.uint32(16)).view(np.float32)


def _convert_initializer(init: Any, low: int) -> Any:
    from onnx import TensorProto, helper, numpy_helper

    arr = numpy_helper.to_array(init).astype(np.float32)
    if low == TensorProto.FLOAT16:
        return numpy_helper.from_array(arr.astype(np.float16), init.name)
    return helper.make_tensor(init.name, TensorProto.BFLOAT16, arr.shape, to_bf16_bits(arr).tobytes(), raw=True)


def _float_tensors(model: Any) -> set[str]:
    """Names of the float32 tensors of ``model`` (after shape inference)."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    infos = list(g.input) + list(g.output) + list(g.value_info)
    out = {v.name for v in infos if v.type.tensor_type.elem_type == TensorProto.FLOAT}
    out |= {t.name for t in g.initializer if t.data_type == TensorProto.FLOAT}
    for node in g.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    out.add(node.output[0])
    return out


def _trunk(graph: Any) -> set[int]:
    """Indices of the nodes that run in low precision (see the module docstring)."""
    outputs = {o.name for o in graph.output}
    after_conv: set[str] = set()
    trunk: set[int] = set()
    for i, node in enumerate(graph.node):  # ONNX nodes are topologically sorted
        downstream = node.op_type == "Conv" or any(x in after_conv for x in node.input)
        if downstream:
            after_conv.update(node.output)
            if node.op_type in LOWP_OPS and not outputs.intersection(node.output):
                trunk.add(i)
    return trunk


def convert(model: Any, precision: str) -> Any:
    """Return a copy of ``model`` with its trunk in ``precision`` (``fp16`` or ``bf16``).

    Args:
        model: an ``onnx.ModelProto`` with float32 inputs and outputs.
        precision: ``fp16`` or ``bf16``.

    Returns:
        The converted ``onnx.ModelProto`` (checked with ``onnx.checker``); for bf16 its
        default-domain opset is raised to :data:`BF16_MIN_OPSET`.
    """
    import onnx
    from onnx import TensorProto, helper

    low = _low_type(precision)
    m = onnx.ModelProto()
    m.CopyFrom(model)
    if precision == "bf16":
        for op in m.opset_import:
            if op.domain in ("", "ai.onnx") and op.version < BF16_MIN_OPSET:
                op.version = BF16_MIN_OPSET
    floats = _float_tensors(m)
    g = m.graph
    trunk = _trunk(g)
    low_names = {o for i in trunk for o in g.node[i].output if o in floats}
    inits = {t.name: t for t in g.initializer}
    users: dict[str, set[bool]] = {}
    for i, node in enumerate(g.node):
        for x in node.input:
            users.setdefault(x, set()).add(i in trunk)
    casts: dict[tuple[str, int], str] = {}
    new_nodes: list[Any] = []

    def cast(name: str, to: int) -> str:
        key = (name, to)
        if key not in casts:
            casts[key] = f"{name}__to_{'low' if to == low else 'f32'}"
            new_nodes.append(helper.make_node("Cast", [name], [casts[key]], to=to, name=f"cast_{casts[key]}"))
        return casts[key]

    for i, node in enumerate(g.node):
        if node.op_type == "Constant" or i not in trunk:
            for j, x in enumerate(node.input):
                if x in low_names:
                    node.input[j] = cast(x, TensorProto.FLOAT)
            new_nodes.append(node)
            continue
        for j, x in enumerate(node.input):
            if x not in floats or x in low_names:
                continue
            if x in inits and users.get(x) == {True}:
                if inits[x].data_type == TensorProto.FLOAT:
                    inits[x].CopyFrom(_convert_initializer(inits[x], low))
            else:
                node.input[j] = cast(x, low)
        new_nodes.append(node)
    for out in g.output:  # a graph output produced by a trunk node would need a cast
        if out.name in low_names:
            raise ValueError(f"graph output {out.name} is produced in low precision")
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]  # stale float32 annotations; the checker re-infers them
    onnx.checker.check_model(m, full_check=True)
    log.debug("converted %d of %d nodes to %s (%d casts)", len(trunk), len(new_nodes) - len(casts), precision, len(casts))
    return m
