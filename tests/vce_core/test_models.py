"""Tests of the model registry and the low-dose conditional GAN (seed 000) on small 2-D, 2.5-D, 3-D inputs."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vce_core import losses as L
from vce_core.errors import VCEInputError, VCEModelError
from vce_core.models import build_model, list_models, register_model
from vce_core.models.blocks import ConditionalResBlock, LocalAttention, MetadataEmbedding, zero_module
from vce_core.models.ld_cgan import LowDoseCritic, LowDoseGenerator

# (spatial_dims, in_slices, spatial size): 2-D, 2.5-D and 3-D
CASES = [(2, 1, (32, 32)), (2, 3, (32, 32)), (3, 1, (16, 16, 16))]


def _inputs(in_slices: int, spatial: tuple[int, ...], batch: int = 2, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    native = torch.rand(batch, in_slices, *spatial, generator=gen)
    standard_dose = native + 0.3 * torch.rand(batch, in_slices, *spatial, generator=gen)
    dose = torch.tensor([0.1, 0.33])[:batch]
    field = torch.tensor([1.5, 3.0])[:batch]
    return native, standard_dose, dose, field


def _perturb(model: nn.Module, seed: int = 0, std: float = 0.05) -> None:
    """Move every parameter off its initial value (zero-initialised convs would hide the conditioning)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn(p.shape, generator=gen))


def test_registry_lists_and_rejects_unknown_names() -> None:
    assert {"ld_cgan_generator", "ld_cgan_critic"} <= set(list_models())
    with pytest.raises(VCEModelError, match="ld_cgan_generator"):
        build_model("no_such_model")

    register_model("ld_cgan_generator")(LowDoseGenerator)  # re-registering the same class is harmless
    assert build_model("ld_cgan_generator", spatial_dims=2, num_res_blocks=1).__class__ is LowDoseGenerator

    with pytest.raises(VCEModelError, match="registered twice"):

        @register_model("ld_cgan_critic")
        class Impostor(nn.Module):
            pass


