"""Training data: Wald pairs of scenes and the random patch sampler.

Scenes load through :mod:`s2sr_cloud.scenes`; their degradation is :mod:`s2sr_cloud.wald`.
The net input of a pair is built exactly as :func:`s2sr_cloud.sr.super_resolve` builds it at
inference (10 m guides in reference order, LR bands bilinearly upsampled on the pixel-centre
aligned grid, everything divided by ``SCALE``), only on the degraded grid.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bands import NET_INDEX_10M, SCALE, net_spec
from ..errors import InputError
from ..ops import WALD, Degradation, parse_protocol, upsample
from ..scenes import Scene, load_scene
from ..wald import WaldScene, wald_scene

log = logging.getLogger(__name__)


def net_input(ws: WaldScene) -> np.ndarray:
    """The scaled net input (C_in, h, w) on the target grid, as ``super_resolve`` builds it."""
    spec = net_spec(ws.net)
    h, w = ws.target.shape[1:]
    parts = [ws.b10[list(NET_INDEX_10M)], upsample(ws.b20, 2, (h, w))]
    if spec.name == "net60":
        parts.append(upsample(ws.b60, 6, (h, w)))
    x = np.concatenate(parts, axis=0).astype(np.float32)
    return x / np.float32(SCALE)


@dataclass
class Pair:
    """A Wald training pair on the target grid: scaled input, scaled target, valid mask."""

    name: str
    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray


def make_pair(scene: Scene, net: str, op: Degradation = WALD) -> Pair:
    """Degrade ``scene`` for ``net`` with ``op`` and build its scaled (input, target)."""
    ws: WaldScene = wald_scene(scene.b10, scene.b20, scene.b60, net, op)
    name = scene.name if op == WALD else f"{scene.name}~{op.name}"
    return Pair(name, net_input(ws), ws.target / np.float32(SCALE), ws.valid)


#: Range of the Gaussian widths (LR pixels) :func:`random_degradations` draws from: from below the
#: Wald operator's effective width (about 0.29) to well past the Sentinel-2 MTF's (0.45-0.55).
RANDOM_SIGMA = (0.2, 0.8)


def random_degradations(n: int, rng: np.random.Generator) -> list[Degradation]:
    """``n`` degradation operators for randomised-degradation training: the Wald operator, antialiased
    bicubic, then ``n - 2`` Gaussians whose widths are drawn stratified over :data:`RANDOM_SIGMA` (LR
    pixels; one uniform draw in each of ``n - 2`` equal slices, so every part of the range is covered
    whatever the seed).

    Training on several degradations of each scene teaches the net a blur it cannot know exactly
    (the sensor's is none of these kernels), instead of inverting the one operator it was trained on."""
    ops = [WALD, parse_protocol("bicubic")][: max(1, n)]
    lo, hi = RANDOM_SIGMA
    k = max(0, n - 2)
    for i in range(k):
        ops.append(Degradation("gaussian", round(lo + (i + float(rng.random())) * (hi - lo) / k, 3)))
    return ops


def degradations(spec: str, copies: int, seed: int) -> list[Degradation]:
    """The operators training degrades each scene with: ``random`` (:func:`random_degradations`,
    ``copies`` of them, drawn from their own generator seeded by ``seed``, so a resumed run builds
    the same data) or one protocol by name (``wald``, ``bicubic``, ``mtf``, ``gaussian:SIGMA``)."""
    if spec.strip().lower() == "random":
        return random_degradations(copies, np.random.default_rng([seed, 0x5EED]))
    try:
        return [parse_protocol(spec)]
    except ValueError as e:
        raise InputError(f"--degrade: {e}; or random") from None


def phase_shifts(scene: Scene, net: str) -> list[Scene]:
    """The scene and its copies shifted by whole 60 m pixels, one per phase of the Wald grid.

    The Wald degradation groups ``s × s`` pixels of each band (``s`` = 2 for the 20 m net,
    6 for the 60 m net). Dropping ``k`` whole 60 m pixels (``6k`` px at 10 m, ``3k`` at
    20 m) from the top/left keeps the three band grids aligned but moves the degraded
    grid by ``k`` target pixels, so each shift ``k = 0 … s−1`` per axis degrades the same
    observation differently: ``s²`` genuinely different low-resolution inputs for the same
    targets (36 for the 60 m net, whose training data is the scarcest). A shift is skipped
    when the Wald crop (a multiple of ``6·s`` px at 10 m) would keep less than half the
    unshifted scene's area (e.g. 120 px BigEarthNet patches keep 3 × 3 of the 60 m net's phases).
    """
    s = net_spec(net).factor
    m = 6 * s

    def kept(h: int, w: int) -> int:
        return (h // m) * (w // m)

    full = kept(*scene.b10.shape[1:])
    out = []
    for a in range(s):
        for b in range(s):
            if a == b == 0:
                out.append(scene)
                continue
            b10 = scene.b10[:, 6 * a :, 6 * b :]
            if 2 * kept(*b10.shape[1:]) < full:
                continue
            out.append(Scene(f"{scene.name}@{a},{b}", b10, scene.b20[:, 3 * a :, 3 * b :], scene.b60[:, a:, b:], scene.files))
    return out


def make_pairs(scene: Scene, net: str, phases: bool = False, ops: Sequence[Degradation] = (WALD,)) -> list[Pair]:
    """Training pairs of ``scene`` for ``net``: one per operator in ``ops``, for the scene or for each
    of its phases (:func:`phase_shifts`)."""
    scenes = phase_shifts(scene, net) if phases else [scene]
    pairs = []
    for sc in scenes:
        try:  # a phase too small for the net's crop is so under every operator: skipped once
            pairs.extend([make_pair(sc, net, op) for op in ops])
        except InputError:
            if sc is scene:
                raise
    return pairs


def load_pairs(paths: Iterable[Path], net: str, phases: bool = False, ops: Sequence[Degradation] = (WALD,)) -> list[Pair]:
    """The pairs of every scene in ``paths`` (:func:`make_pairs`), as training uses them."""
    return [q for p in paths for q in make_pairs(load_scene(p), net, phases, ops)]


class PatchSampler:
    """Random valid patches with flips/rotations, reproducible from a seeded generator.

    Scenes are drawn with probability proportional to their area (target pixels);
    a patch containing any nodata pixel is redrawn. Scenes smaller than the patch are
    skipped (with a warning).

    ``context`` > 0 gives every input patch ``context`` extra pixels on each side: real
    neighbours where the scene has them, the scene mirrored (symmetric padding) beyond its
    border — exactly what tiled inference feeds the net (a halo of real pixels inside the
    image, symmetric padding at the true image border). The training loop crops the output
    by ``context`` before the loss, so with ``context`` ≥ the receptive radius no output pixel
    that is scored ever sees the convolutions' zero padding, and scenes only as large as
    the patch (e.g. 20 px BigEarthNet targets for the 60 m net) still train the net as it
    is used.

    ``gain_jitter`` > 0 adds radiometric augmentation: every band of a patch is multiplied
    by its own random gain ``exp(U(-j, j))``, the same for the band's LR input and its
    target. It emulates the different levels of a band relative to the others between
    L1C (top of atmosphere) and L2A (surface reflectance), scenes and seasons, so the net
    learns detail relative to each band's own level.
    """

    def __init__(
        self, pairs: Sequence[Pair], patch: int, rng: np.random.Generator, gain_jitter: float = 0.0, context: int = 0
    ) -> None:
        self.patch = patch
        self.context = context
        self.rng = rng
        self.gain_jitter = gain_jitter
        self.pairs = [p for p in pairs if min(p.y.shape[1:]) >= patch]
        small = [p for p in pairs if min(p.y.shape[1:]) < patch]
        if small:
            log.warning(
                "%d of %d training pairs are smaller than the %d px patch on the target grid and are skipped (e.g. %s: %s px)",
                len(small), len(pairs), patch, small[0].name, small[0].y.shape[1:],
            )
        if not self.pairs:
            raise InputError(f"no training scene is large enough for {patch} px patches")
        sizes = np.array([p.y.shape[1] * p.y.shape[2] for p in self.pairs], float)
        self.weights = sizes / sizes.sum()
        c = context
        self._xpad = [np.pad(p.x, ((0, 0), (c, c), (c, c)), mode="symmetric") if c else p.x for p in self.pairs]

    def _one(self) -> tuple[np.ndarray, np.ndarray]:
        k = self.patch
        for _ in range(100):
            i = int(self.rng.choice(len(self.pairs), p=self.weights))
            p = self.pairs[i]
            r = int(self.rng.integers(0, p.y.shape[1] - k + 1))
            c = int(self.rng.integers(0, p.y.shape[2] - k + 1))
            aug = int(self.rng.integers(0, 8))
            if p.valid[r : r + k, c : c + k].all():
                break
        else:
            raise InputError("could not find a patch without nodata in 100 draws")
        m = self.context
        x, y = self._xpad[i][:, r : r + k + 2 * m, c : c + k + 2 * m], p.y[:, r : r + k, c : c + k]
        if aug & 4:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        x, y = np.rot90(x, aug & 3, axes=(1, 2)), np.rot90(y, aug & 3, axes=(1, 2))
        if self.gain_jitter > 0:
            g = np.exp(self.rng.uniform(-self.gain_jitter, self.gain_jitter, x.shape[0])).astype(np.float32)
            x = x * g[:, None, None]
            y = y * g[x.shape[0] - y.shape[0] :, None, None]  # the target bands are the last inputs
        return x, y

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """``n`` patches: inputs (n, C_in, k + 2·context, k + 2·context) and targets (n, C_out, k, k), float32."""
        xs, ys = zip(*(self._one() for _ in range(n)), strict=True)
        return np.ascontiguousarray(np.stack(xs)), np.ascontiguousarray(np.stack(ys))
