"""The standard-dose predictor (seed 000's augmentation experiment): shapes, residual input, objective,
gradient, one training step, round trip."""

from __future__ import annotations

import pytest
import torch

from vce_core.errors import VCEInputError
from vce_core.losses import l1_loss, ssim_loss
from vce_core.models import build_model
from vce_core.models.sd_predictor import SDPredictorUNet

SMALL = {"widths": [4, 8, 8]}


@pytest.mark.parametrize(
    ("spatial_dims", "in_slices", "out_channels", "spatial"),
    [(2, 3, 1, (16, 20)), (2, 1, 1, (8, 12)), (2, 3, 3, (16, 16)), (3, 1, 1, (8, 8, 12))],
)
def test_shapes(spatial_dims: int, in_slices: int, out_channels: int, spatial: tuple[int, ...]) -> None:
    model = build_model(
        "sd_predictor_unet",
        spatial_dims=spatial_dims,
        in_slices=in_slices,
        out_channels=out_channels,
        **SMALL,
    )
    x = torch.randn(2, 2 * in_slices, *spatial)
    assert model(x).shape == (2, out_channels, *spatial)
    with pytest.raises(VCEInputError, match="multiple of 4"):
        model(torch.randn(2, 2 * in_slices, *(s + 2 for s in spatial)))
    with pytest.raises(VCEInputError, match="shape"):
        model(torch.randn(2, 3 * in_slices, *spatial))


def test_the_residual_input_is_the_low_dose_centre_slice() -> None:
    """With a zero head the output is exactly the residual input's centre slice (or every slice)."""
    x = torch.randn(1, 6, 16, 16)
    for out_channels, expected in ((1, x[:, 4:5]), (3, x[:, 3:6])):
        model = SDPredictorUNet(in_slices=3, out_channels=out_channels, residual_input=1, **SMALL).eval()
        torch.nn.init.zeros_(model.head.weight)
        torch.nn.init.zeros_(model.head.bias)
        torch.testing.assert_close(model(x), expected)
    direct = SDPredictorUNet(residual_input=None, **SMALL).eval()
    torch.nn.init.zeros_(direct.head.weight)
    torch.nn.init.zeros_(direct.head.bias)
    assert direct(x).abs().max() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"widths": [8]}, "two levels"),
        ({"out_channels": 2}, "out_channels"),
        ({"residual_input": 2}, "residual_input"),
        ({"in_slices": 0}, "in_slices"),
        ({"norm": "layer"}, "normalisation"),
    ],
)
def test_bad_arguments_are_input_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(VCEInputError, match=message):
        SDPredictorUNet(**{**SMALL, **kwargs})


def test_gradient_reaches_every_parameter(grads_reach_every_parameter) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("sd_predictor_unet", **SMALL)
    x, target = torch.randn(2, 6, 16, 16), torch.randn(2, 1, 16, 16)
    grads_reach_every_parameter(model, lambda m: (m(x) - target).pow(2).mean())


def _config(**extra: object) -> dict:
    return {
        "inputs": ["native", "low_dose@0.33"],
        "mode": "2.5d",
        "context": 1,
        "generator": "sd_predictor_unet",
        "generator_kwargs": SMALL,
        "critic": "",
        "lr_g": 1e-3,
        "betas": [0.9, 0.999],
        **extra,
    }


def test_the_loss_is_weighted_l1_plus_ssim(tiny_trainer) -> None:  # noqa: ANN001
    trainer = tiny_trainer(_config(loss_weights={"l1": 2.0, "ssim": 0.5}))
    assert trainer.objective.name == "sd_predictor" and not trainer.nets
    batch = trainer.next_batch()
    assert batch["inputs"].shape[1] == 6  # two inputs of three slices
    pred = trainer.generator(batch["inputs"])
    loss, terms = trainer.objective.losses(batch, pred)
    l1, ssim = l1_loss(pred, batch["target"]), ssim_loss(pred, batch["target"], data_range=1.0)
    torch.testing.assert_close(loss, 2.0 * l1 + 0.5 * ssim)
    assert terms["l1"] == pytest.approx(l1.item()) and terms["ssim_loss"] == pytest.approx(ssim.item())


def test_one_step_lowers_the_loss(tiny_trainer, step_lowers_loss) -> None:  # noqa: ANN001
    trainer = tiny_trainer(_config())
    step_lowers_loss(trainer, lambda t, g, b: t.objective.losses(b, g(b["inputs"]))[0])


def test_save_load_round_trip(round_trip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("sd_predictor_unet", **SMALL)
    model(torch.randn(2, 6, 16, 16))  # batch-norm running statistics move away from their defaults
    round_trip("sd_predictor_unet", model, torch.randn(1, 6, 16, 16), data_mode="2.5d", context=1)