@pytest.mark.parametrize(("spatial_dims", "in_slices", "spatial"), CASES)
def test_models_build_run_and_rebuild_from_config(spatial_dims, in_slices, spatial) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    kwargs = {"spatial_dims": spatial_dims, "in_slices": in_slices, "num_res_blocks": 1}
    gen_model = build_model("ld_cgan_generator", **kwargs)
    critic = build_model("ld_cgan_critic", **kwargs, out_channels=1)
    native, sd, dose, field = _inputs(in_slices, spatial)
    noise = torch.randn(2, 1, *spatial)
    outputs = gen_model(native, sd, dose, field, noise)
    assert [tuple(o.shape) for o in outputs] == [
        (2, 1, *(s // 2**k for s in spatial)) for k in range(gen_model.config["output_heads"])
    ]
    scores = critic(outputs[0], native, sd, dose, field)
    assert scores.shape == (2,) and torch.isfinite(scores).all()

    # a checkpoint card can rebuild both from the JSON config alone
    for name, model in (("ld_cgan_generator", gen_model), ("ld_cgan_critic", critic)):
        config = json.loads(json.dumps(model.config))
        rebuilt = build_model(name, **config)
        rebuilt.load_state_dict(model.state_dict())
        assert rebuilt.config == model.config
        if name == "ld_cgan_generator":
            torch.testing.assert_close(rebuilt(native, sd, dose, field, noise)[0], outputs[0])


def test_generator_noise_argument_and_sampling() -> None:
    model = build_model("ld_cgan_generator", spatial_dims=2, num_res_blocks=1)
    native, sd, dose, field = _inputs(1, (16, 16))
    first = model(native, sd, dose, field, generator=torch.Generator().manual_seed(1))[0]
    again = model(native, sd, dose, field, generator=torch.Generator().manual_seed(1))[0]
    other = model(native, sd, dose, field, generator=torch.Generator().manual_seed(2))[0]
    torch.testing.assert_close(first, again)
    assert not torch.allclose(first, other)  # z is an input: different noise, different sample
    # one number for the whole batch is accepted for dose and field strength
    assert model(native, sd, 0.2, 3.0)[0].shape == (2, 1, 16, 16)


def test_generator_rejects_bad_inputs() -> None:
    model = build_model("ld_cgan_generator", spatial_dims=2, num_res_blocks=1)
    native, sd, dose, field = _inputs(1, (20, 16))
    with pytest.raises(VCEInputError, match="multiple of 8"):
        model(native, sd, dose, field)
    native, sd, dose, field = _inputs(1, (16, 16))
    with pytest.raises(VCEInputError, match="standard_dose"):
        model(native, sd[:, :, :8], dose, field)
    with pytest.raises(VCEInputError, match="dose"):
        model(native, sd, torch.tensor([0.1, 0.2, 0.3]), field)
    with pytest.raises(VCEInputError, match="noise"):
        model(native, sd, dose, field, torch.zeros(2, 2, 16, 16))
    with pytest.raises(VCEInputError, match="in_slices"):
        build_model("ld_cgan_generator", spatial_dims=2, in_slices=2)
    with pytest.raises(VCEInputError, match="spatial_dims"):
        build_model("ld_cgan_critic", spatial_dims=4, in_slices=1, out_channels=1)
    with pytest.raises(VCEInputError, match="residual"):
        build_model("ld_cgan_critic", spatial_dims=2, in_slices=1, out_channels=1)(
            torch.zeros(2, 1, 8, 8), native, sd, dose, field
        )


@pytest.mark.parametrize(("spatial_dims", "in_slices", "spatial"), CASES)
def test_linear_base_starts_as_the_linear_baseline(spatial_dims, in_slices, spatial) -> None:  # noqa: ANN001
    model = build_model(
        "ld_cgan_generator", spatial_dims=spatial_dims, in_slices=in_slices, num_res_blocks=1, base="linear"
    )
    native, sd, dose, field = _inputs(in_slices, spatial)
    c = in_slices // 2
    # independent reference: d (x_SD - x_NA) of the centre slice, average-pooled by hand for the coarse heads
    expected = dose.view(-1, *[1] * (spatial_dims + 1)) * (sd[:, c : c + 1] - native[:, c : c + 1])
    outputs = model(native, sd, dose, field)
    for k, out in enumerate(outputs):
        f = 2**k
        ref = expected.reshape(
            *expected.shape[:2], *itertools.chain.from_iterable((s // f, f) for s in spatial)
        ).mean(dim=tuple(range(3, 3 + 2 * spatial_dims, 2)))
        torch.testing.assert_close(out, ref)  # the untrained generator is exactly the baseline, every head
    # trained (perturbed) weights add a correction that depends on the noise input; the base stays
    _perturb(model)
    out = model(native, sd, dose, field, torch.zeros(2, 1, *spatial))[0]
    assert not torch.allclose(out, expected, atol=1e-3)
    with torch.no_grad():
        for head in model.heads:
            zero_module(head[-1])
    torch.testing.assert_close(model(native, sd, dose, field)[0], expected)
    assert model.config["base"] == "linear"
    with pytest.raises(VCEInputError, match="base"):
        build_model("ld_cgan_generator", spatial_dims=2, base="standard_dose")


@pytest.mark.parametrize(("spatial_dims", "spatial", "num_res_blocks"), [(2, (16, 16), 2), (3, (8, 8, 8), 1)])
def test_dose_reaches_every_residual_block_and_the_output(spatial_dims, spatial, num_res_blocks) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = build_model("ld_cgan_generator", spatial_dims=spatial_dims, num_res_blocks=num_res_blocks)
    blocks = [m for m in model.modules() if isinstance(m, ConditionalResBlock)]
    assert len(blocks) == num_res_blocks * (4 + 3)  # per scale: 4 encoder and 3 decoder scales
    native, sd, _, _ = _inputs(1, spatial)
    noise = torch.randn(2, 1, *spatial)
    field = torch.tensor([3.0, 3.0])

    # untrained: every block's conditioning path ends in a zero conv, so the dose has no effect yet
    low, high = (model(native, sd, torch.full((2,), d), field, noise)[0] for d in (0.1, 0.4))
    torch.testing.assert_close(low, high)

    _perturb(model)
    recorded: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(blocks))}
    hooks = [
        block.register_forward_hook(lambda _m, _i, out, i=i: recorded[i].append(out.detach()))
        for i, block in enumerate(blocks)
    ]
    try:
        outs = [model(native, sd, torch.full((2,), d), field, noise) for d in (0.1, 0.4)]
    finally:
        for h in hooks:
            h.remove()
    for i in range(len(blocks)):
        assert not torch.allclose(recorded[i][0], recorded[i][1]), f"dose does not reach block {i}"
    for head_low, head_high in zip(*outs, strict=True):
        assert not torch.allclose(head_low, head_high)
    # field strength is part of the metadata too
    other_field = model(native, sd, torch.full((2,), 0.1), torch.tensor([1.5, 1.5]), noise)[0]
    assert not torch.allclose(other_field, outs[0][0])


def test_architecture_follows_the_paper() -> None:
    gen_model = build_model("ld_cgan_generator", spatial_dims=3)
    critic = build_model("ld_cgan_critic", spatial_dims=3, in_slices=1, out_channels=1)
    assert isinstance(gen_model, LowDoseGenerator) and isinstance(critic, LowDoseCritic)
    # 12 channels at the finest scale, doubled per scale; 128-feature two-layer metadata MLP
    assert [blocks[0][0].out_norm.num_channels for blocks in gen_model.encoder] == [12, 24, 48, 96]
    assert [blocks[0].out_norm.num_channels for blocks in critic.encoder] == [12, 24, 48, 96, 192]
    linear = [m for m in gen_model.embedding.mlp if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(2, 128), (128, 128)]
    # every residual block has its own learnable projection of the embedding
    projections = [m.emb_layers[1] for m in gen_model.modules() if isinstance(m, ConditionalResBlock)]
    assert len({id(p) for p in projections}) == len(projections)
    assert all(p.in_features == 128 for p in projections)
    # local attention at the coarser scales only, none in the critic; 3x3x3 convolutions
    for s, blocks in enumerate(gen_model.encoder):
        has_attention = any(isinstance(m, LocalAttention) for m in blocks.modules())
        assert has_attention == (s > 0)
    assert not any(isinstance(m, LocalAttention) for m in critic.modules())
    convs = [m for m in gen_model.modules() if isinstance(m, nn.Conv3d) and m.kernel_size != (1, 1, 1)]
    assert convs and all(m.kernel_size == (3, 3, 3) for m in convs)
    # input: native + standard dose + noise; critic: residual + native + standard dose
    assert gen_model.input_conv.in_channels == 3 and critic.input_conv.in_channels == 3
    assert build_model("ld_cgan_generator", spatial_dims=2, in_slices=5).input_conv.in_channels == 11


def test_critic_embedding_is_its_own_module() -> None:
    gen_model = build_model("ld_cgan_generator", spatial_dims=2, num_res_blocks=1)
    critic = build_model("ld_cgan_critic", spatial_dims=2, in_slices=1, out_channels=1, num_res_blocks=1)
    assert isinstance(critic.embedding, MetadataEmbedding) and critic.embedding is not gen_model.embedding
    gen_params = {p.data_ptr() for p in gen_model.parameters()}
    assert not any(p.data_ptr() in gen_params for p in critic.parameters())
    # training the critic's embedding leaves the generator's untouched
    before = [p.clone() for p in gen_model.embedding.parameters()]
    with torch.no_grad():
        for p in critic.embedding.parameters():
            p.add_(1.0)
    for b, p in zip(before, gen_model.embedding.parameters(), strict=True):
        torch.testing.assert_close(b, p)
    # and the critic's score depends on the dose once its blocks are trained
    _perturb(critic)
    native, sd, dose, field = _inputs(1, (16, 16))
    residual = torch.rand(2, 1, 16, 16)
    assert not torch.allclose(
        critic(residual, native, sd, 0.1, field), critic(residual, native, sd, 0.4, field)
    )
    # any spatial size: pooling keeps odd sizes
    assert critic(torch.rand(2, 1, 12, 20), *_inputs(1, (12, 20))).shape == (2,)


def test_gradient_penalty_on_the_real_critic() -> None:
    torch.manual_seed(0)
    critic = build_model("ld_cgan_critic", spatial_dims=2, in_slices=1, out_channels=1, num_res_blocks=1)
    native, sd, dose, field = _inputs(1, (16, 16))
    real, fake = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    cond_real = (native, sd, L.smooth_dose_labels(dose), field)
    cond_fake = (native, sd, L.sample_generated_doses(2), field)
    gp = L.gradient_penalty(critic, real, fake, cond_real, cond_fake)
    assert torch.isfinite(gp) and gp.item() > 0
    gp.backward()  # second-order gradients reach the critic's parameters
    assert critic.score.weight.grad is not None and critic.score.weight.grad.abs().sum() > 0


def test_conditional_res_block_starts_as_skip() -> None:
    block = ConditionalResBlock(2, 12, 24, emb_features=8)
    x, emb = torch.randn(2, 12, 8, 8), torch.randn(2, 8)
    torch.testing.assert_close(block(x, emb), block.skip(x))
    zero_module(block.skip)
    _perturb(block.out_layers)
    a, b = block(x, emb), block(x, emb + 1)
    assert not torch.allclose(a, b)  # the embedding acts through scale/shift


def _reference_local_attention(module: LocalAttention, x: torch.Tensor) -> torch.Tensor:
    """Per-voxel loops: softmax over the in-image neighbours within the window, plus position bias."""
    b, c, *spatial = x.shape
    d, r, heads, dh = module.spatial_dims, module.window // 2, module.num_heads, module.head_channels
    q, k, v = module.qkv(module.norm(x)).reshape(b, 3, heads, dh, *spatial).unbind(1)
    offsets = list(itertools.product(range(-r, r + 1), repeat=d))
    out = torch.zeros(b, heads, dh, *spatial, dtype=x.dtype)
    for pos in itertools.product(*[range(s) for s in spatial]):
        logits, vals = [], []
        for w, off in enumerate(offsets):
            nb = tuple(p + o for p, o in zip(pos, off, strict=True))
            if all(0 <= n < s for n, s in zip(nb, spatial, strict=True)):
                logits.append((q[(..., *pos)] * k[(..., *nb)]).sum(-1) / dh**0.5 + module.position_bias[:, w])
                vals.append(v[(..., *nb)])
        weights = torch.stack(logits, dim=-1).softmax(-1)  # [B, heads, n]
        out[(..., *pos)] = (weights.unsqueeze(2) * torch.stack(vals, dim=-1)).sum(-1)
    return x + module.proj_out(out.reshape(b, c, *spatial))


@pytest.mark.parametrize(("spatial_dims", "spatial"), [(2, (5, 6)), (3, (3, 4, 3))])
def test_local_attention_matches_per_voxel_reference(spatial_dims, spatial) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    module = LocalAttention(spatial_dims, 8, window=3, head_channels=4).double()
    x = torch.randn(2, 8, *spatial, dtype=torch.float64)
    torch.testing.assert_close(module(x), x)  # zero-initialised output projection: identity at start
    _perturb(module, std=0.3)
    torch.testing.assert_close(module(x), _reference_local_attention(module, x))
    if spatial_dims == 2:  # and the same as the unfold formulation
        q, k, v = module.qkv(module.norm(x)).reshape(2, 3, 2, 4, *spatial).unbind(1)
        kw = F.unfold(k.reshape(2, 8, *spatial), 3, padding=1).reshape(2, 2, 4, 9, *spatial)
        vw = F.unfold(v.reshape(2, 8, *spatial), 3, padding=1).reshape(2, 2, 4, 9, *spatial)
        inside = F.unfold(torch.ones(1, 1, *spatial, dtype=x.dtype), 3, padding=1).reshape(1, 1, 9, *spatial)
        logits = (q.unsqueeze(3) * kw).sum(2) / 2 + module.position_bias.reshape(1, 2, 9, 1, 1)
        attn = logits.masked_fill(inside == 0, float("-inf")).softmax(2)
        out = (attn.unsqueeze(2) * vw).sum(3).reshape(2, 8, *spatial)
        torch.testing.assert_close(module(x), x + module.proj_out(out))


@pytest.mark.parametrize(("spatial_dims", "in_slices", "spatial"), CASES)
def test_physics_base_starts_as_the_physics_baseline(spatial_dims, in_slices, spatial) -> None:  # noqa: ANN001
    """An untrained ``base="physics"`` generator is :func:`vce_core.baselines.physics_baseline` (numpy,
    float64) applied to the raw signal, in normalised units; every head is its average-pooled residual."""
    import numpy as np

    from vce_core.baselines import physics_baseline, spgr_relative_signal
    from vce_core.models.ld_cgan import sequence_tensor

    model = build_model(
        "ld_cgan_generator", spatial_dims=spatial_dims, in_slices=in_slices, num_res_blocks=1, base="physics"
    )
    rng = np.random.default_rng(3)
    seqs = [
        {"name": "a", "tr_ms": 6.8, "te_ms": 3.1, "flip_deg": 8.0},
        {"name": "b", "tr_ms": 15.4, "te_ms": 3.6, "flip_deg": 30.0},
    ]
    fields, doses = (1.5, 3.0), (0.1, 0.33)
    nats, sds, seq_t, expected = [], [], [], []
    c = in_slices // 2
    for b in range(2):
        shape = (in_slices, *spatial)
        t1 = rng.uniform(0.6, 3.0, shape)  # native T1 (s): the baseline assumes one value, the truth varies
        r1_sd = 1 / t1 + rng.uniform(0.0, 4.0, shape) * (rng.random(shape) < 0.5)
        m = rng.uniform(500, 2000, shape) * (rng.random(shape) < 0.9)  # 10 % background voxels (M = 0)
        raw_na = m * spgr_relative_signal(1 / t1, seqs[b]) + rng.uniform(0, 2, shape)
        raw_sd = m * spgr_relative_signal(r1_sd, seqs[b]) + rng.uniform(0, 2, shape)
        offset, scale = 3.0, float(np.percentile(raw_na, 99.5)) - 3.0  # an affine normalisation
        top = offset + scale  # raw value of normalised 1: the model's min_signal is 5 % of it
        ref = physics_baseline(  # 3-D (slices, voxels, 1): the baseline is per voxel
            raw_na.reshape(in_slices, -1, 1),
            raw_sd.reshape(in_slices, -1, 1),
            doses[b],
            seqs[b],
            field_strength=fields[b],
            min_signal=0.05 * top,
        ).reshape(shape)
        nats.append((raw_na - offset) / scale)
        sds.append((raw_sd - offset) / scale)
        seq_t.append(sequence_tensor(-offset / scale, seqs[b]["tr_ms"], seqs[b]["flip_deg"]))
        expected.append(((ref - raw_na) / scale)[c : c + 1])
    native = torch.tensor(np.stack(nats), dtype=torch.float32)
    sd = torch.tensor(np.stack(sds), dtype=torch.float32)
    dose, field = torch.tensor(doses), torch.tensor(fields)
    sequence = torch.stack(seq_t)
    expected_t = torch.tensor(np.stack(expected), dtype=torch.float32)
    outputs = model(native, sd, dose, field, sequence=sequence)
    assert expected_t.abs().max() > 0.05  # the inputs enhance
    for k, out in enumerate(outputs):
        f = 2**k
        ref = expected_t.reshape(
            *expected_t.shape[:2], *itertools.chain.from_iterable((s // f, f) for s in spatial)
        ).mean(dim=tuple(range(3, 3 + 2 * spatial_dims, 2)))
        torch.testing.assert_close(out, ref, atol=2e-4, rtol=1e-3)
    # the linear and physics bases differ where the signal equation is non-linear
    linear = dose.view(-1, *[1] * (spatial_dims + 1)) * (sd[:, c : c + 1] - native[:, c : c + 1])
    assert (outputs[0] - linear).abs().max() > 0.01
    with pytest.raises(VCEInputError, match="sequence"):
        model(native, sd, dose, field)
    bad = sequence.clone()
    bad[0, 1] = float("nan")  # a case without its TR
    with pytest.raises(VCEInputError, match="sequence"):
        model(native, sd, dose, field, sequence=bad)
    with pytest.raises(VCEInputError, match="flip"):
        sequence_tensor(0.0, 6.8, 0.0)


def test_learned_t1_and_texture_heads() -> None:
    """``learn_t1``: a constant T1 head output t gives the numpy physics baseline with the default T1 times
    exp(0.5 tanh t), and gradients reach the head; ``texture_sigma``: a constant head offset is removed
    (the heads add texture only), while without it the offset shifts the output."""
    import numpy as np

    from vce_core.baselines import DEFAULT_T1_S, physics_baseline, spgr_relative_signal
    from vce_core.models.ld_cgan import T1_LOG_RANGE, sequence_tensor

    seq = {"name": "a", "tr_ms": 7.3, "te_ms": 3.3, "flip_deg": 8.0}
    rng = np.random.default_rng(1)
    shape = (1, 16, 16)
    t1 = rng.uniform(0.8, 2.5, shape)
    raw_na = 1000 * spgr_relative_signal(1 / t1, seq)
    raw_sd = 1000 * spgr_relative_signal(1 / t1 + rng.uniform(0, 3, shape), seq)
    scale = float(raw_na.max())
    native = torch.tensor(raw_na / scale, dtype=torch.float32)[None]
    sd = torch.tensor(raw_sd / scale, dtype=torch.float32)[None]
    sequence = sequence_tensor(0.0, 7.3, 8.0)[None]
    dose, field = torch.tensor([0.2]), torch.tensor([1.5])
    kw = {"spatial_dims": 2, "base_channels": 4, "num_res_blocks": 1, "num_scales": 2, "output_heads": 2}
    model = build_model("ld_cgan_generator", base="physics", learn_t1=True, texture_sigma=2.0, **kw)
    c = 0.8
    with torch.no_grad():
        model.t1_head[-1].bias.fill_(c)
    out = model(native, sd, dose, field, sequence=sequence)[0]
    factor = float(np.exp(T1_LOG_RANGE * np.tanh(c)))
    ref = physics_baseline(
        raw_na, raw_sd, 0.2, seq, t1_native_s=DEFAULT_T1_S[1.5] * factor, min_signal=0.05 * scale
    )
    torch.testing.assert_close(
        out[0, 0], torch.tensor((ref - raw_na)[0] / scale, dtype=torch.float32), atol=2e-4, rtol=1e-3
    )
    out.sum().backward()
    assert model.t1_head[-1].weight.grad.abs().sum() > 0
    # a constant offset of every head: removed by the texture high-pass, kept without it
    plain = build_model("ld_cgan_generator", base="physics", **kw)
    for m in (model, plain):
        with torch.no_grad():
            for head in m.heads:
                head[-1].bias.fill_(0.05)
            if m.t1_head is not None:
                m.t1_head[-1].bias.zero_()
    base = plain.base_residual(native, sd, dose, field, sequence)
    torch.testing.assert_close(model(native, sd, dose, field, sequence=sequence)[0], base, atol=1e-6, rtol=0)
    torch.testing.assert_close(plain(native, sd, dose, field, sequence=sequence)[0], base + 0.05)
    # the heads-off ablation (texture_scale 0) leaves the base; 0.5 halves what the heads add
    plain.texture_scale = 0.0
    torch.testing.assert_close(plain(native, sd, dose, field, sequence=sequence)[0], base)
    plain.texture_scale = 0.5
    torch.testing.assert_close(plain(native, sd, dose, field, sequence=sequence)[0], base + 0.025)
    # as a constructor argument (the noise calibration's): kept in the config, so a card rebuilds it
    scaled = build_model("ld_cgan_generator", base="physics", texture_scale=0.5, **kw)
    scaled.load_state_dict(plain.state_dict())
    assert scaled.config["texture_scale"] == 0.5
    torch.testing.assert_close(scaled(native, sd, dose, field, sequence=sequence)[0], base + 0.025)
    for bad in (-0.1, float("inf"), float("nan"), True, "1"):
        with pytest.raises(VCEInputError, match="texture_scale"):
            build_model("ld_cgan_generator", base="physics", texture_scale=bad, **kw)
    with pytest.raises(VCEInputError, match='texture_scale 0.5 with base "native"'):
        build_model("ld_cgan_generator", base="native", texture_scale=0.5, **kw)
    with pytest.raises(VCEInputError, match="learn_t1"):
        build_model("ld_cgan_generator", base="linear", learn_t1=True, **kw)
    with pytest.raises(VCEInputError, match="texture_sigma"):
        build_model("ld_cgan_generator", base="native", texture_sigma=2.0, **kw)
    with pytest.raises(VCEInputError, match="texture_sigma"):
        build_model("ld_cgan_generator", base="physics", texture_sigma=-1, **kw)


def test_wider_t1_head() -> None:
    """``t1_hidden``: three dilated 3×3 convolutions before the T1 output; a constant output gives what the
    one-convolution head gives, its convolutions reach ±8 voxels (not farther), gradients reach its first
    layer, and bad widths are refused."""
    from vce_core.models.ld_cgan import sequence_tensor

    kw = {"spatial_dims": 2, "base_channels": 4, "num_res_blocks": 1, "num_scales": 2, "output_heads": 2}
    models = []
    for hidden in (0, 8):
        torch.manual_seed(3)
        m = build_model("ld_cgan_generator", base="physics", learn_t1=True, t1_hidden=hidden, **kw)
        with torch.no_grad():
            m.t1_head[-1].bias.fill_(0.7)
        models.append(m)
    simple, wide = models
    dilations = [c.dilation[0] for c in wide.t1_head if isinstance(c, torch.nn.Conv2d)]
    assert dilations == [1, 2, 4, 1]
    torch.manual_seed(0)
    native = torch.rand(1, 1, 48, 48) + 0.2
    sd = native * (1 + torch.rand(1, 1, 48, 48))
    args = (native, sd, torch.tensor([0.2]), torch.tensor([3.0]))
    seq = sequence_tensor(0.0, 6.8, 8.0)[None]
    noise = torch.randn(1, 1, 48, 48)
    torch.testing.assert_close(wide(*args, noise, sequence=seq)[0], simple(*args, noise, sequence=seq)[0])
    # reach of the head's convolutions (its group norms pool over the whole slice): the sum of the four
    # 3x3 convolutions' dilations, 1 + 2 + 4 + 1 = 8 voxels, not 9
    convs = torch.nn.Sequential(*[c for c in wide.t1_head if isinstance(c, torch.nn.Conv2d)])
    with torch.no_grad():
        for p in convs.parameters():
            p.normal_(0, 0.3)
    feats = torch.zeros(1, convs[0].in_channels, 40, 40, requires_grad=True)
    convs(feats)[0, 0, 20, 20].backward()
    reach = torch.nonzero(feats.grad.abs().sum(1)[0])
    assert int((reach - 20).abs().max()) == 8
    out = wide(*args, noise, sequence=seq)[0]
    out.sum().backward()
    assert wide.t1_head[2].weight.grad.abs().sum() > 0
    for bad in (-1, True, 2.5):
        with pytest.raises(VCEInputError, match="t1_hidden"):
            build_model("ld_cgan_generator", base="physics", learn_t1=True, t1_hidden=bad, **kw)
    with pytest.raises(VCEInputError, match="t1_hidden"):
        build_model("ld_cgan_generator", base="physics", t1_hidden=8, **kw)


def test_native_slope_adds_the_native_high_pass_per_field_strength() -> None:
    """``native_slope``: the heads gain ``k · (x_NA − Gauss_σ(x_NA))`` (scipy's Gaussian as the reference),
    ``k`` chosen by each sample's field strength, pooled to the coarser heads, before ``texture_scale``
    (so the heads-off ablation removes it too); bad values are refused."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    from vce_core.models.ld_cgan import sequence_tensor

    kw = {"spatial_dims": 2, "base_channels": 4, "num_res_blocks": 1, "num_scales": 2, "output_heads": 2}
    kw |= {"base": "physics", "texture_sigma": 2.0}
    torch.manual_seed(0)
    plain = build_model("ld_cgan_generator", **kw)
    for head in plain.heads:  # non-zero heads, so that the correction is not all they output
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    sloped = build_model("ld_cgan_generator", native_slope=[0.3, 0.1], **kw)
    sloped.load_state_dict(plain.state_dict())
    assert sloped.config["native_slope"] == [0.3, 0.1]
    gen = torch.Generator().manual_seed(1)
    native = 0.5 + 0.2 * torch.rand(2, 1, 16, 16, generator=gen)
    sd = native + 0.3 * torch.rand(2, 1, 16, 16, generator=gen)
    noise = torch.randn(2, 1, 16, 16, generator=gen)
    args = (native, sd, torch.tensor([0.1, 0.33]), torch.tensor([1.5, 3.0]), noise)
    seq = sequence_tensor(0.0, 7.3, 8.0)
    x = native[:, 0].numpy().astype(np.float64)
    hp = np.stack([xi - gaussian_filter(xi, 2.0, mode="nearest", truncate=3.0) for xi in x])
    expected = torch.tensor(hp, dtype=torch.float32)[:, None] * torch.tensor([0.3, 0.1]).view(2, 1, 1, 1)
    for scale in (1.0, 0.5, 0.0):
        plain.texture_scale = sloped.texture_scale = scale
        with torch.no_grad():
            a, b = plain(*args, sequence=seq), sloped(*args, sequence=seq)
        torch.testing.assert_close(b[0] - a[0], scale * expected, atol=1e-5, rtol=1e-4)
        pooled = torch.nn.functional.avg_pool2d(scale * expected, 2)
        torch.testing.assert_close(b[1] - a[1], pooled, atol=1e-5, rtol=1e-4)
    assert expected.abs().max() > 0.01
    # one number: both field strengths
    both = build_model("ld_cgan_generator", native_slope=0.2, **kw)
    both.load_state_dict(plain.state_dict())
    plain.texture_scale = 1.0
    with torch.no_grad():
        diff = both(*args, sequence=seq)[0] - plain(*args, sequence=seq)[0]
    torch.testing.assert_close(
        diff, 0.2 * torch.tensor(hp, dtype=torch.float32)[:, None], atol=1e-5, rtol=1e-4
    )
    for bad in (float("inf"), float("nan"), True, "0.1", [0.1, 0.2, 0.3], [0.1, None]):
        with pytest.raises(VCEInputError, match="native_slope"):
            build_model("ld_cgan_generator", native_slope=bad, **kw)
    with pytest.raises(VCEInputError, match="native_slope 0.1 without texture_sigma"):
        build_model("ld_cgan_generator", **{**kw, "texture_sigma": 0.0}, native_slope=0.1)
