"""Seed ensemble of the low-dose generator's learned T1 map (our option, not seed 000's).

Several :class:`~vce_core.models.ld_cgan.LowDoseGenerator` runs of one recipe that differ only in their
seed (``base="physics"``, ``learn_t1``, ``texture_sigma > 0``) disagree most on the learned native-T1 map,
which sets the enhancement, and that disagreement moves the lesion error from run to run. ``T1MapEnsemble``
averages the members' T1 log maps and adds the physics base with that mean map to the *first* member's
texture (its high-passed heads): averaging the textures as well would shrink the synthetic noise by up to
√K, which is what the NP loss exists to keep. Cost: K generator passes per slice.

Built from trained checkpoints with :func:`assemble` (``python -m vce_core.models.ld_cgan_ensemble``); its
card's ``config`` is ``{"members": K, **the members' config}``, its weights the first member's, then the
others' under ``others.<i>.``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from vce_core.errors import VCEInputError
from vce_core.models import register_model
from vce_core.models.blocks import positive_int
from vce_core.models.ld_cgan import LowDoseGenerator

__all__ = ["T1MapEnsemble", "assemble"]

MEMBER_MODEL = "ld_cgan_generator"


@register_model("ld_cgan_t1_ensemble")
class T1MapEnsemble(LowDoseGenerator):
    """``members`` low-dose generators built with the same ``generator_kwargs``: the first is this module
    itself (its texture heads and its own T1 map), the others are ``others``; the T1 map is the mean of
    all members' log maps, every member seeing the same noise image. Inputs and outputs are
    :meth:`LowDoseGenerator.forward`'s.
    """

    def __init__(self, members: int = 3, **generator_kwargs: Any):
        positive_int("members", members)
        if members < 2:
            raise VCEInputError(f"an ensemble of {members} member", expected="at least 2 members")
        super().__init__(**generator_kwargs)
        if self.base != "physics" or not self.learn_t1 or self.texture_sigma <= 0:
            raise VCEInputError(
                "the members of a T1-map ensemble need base physics, learn_t1 and texture_sigma > 0",
                expected="generator_kwargs of the default recipe (their output is texture + physics base)",
            )
        self.others = nn.ModuleList(LowDoseGenerator(**generator_kwargs) for _ in range(members - 1))
        self.config = {"members": members, **self.config}

    def _learned_t1(self, h: Tensor, field_strength: Tensor, inputs: tuple[Any, ...]) -> Tensor | None:
        own = super()._learned_t1(h, field_strength, inputs)
        logs = [own, *(member._parts(inputs)[1] for member in self.others)]
        return torch.stack(logs).mean(dim=0)


def _digest(folder: Path) -> str:
    from vce_core.checkpoint import WEIGHTS_FILE

    return hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()


def assemble(
    members: Sequence[str | PathLike], out: str | PathLike, *, name: str, display_name: str = ""
) -> Path:
    """Write the checkpoint of a :class:`T1MapEnsemble` of the checkpoints ``members`` to ``out``.

    ``out`` must be new (or empty), so that no checkpoint, a member's included, is overwritten. The
    members must be low-dose generators with one ``config`` (the same architecture; seeds differ)
    and the same input handling (``data_mode``, ``context``, ``normalization``): VCEInputError naming the
    first that differs. The card is the first member's with the ensemble's name, model and config; it
    records the members (name, folder, weights SHA-256) under ``training.ensemble_of`` and drops the first
    member's ``held_out`` figures and ``default`` mark (the ensemble has to be evaluated on its own).
    """
    from vce_core.checkpoint import read_card, read_weights, write_checkpoint

    folders = [Path(m) for m in members]
    if Path(out).exists() and any(Path(out).iterdir()):
        raise VCEInputError(
            "the output folder exists and is not empty", path=out, expected="a new folder for the ensemble"
        )
    if len(folders) < 2:
        raise VCEInputError(
            f"{len(folders)} member checkpoint given", expected="at least 2 checkpoint folders"
        )
    cards = [read_card(f) for f in folders]
    first = cards[0]
    for folder, card in zip(folders, cards, strict=True):
        if card.model != MEMBER_MODEL:
            raise VCEInputError(
                f"the checkpoint's model is {card.model!r}",
                path=folder,
                expected=f"{MEMBER_MODEL} checkpoints",
            )
        for key in ("config", "data_mode", "context", "normalization"):
            if card[key] != first[key]:
                raise VCEInputError(
                    f"its {key} differs from that of {folders[0]}",
                    path=folder,
                    expected="runs of one recipe that differ only in their seed",
                )
    model = T1MapEnsemble(members=len(folders), **first.config)  # checks the members' options
    state = dict(read_weights(folders[0]))
    for i, folder in enumerate(folders[1:]):
        state.update({f"others.{i}.{k}": v for k, v in read_weights(folder).items()})
    model.load_state_dict(state, strict=True)
    ensemble_of = [
        {
            "name": c.name,
            "folder": str(f),
            "weights_sha256": _digest(f),
            "seed": c.training.get("config", {}).get("seed"),
        }
        for f, c in zip(folders, cards, strict=True)
    ]
    card = first.with_changes(
        name=name,
        display_name=display_name or name,
        model="ld_cgan_t1_ensemble",
        config=model.config,
        training={**first.training, "ensemble_of": ensemble_of},
        held_out=None,
        default=False,
    )
    return write_checkpoint(out, model.state_dict(), card)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vce_core.models.ld_cgan_ensemble",
        description="Assemble a T1-map seed ensemble from low-dose generator checkpoints of one recipe.",
    )
    parser.add_argument("--members", nargs="+", required=True, help="checkpoint folders (first: the texture)")
    parser.add_argument("--out", required=True, help="new checkpoint folder")
    parser.add_argument("--name", required=True, help="the ensemble's name (card)")
    parser.add_argument("--display-name", default="", help="label in reports (default: the name)")
    args = parser.parse_args(argv)
    try:
        path = assemble(args.members, args.out, name=args.name, display_name=args.display_name)
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
