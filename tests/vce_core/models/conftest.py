"""Fixtures of the virtual-contrast model tests: tiny cases with T2/FLAIR/ADC, a tiny trainer, and checks
every model must pass (a gradient reaches every parameter, one training step lowers the loss, the
checkpoint round trip)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from support import write_contrast_cases, write_contrast_model

SHAPE = (32, 32, 12)


@pytest.fixture(scope="session")
def contrast_cases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three tiny cases (32×32×12) with T2, FLAIR and ADC."""
    return write_contrast_cases(tmp_path_factory.mktemp("vc_cases"), 3, shape=SHAPE)


@pytest.fixture(autouse=True)
def _restore_threads() -> Any:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_trainer(contrast_cases: list[Path], tmp_path: Path) -> Callable[..., Any]:
    """``tiny_trainer(config)``: a :class:`vce_core.train.Trainer` of a virtual-contrast config on the tiny
    cases (two training cases, one validation case), one thread, no EMA, 24² crops."""
    from vce_core.train import Trainer
    from vce_core.train_config import config_from_dict

    def build(config: dict[str, Any], overrides: tuple[str, ...] = ()) -> Any:
        base = {
            "name": "tiny-vc",
            "task": "virtual_contrast",
            "data": [str(f) for f in contrast_cases[:2]],
            "val_data": [str(contrast_cases[2])],
            "crop": 24,
            "batch_size": 2,
            "iterations": 2,
            "val_every": 0,
            "val_slices": 2,
            "ckpt_every": 0,
            "log_every": 1,
            "threads": 1,
            "ema_decay": 0.0,
            "cache_dtype": "float32",
            "flips": False,
        }
        return Trainer(config_from_dict({**base, **config}, overrides), run_dir=tmp_path / "run")

    return build


@pytest.fixture
def grads_reach_every_parameter() -> Callable[[nn.Module, Callable[[nn.Module], torch.Tensor]], None]:
    """``check(model, loss_of)``: backpropagate ``loss_of(model)`` and assert every parameter got a finite,
    non-zero gradient (names of the ones that did not are reported)."""

    def check(model: nn.Module, loss_of: Callable[[nn.Module], torch.Tensor]) -> None:
        model.zero_grad(set_to_none=True)
        loss_of(model).backward()
        dead = [
            name
            for name, p in model.named_parameters()
            if p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0
        ]
        assert not dead, f"no gradient reaches {dead}"

    return check


@pytest.fixture
def step_lowers_loss() -> Callable[..., tuple[float, float]]:
    """``check(trainer, loss_of)``: one :meth:`Trainer.iteration` on a fixed batch; ``loss_of(trainer,
    generator, batch)`` is the generator's loss (with the networks as they are after the iteration, e.g.
    the discriminator after its own step). Asserts the loss of the updated generator is below that of the
    generator before the step; returns ``(before, after)``."""

    def check(trainer: Any, loss_of: Callable[[Any, nn.Module, dict], torch.Tensor]) -> tuple[float, float]:
        torch.manual_seed(0)
        batch = trainer.next_batch()
        trainer.next_batch = lambda: batch
        old = copy.deepcopy(trainer.generator)
        trainer.iteration()
        torch.manual_seed(1)
        with torch.no_grad():  # a loss value, no graph
            before = float(loss_of(trainer, old, batch))
        torch.manual_seed(1)
        with torch.no_grad():
            after = float(loss_of(trainer, trainer.generator, batch))
        assert after < before, (before, after)
        return before, after

    return check


@pytest.fixture
def round_trip(tmp_path: Path) -> Callable[..., None]:
    """``check(model, inputs, **card)``: write the model as a checkpoint, rebuild it with
    :meth:`vce_core.synthesis.Synthesizer.from_checkpoint` and compare the outputs on ``inputs``."""
    from vce_core.models import build_model
    from vce_core.synthesis import Synthesizer

    def check(name: str, model: nn.Module, inputs: torch.Tensor, **card: Any) -> None:
        names = [f"in{m}" for m in range(model.config["in_modalities"])]
        folder = write_contrast_model(
            tmp_path / "ckpt", name, model, **{"name": "rt", "inputs": names, **card}
        )
        synth = Synthesizer.from_checkpoint(folder, device="cpu")
        assert type(synth.model) is type(build_model(name, **model.config))
        with torch.no_grad():
            torch.testing.assert_close(synth.model(inputs), model(inputs))

    return check
