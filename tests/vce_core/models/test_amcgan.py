"""AMCGAN (seed 004): MSFC scales, the feature attention of eqs. 1–2, shapes, training, round trip."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vce_core.models import build_model
from vce_core.models.amcgan import AMCGANGenerator, FeatureAttention, MultiScaleCapture, PixResBlock
from vce_core.models.blocks import GEOMETRY_ARGUMENTS

SMALL = {"msfc_channels": 2, "ngf": 4, "res_blocks": 2, "dropout": 0.0}
CRITIC = {"base_channels": 4, "layers": 4, "strided": 2}


def test_feature_attention_matches_equations_1_and_2() -> None:
    gen = torch.Generator().manual_seed(0)
    z = 0.3 * torch.randn(2, 5, 3, 4, generator=gen)
    fam = FeatureAttention()
    torch.testing.assert_close(fam(z), z)  # β = 0 at start: the identity
    with torch.no_grad():
        fam.beta.fill_(0.7)
    b, c = z.shape[:2]
    flat = z.reshape(b, c, -1).double()
    expected = torch.empty_like(flat)
    for n in range(b):
        for j in range(c):
            # X_ij = exp(Z_i · Z_j) / Σ_i exp(Z_i · Z_j);  A_j = β Σ_i X_ij Z_i + Z_j
            dots = torch.stack([flat[n, i] @ flat[n, j] for i in range(c)])
            x_col = torch.exp(dots) / torch.exp(dots).sum()
            expected[n, j] = 0.7 * sum(x_col[i] * flat[n, i] for i in range(c)) + flat[n, j]
    torch.testing.assert_close(fam(z), expected.reshape(z.shape).float(), rtol=1e-5, atol=1e-6)
    x = FeatureAttention.attention(z)
    torch.testing.assert_close(x.sum(dim=1), torch.ones(b, c))  # normalised over i


def test_msfc_has_four_parallel_scales_and_a_dilation() -> None:
    msfc = MultiScaleCapture(2, 1, 1, norm="none")
    with torch.no_grad():
        for branch in msfc.branches:
            branch[0].weight.fill_(1.0)
            branch[0].bias.zero_()
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    out = msfc(impulse)
    assert out.shape == (1, 4, 15, 15)
    supports = [int((out[0, k] > 0).sum()) for k in range(4)]
    assert supports == [1, 9, 25, 9]  # kernels 1, 3, 5 and a 3x3 dilated by 3
    dilated = (out[0, 3] > 0).nonzero().tolist()
    assert sorted({r for r, _ in dilated}) == [4, 7, 10]  # taps 3 voxels apart: receptive field 7


def test_generator_is_msfc_fam_then_pix2pix() -> None:
    torch.manual_seed(0)
    model = build_model("amcgan_generator", in_modalities=3, **SMALL).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        manual = model.decoder(model.blocks(model.encoder(model.fam(model.msfc(x)))))
    torch.testing.assert_close(model(x), manual)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in model.decoder) == 2  # deconvolution decoder
    paper = AMCGANGenerator()
    assert paper.config["res_blocks"] == 6 and paper.config["ngf"] == 64 and paper.config["dropout"] == 0.5
    assert isinstance(paper.blocks[0].body[4], torch.nn.Dropout)


def test_pix_resblock_equation() -> None:
    torch.manual_seed(0)
    block = PixResBlock(2, 3, norm="none", dropout=0.0)
    x = torch.randn(1, 3, 6, 6)
    c1, c2 = block.body[1], block.body[6]
    h = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), c1.weight, c1.bias))
    expected = x + F.conv2d(F.pad(h, (1, 1, 1, 1), mode="reflect"), c2.weight, c2.bias)
    torch.testing.assert_close(block(x), expected)


@pytest.mark.parametrize(("spatial_dims", "spatial"), [(2, (16, 12)), (3, (8, 8, 12))])
def test_shapes_2d_and_3d(spatial_dims: int, spatial: tuple[int, ...]) -> None:
    model = build_model("amcgan_generator", spatial_dims=spatial_dims, in_modalities=2, **SMALL)
    geometry = {k: model.config[k] for k in GEOMETRY_ARGUMENTS}  # the critic takes the generator's
    critic = build_model("patch_discriminator", **geometry, **{**CRITIC, "strided": 1})
    x = torch.randn(2, 2, *spatial)
    y = model(x)
    assert y.shape == (2, 1, *spatial)
    assert critic(y, x).shape[:2] == (2, 1)
    tanh = build_model(
        "amcgan_generator", spatial_dims=spatial_dims, in_modalities=2, out_activation="tanh", **SMALL
    )
    assert tanh(x).abs().max() <= 1


def test_gradient_reaches_every_branch(grads_reach_every_parameter) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("amcgan_generator", in_modalities=3, **SMALL)
    with torch.no_grad():
        model.fam.beta.fill_(0.1)
    x = 0.1 * torch.randn(2, 3, 16, 16)
    grads_reach_every_parameter(model, lambda m: (m(x) - 1).pow(2).mean())


def test_one_step_lowers_both_losses(tiny_trainer, step_lowers_loss) -> None:  # noqa: ANN001
    trainer = tiny_trainer(
        {
            "inputs": ["native", "t2", "flair"],
            "generator": "amcgan_generator",
            "generator_kwargs": SMALL,
            "critic": "patch_discriminator",
            "critic_kwargs": CRITIC,
            "lr_g": 1e-4,
            "lr_d": 1e-4,
            "betas": [0.5, 0.999],
        }
    )
    objective = trainer.objective
    batch = trainer.next_batch()
    fake = trainer.generator(batch["inputs"]).detach()
    d_before = objective.discriminator_loss(batch, fake).item()
    trainer.next_batch = lambda: batch
    step_lowers_loss(trainer, lambda t, g, b: t.objective.generator_loss(b, g(b["inputs"]))[0])
    assert objective.discriminator_loss(batch, fake).item() < d_before
    _, terms = objective.generator_loss(batch, fake)
    assert terms["loss_g"] == pytest.approx(terms["adv"] + 100 * terms["l1"], rel=1e-5)  # λ = 100


def test_save_load_round_trip(round_trip) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("amcgan_generator", in_modalities=2, **SMALL)
    with torch.no_grad():
        model.fam.beta.fill_(0.2)
    model(torch.randn(2, 2, 16, 16))
    round_trip("amcgan_generator", model, torch.randn(1, 2, 16, 16))
