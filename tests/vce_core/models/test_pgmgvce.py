"""PGMGVCE (seed 002): modality weights, the generator's composition, LSGAN + GP, training, round trip."""

from __future__ import annotations

import pytest
import torch

from vce_core.losses import gradient_penalty, pixelwise_gradient_loss
from vce_core.models import build_model
from vce_core.models.pgmgvce import ModalityWeights

SMALL = {"width": 4}
CRITIC = {"base_channels": 4, "layers": 4, "strided": 2}


def test_modality_weights_are_a_scaled_softmax() -> None:
    weights = ModalityWeights(2)
    torch.testing.assert_close(weights.weights(), torch.ones(2))  # equal contributions at start
    with torch.no_grad():
        weights.logits.copy_(torch.tensor([1.0, -0.5]))
    e = torch.exp(torch.tensor([1.0, -0.5]))
    expected = 2 * e / e.sum()
    torch.testing.assert_close(weights.weights(), expected)
    a, b = torch.ones(1, 3, 2, 2), 2 * torch.ones(1, 3, 2, 2)
    out = weights([a, b])
    torch.testing.assert_close(out[0], expected[0] * a)
    torch.testing.assert_close(out[1], expected[1] * b)


def test_generator_composition() -> None:
    """Per-modality encoders → integration g → pathways on g + M·α_m·f_m → fusion of [g, paths] → decoder."""
    torch.manual_seed(0)
    model = build_model("pgmgvce_generator", **SMALL).eval()
    with torch.no_grad():
        model.modality_weights.logits.copy_(torch.tensor([0.3, -0.2]))
    x = torch.randn(2, 2, 16, 16)
    with torch.no_grad():
        f1, f2 = model.encoders[0](x[:, :1]), model.encoders[1](x[:, 1:])
        assert f1.shape == (2, 16, 4, 4)  # down-sampled twice, depth 4 × width
        g = model.integrate(torch.cat([f1, f2], 1))
        w = 2 * torch.softmax(torch.tensor([0.3, -0.2]), 0)
        p1, p2 = model.pathways[0](g + w[0] * f1), model.pathways[1](g + w[1] * f2)
        expected = model.decoder(model.fuse(torch.cat([g, p1, p2], 1)))
    torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize(("spatial_dims", "spatial"), [(2, (16, 20)), (3, (8, 8, 12))])
def test_shapes_2d_and_3d(spatial_dims: int, spatial: tuple[int, ...]) -> None:
    model = build_model("pgmgvce_generator", spatial_dims=spatial_dims, out_activation="sigmoid", **SMALL)
    x = torch.randn(2, 2, *spatial)
    y = model(x)
    assert y.shape == (2, 1, *spatial) and ((y > 0) & (y < 1)).all()
    stack = build_model("pgmgvce_generator", spatial_dims=spatial_dims, in_slices=3, **SMALL)
    assert stack(torch.randn(1, 6, *spatial)).shape == (1, 1, *spatial)


def test_gradient_reaches_every_branch(grads_reach_every_parameter) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("pgmgvce_generator", **SMALL)
    x = torch.randn(2, 2, 16, 16)
    target = torch.randn(2, 1, 16, 16)
    grads_reach_every_parameter(model, lambda m: (m(x) - target).pow(2).mean())


def _config(**extra: object) -> dict:
    return {
        "inputs": ["native", "t2"],
        "generator": "pgmgvce_generator",
        "generator_kwargs": SMALL,
        "critic": "patch_discriminator",
        "critic_kwargs": CRITIC,
        "lambda_gp": 10.0,
        "lr_g": 1e-4,
        "lr_d": 1e-4,
        "betas": [0.5, 0.999],
        **extra,
    }


def test_losses_are_lsgan_plus_penalty_and_gradient_plus_lsgan(tiny_trainer) -> None:  # noqa: ANN001
    trainer = tiny_trainer(_config())
    objective = trainer.objective
    batch = trainer.next_batch()
    x, y = batch["inputs"], batch["target"]
    fake = trainer.generator(x).detach()
    critic = trainer.nets["critic"]
    torch.manual_seed(3)
    loss_d, gp = objective.discriminator_loss(batch, fake)
    torch.manual_seed(3)
    gp_ref = gradient_penalty(critic, y, fake, (x,), (x,), 10.0, condition_gradient=False)
    lsgan = 0.5 * ((critic(y, x) - 1).pow(2).mean() + critic(fake, x).pow(2).mean())
    torch.testing.assert_close(gp, gp_ref)
    torch.testing.assert_close(loss_d, lsgan + gp_ref)
    loss_g, terms = objective.generator_loss(batch, fake)
    pg = pixelwise_gradient_loss(fake, y, eps=1e-3)
    adv = 0.5 * (critic(fake, x) - 1).pow(2).mean()
    torch.testing.assert_close(loss_g, pg + adv)  # the paper's 1:1 ratio
    assert terms["gradient"] == pytest.approx(pg.item())


def test_one_step_lowers_the_loss(tiny_trainer, step_lowers_loss) -> None:  # noqa: ANN001
    trainer = tiny_trainer(
        _config(normalization="sigmoid", generator_kwargs={**SMALL, "out_activation": "sigmoid"})
    )
    step_lowers_loss(trainer, lambda t, g, b: t.objective.generator_loss(b, g(b["inputs"]))[0])


def test_save_load_round_trip(round_trip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("pgmgvce_generator", spatial_dims=3, **SMALL)
    model(torch.randn(2, 2, 8, 8, 8))
    with torch.no_grad():
        model.modality_weights.logits.copy_(torch.tensor([0.5, -0.1]))
    round_trip("pgmgvce_generator", model, torch.randn(1, 2, 8, 8, 8))
