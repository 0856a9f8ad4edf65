"""Trainer: config parsing, a few CPU steps writing a run, bit-exact resume, DDP (gloo, 2 processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from support import record_sequence, write_tiny_cases
from vce_core.checkpoint import read_card
from vce_core.errors import VCEInputError
from vce_core.models import build_model
from vce_core.train import Trainer, main, train
from vce_core.train_config import TrainConfig, config_from_dict, load_config, model_kwargs

TINY = {
    "name": "tiny",
    "crop": 16,
    "batch_size": 2,
    "n_critic": 2,
    "iterations": 4,
    "generator_kwargs": {
        "base_channels": 4,
        "num_res_blocks": 1,
        "num_scales": 2,
        "output_heads": 2,
        "emb_features": 8,
    },
    "critic_kwargs": {"base_channels": 4, "num_res_blocks": 1, "num_scales": 2, "emb_features": 8},
    "val_every": 0,
    "val_slices": 1,
    "ckpt_every": 0,
    "log_every": 1,
    "cache_dtype": "float32",
    "threads": 1,  # one thread: no OpenMP spinning on the shared test machine
}


@pytest.fixture(autouse=True)
def _restore_threads() -> object:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("train_cases")
    folders = write_tiny_cases(root, 3, shape=(20, 20, 8))
    return {"data": [str(f) for f in folders[:2]], "val_data": [str(folders[2])]}


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    cfg = config_from_dict(
        {"crop": 32}, ["lr_g=2e-4", "flips=false", "generator_kwargs.base_channels=8", "data=[a, b]"]
    )
    assert cfg.lr_g == 2e-4 and cfg.flips is False and cfg.generator_kwargs == {"base_channels": 8}
    assert cfg.data == ["a", "b"] and cfg.crop == 32 and isinstance(cfg.lr_d, float)
    with pytest.raises(VCEInputError, match="did you mean 'n_critic'"):
        config_from_dict({"n_critics": 3})
    with pytest.raises(VCEInputError):
        config_from_dict({}, ["crop=12"])
    with pytest.raises(VCEInputError):
        config_from_dict({}, ["iterations=abc"])
    # values that would otherwise fail deep in the loop (a modulo by zero, an empty dataset) or mean nothing
    for bad in (
        "log_every=0",
        "lesion_focus=1.5",
        "ce_focus=-0.1",
        "lr_g=-1e-4",
        "lr_d=-1e-4",
        "val_fraction=1",
        "patches_per_case=0",
        "context=-1",
        "val_slices=0",
        "cache_size=0",
        "grad_clip=-1",
    ):
        key = bad.split("=")[0]
        with pytest.raises(VCEInputError, match=f"config value {key}="):
            config_from_dict({}, [bad])
    path = tmp_path / "c.yaml"
    path.write_text("content_loss: l1\nbatch_size: 4\n")
    assert load_config(path).content_loss == "l1"
    assert TrainConfig().n_critic == 5 and TrainConfig().lambda_gp == 100.0
    import vce_core.train

    assert vce_core.train.TrainConfig is TrainConfig  # re-exported for callers of vce_core.train
    assert vce_core.train.config_from_dict is config_from_dict and vce_core.train.load_config is load_config


@pytest.mark.slow
def test_train_writes_run_and_resume_is_bit_exact(data: dict[str, list[str]], tmp_path: Path) -> None:
    base = {**TINY, **data}
    straight = train(config_from_dict(base, ["iterations=2", "val_every=1"]), run_dir=tmp_path / "straight")
    for name in ("weights.safetensors", "card.json", "resume.pt", "log.csv", "val.csv"):
        assert (tmp_path / "straight" / name).is_file()
    card = read_card(tmp_path / "straight")  # the written card passes the checkpoint validation
    assert card == straight
    assert card.model == "ld_cgan_generator" and card.config["base_channels"] == 4
    assert card.training["iterations"] == 2 and card.data["train"]["count"] == 2
    assert card.data["val"]["case_ids"] == ["tiny-02"] and card.training["hardware"]["cpu"]
    assert {"psnr", "ssim", "mae_ce", "mae_sigma"} <= set(card.validation)
    assert (
        straight.normalization_method == "percentile" and straight["normalization"]["method"] == "percentile"
    )

    train(config_from_dict(base, ["iterations=1", "val_every=1"]), run_dir=tmp_path / "halves")
    assert main(["--resume", str(tmp_path / "halves"), "--set", "iterations=2"]) == 0
    a = torch.load(tmp_path / "straight" / "resume.pt", weights_only=False)
    b = torch.load(tmp_path / "halves" / "resume.pt", weights_only=False)
    assert b["step"] == 2 and b["batches_drawn"] == a["batches_drawn"] == 2 * 3
    for key in ("generator", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"
    for name, tensor in a["networks"]["critic"].items():
        assert torch.equal(tensor, b["networks"]["critic"][name]), f"critic.{name} differs after resume"
    wa = load_file(str(tmp_path / "straight" / "weights.safetensors"))
    wb = load_file(str(tmp_path / "halves" / "weights.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_content_only_l1_and_max_minutes(data: dict[str, list[str]], tmp_path: Path) -> None:
    cfg = config_from_dict(
        {**TINY, **data}, ["critic=", "content_loss=l1", "iterations=1000", "max_minutes=0.001"]
    )
    card = train(cfg, run_dir=tmp_path / "run")
    assert card.training["stopped_by"] == "max_minutes" and card.critic is None
    assert any(d.startswith("content-only training") for d in card.training["deviations"])
    assert 1 <= card.training["iterations"] < 1000 and (tmp_path / "run" / "resume.pt").is_file()


def _critic_moved(cfg: TrainConfig, run: Path) -> tuple[bool, Trainer]:
    """Train ``cfg`` in ``run``: whether any critic weight changed, and the trainer."""
    trainer = Trainer(cfg, run_dir=run)
    start = {k: v.clone() for k, v in trainer.nets["critic"].state_dict().items()}
    trainer.fit()
    after = trainer.nets["critic"].state_dict()
    return not all(torch.equal(start[k], after[k]) for k in start), trainer


def test_warmup_trains_the_generator_without_the_critic_first(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """``warmup_iterations``: the first generator iterations run no critic update and no adversarial term
    (the critic's weights stay as initialised), the later ones do, and ``log.csv`` gains their columns;
    the deviations name the warm-up."""
    moved, trainer = _critic_moved(
        config_from_dict({**TINY, **data}, ["iterations=2", "warmup_iterations=2"]), tmp_path / "warm"
    )
    assert not moved
    header, *rows = (tmp_path / "warm" / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and "loss_d" not in header and "adv" not in header
    assert any(
        d == "warm-up without the critic for the first 2 of 2 generator iterations (only the generator's "
        "non-adversarial terms)"
        for d in trainer.objective.deviations()
    )
    moved, _ = _critic_moved(
        config_from_dict({**TINY, **data}, ["iterations=3", "warmup_iterations=2"]), tmp_path / "then"
    )
    assert moved
    header, *rows = (tmp_path / "then" / "log.csv").read_text().splitlines()
    columns = header.split(",")
    last = dict(zip(columns, rows[-1].split(","), strict=True))
    first = dict(zip(columns, rows[0].split(","), strict=True))
    assert last["adv"] and last["loss_d"] and not first["adv"] and not first["loss_d"]  # widened once


def test_fine_tuning_starts_from_a_checkpoint_and_trains_only_the_named_parameters(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """``init_from`` loads a trained generator (the critic starts fresh), ``train_only`` freezes every other
    generator parameter; the card keeps the parent's record and deviations; a checkpoint of another
    configuration, an unreadable folder or a prefix that names nothing is refused before training."""
    parent_run = tmp_path / "parent"
    parent = train(config_from_dict({**TINY, **data}, ["iterations=2"]), run_dir=parent_run)
    before = load_file(str(parent_run / "weights.safetensors"))
    cfg = config_from_dict(
        {**TINY, **data},
        [f"init_from={parent_run}", "train_only=[heads]", "critic=", "iterations=3", "ema_decay=0"],
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "child")
    assert all(torch.equal(v, before[k]) for k, v in trainer.generator.state_dict().items())
    trainer.fit()
    after = load_file(str(tmp_path / "child" / "weights.safetensors"))
    assert all(torch.equal(after[k], v) for k, v in before.items() if not k.startswith("heads"))
    assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith("heads"))
    card = read_card(tmp_path / "child")
    assert card.training["initialised_from"]["name"] == parent.name
    assert card.training["initialised_from"]["training"]["iterations"] == 2
    *inherited, own = card.training["deviations"]
    assert inherited == list(parent.training["deviations"]) and card.critic == parent.critic
    assert own.startswith(f"fine-tuned from {parent.name} for 3 generator iterations, trained: heads")
    assert "content-only training" in own
    other = {**TINY, "generator_kwargs": {**TINY["generator_kwargs"], "base_channels": 8}}
    with pytest.raises(VCEInputError, match="base_channels"):
        Trainer(config_from_dict({**other, **data}, [f"init_from={parent_run}"]), run_dir=tmp_path / "x")
    # a new head under train_only starts fresh; outside train_only it is refused
    one = {**TINY, **data, "generator_kwargs": {**TINY["generator_kwargs"], "output_heads": 1}}
    train(config_from_dict(one, ["iterations=1"]), run_dir=tmp_path / "one")
    small = load_file(str(tmp_path / "one" / "weights.safetensors"))
    with pytest.raises(VCEInputError, match="output_heads differ"):
        Trainer(config_from_dict({**TINY, **data}, [f"init_from={tmp_path / 'one'}"]), run_dir=tmp_path / "x")
    grown = Trainer(
        config_from_dict({**TINY, **data}, [f"init_from={tmp_path / 'one'}", "train_only=[heads]"]),
        run_dir=tmp_path / "x",
    )
    assert grown.fresh == sorted(k for k in grown.generator.state_dict() if k.startswith("heads.1."))
    assert all(torch.equal(v, small[k]) for k, v in grown.generator.state_dict().items() if k in small)
    assert "new: heads.1" in grown.card(0.0, "test").training["deviations"][-1]
    with pytest.raises(VCEInputError, match="not a readable model folder"):
        Trainer(config_from_dict({**TINY, **data}, [f"init_from={tmp_path}"]), run_dir=tmp_path / "y")
    with pytest.raises(VCEInputError, match="match no parameter"):
        Trainer(config_from_dict({**TINY, **data}, ["train_only=[t1]"]), run_dir=tmp_path / "z")
    assert not (tmp_path / "z").exists()


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from vce_core.train import Trainer, config_from_dict
import json
cfg = config_from_dict(json.loads(sys.argv[1]))
trainer = Trainer(cfg, run_dir=sys.argv[2])
trainer.fit()
torch.save(trainer.generator.state_dict(), f"{sys.argv[2]}/rank{dist.get_rank()}.pt")
dist.destroy_process_group()
"""


@pytest.mark.ddp
def test_ddp_two_processes_gloo_identical_weights(data: dict[str, list[str]], tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    cfg = {**TINY, **data, "iterations": 2, "device": "cpu", "threads": 1, "val_data": []}
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(script),
        json.dumps(cfg),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert read_card(tmp_path).training["world_size"] == 2


@pytest.mark.parametrize("mode", ["2.5d", "3d"])
def test_stack_and_volume_modes_train(mode: str, data: dict[str, list[str]], tmp_path: Path) -> None:
    cfg = config_from_dict(
        {**TINY, **data}, [f"mode={mode}", "iterations=1", "n_critic=1", "batch_size=1", "crop=8"]
    )
    card = train(cfg, run_dir=tmp_path / mode)
    assert card.data_mode == mode and card.config["spatial_dims"] == card.spatial_dims
    assert card.spatial_dims == (3 if mode == "3d" else 2)
    assert card.config["in_slices"] == (3 if mode == "2.5d" else 1)
    assert card.context == (1 if mode == "2.5d" else 0)


def test_interrupt_saves_before_exit(
    data: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vce_core.train import Trainer

    trainer = Trainer(
        config_from_dict({**TINY, **data}, ["iterations=5", "critic="]), run_dir=tmp_path / "run"
    )
    original = trainer.objective.step

    def interrupting() -> dict:
        if trainer.step == 2:
            raise KeyboardInterrupt
        return original()

    monkeypatch.setattr(trainer.objective, "step", interrupting)
    card = trainer.fit()
    assert card.training["stopped_by"] == "interrupted" and card.training["iterations"] == 2
    assert torch.load(tmp_path / "run" / "resume.pt", weights_only=False)["step"] == 2


def test_content_space_image_compares_low_dose_images() -> None:
    from vce_core.losses import np_loss
    from vce_core.models.ld_cgan import content_loss as _content

    gen = torch.Generator().manual_seed(0)
    native = torch.rand(2, 3, 16, 16, generator=gen)  # a 2.5-D stack: the centre slice is the base
    preds = [torch.randn(2, 1, 16, 16, generator=gen), torch.randn(2, 1, 8, 8, generator=gen)]
    target = torch.randn(2, 1, 16, 16, generator=gen)
    centre = native[:, 1:2]
    l1_res = _content(TrainConfig(content_loss="l1"), preds, target, native)
    l1_img = _content(TrainConfig(content_loss="l1", content_space="image"), preds, target, native)
    torch.testing.assert_close(l1_img, l1_res)  # |x̂ − x| = |ŷ − y|: the space does not matter for L1

    kwargs = {"patch_size": 4, "offset": False}
    np_img = _content(TrainConfig(content_space="image", content_loss_kwargs=kwargs), preds, target, native)
    pooled = F.avg_pool2d(centre, 2)
    reference = np_loss([preds[0] + centre, preds[1] + pooled], target + centre, **kwargs)
    torch.testing.assert_close(np_img, reference)
    np_res = _content(TrainConfig(content_loss_kwargs=kwargs), preds, target, native)
    assert abs(np_img.item() - np_res.item()) > 1e-3  # W1 of patch values is not shift-invariant per voxel
    with pytest.raises(VCEInputError, match="content_space"):
        config_from_dict({"content_space": "pixels"})


def test_validation_reports_the_linear_baseline(data: dict[str, list[str]], tmp_path: Path) -> None:
    # a base="linear" generator that never moves (lr 0) *is* the baseline: its metrics must equal linear_*
    base = {**TINY, **data, "generator_kwargs": {**TINY["generator_kwargs"], "base": "linear"}}
    card = train(
        config_from_dict(base, ["iterations=1", "val_every=1", "lr_g=0", "critic="]), run_dir=tmp_path / "r"
    )
    val = card.validation
    for key in ("psnr", "ssim", "mae_ce", "mae_sigma"):
        assert val[key] == pytest.approx(val[f"linear_{key}"], rel=1e-5, abs=1e-7), key
    assert val["mae_ce"] > 0


# ============================================================================================== stages, tasks
def test_stages_resolve_to_iteration_boundaries_and_schedules() -> None:
    from vce_core.train_config import resolve_stages, stage_at

    cfg = config_from_dict(
        {
            "iterations": 100,
            "lr_g": 1e-3,
            "loss_weights": {"mae": 1.0, "ssim": 1.0},
            "stages": [
                {"fraction": 0.8, "lr_decay": {"kind": "step", "at": 0.5, "gamma": 0.1}},
                {"fraction": 0.2, "lr_g": 1e-5, "loss_weights": {"mae": 0.1}, "phase": "x"},
            ],
        }
    )
    first, second = resolve_stages(cfg)
    assert (first.start, first.end, second.start, second.end) == (0, 80, 80, 100)
    assert first.lr("g", 39) == 1e-3 and first.lr("g", 40) == pytest.approx(1e-4)
    assert second.loss_weights == {"mae": 0.1, "ssim": 1.0} and second.phase == "x"
    assert stage_at([first, second], 79) is first and stage_at([first, second], 80) is second
    assert stage_at([first, second], 500) is second
    linear = resolve_stages(
        config_from_dict(
            {"iterations": 8, "stages": [{"fraction": 1.0, "lr_decay": {"kind": "linear", "start": 0.5}}]}
        )
    )[0]
    factors = [linear.lr_factor(s) for s in range(8)]
    # pix2pix: constant for the first half, then 1 − (s − start + 1) / (decay length + 1)
    assert factors == pytest.approx([1, 1, 1, 1, 0.8, 0.6, 0.4, 0.2])
    assert resolve_stages(TrainConfig(iterations=10))[0].lr("d", 3) == TrainConfig().lr_d
    for bad, match in (
        ({"stages": [{"fraction": 0.5}]}, "sum to"),
        ({"stages": [{"fraction": 1.0, "lr": 1}]}, "unknown key"),
        ({"stages": [{"fraction": 1.0, "lr_decay": {"kind": "cosine"}}]}, "lr_decay"),
    ):
        with pytest.raises(VCEInputError, match=match):
            config_from_dict(bad)


def test_task_configuration_is_checked() -> None:
    vc = {"task": "virtual_contrast", "inputs": ["native", "t2"]}
    assert config_from_dict(vc).inputs == ["native", "t2"]
    for bad, match in (
        ({"inputs": ["native"]}, "task low_dose"),
        ({**vc, "inputs": []}, "no inputs"),
        ({**vc, "inputs": ["native", "labels"]}, "leak"),
        ({**vc, "inputs": ["native", "standard_dose"]}, "is the target"),
        ({**vc, "optional_inputs": ["adc"]}, "not inputs"),
        ({**vc, "target_context": True}, "target_context"),
        ({"task": "segmentation"}, "task"),
        ({"content_loss": "ssim"}, "content_loss"),
    ):
        with pytest.raises(VCEInputError, match=match):
            config_from_dict(bad)


def test_the_critic_takes_the_generator_geometry() -> None:
    geometry = ("spatial_dims", "in_modalities", "in_slices", "out_channels")
    vc = config_from_dict(
        {
            "task": "virtual_contrast",
            "inputs": ["native", "t2", "flair"],
            "mode": "2.5d",
            "context": 2,
            "target_context": True,
            "generator": "amcgan_generator",
            "generator_kwargs": {"ngf": 4, "msfc_channels": 4, "res_blocks": 1},
            "critic": "patch_discriminator",
            "critic_kwargs": {"base_channels": 4, "layers": 3, "strided": 1},
        }
    )
    generator, critic = model_kwargs(vc, "generator"), model_kwargs(vc, "critic")
    expected = {"spatial_dims": 2, "in_modalities": 3, "in_slices": 5, "out_channels": 5}
    assert {k: generator[k] for k in geometry} == {k: critic[k] for k in geometry} == expected
    assert critic["base_channels"] == 4 and "ngf" not in critic
    # the pair built from them fits: the discriminator scores the generator's 5-slice output given its input
    x = torch.randn(1, 15, 16, 16)
    y = build_model(vc.generator, **generator)(x)
    assert build_model(vc.critic, **critic)(y, x).shape[:2] == (1, 1)

    # low dose: the generator was not given out_channels, so the critic gets the generator's default (1)
    ld = config_from_dict({"mode": "2.5d", "context": 1, "critic_kwargs": {"num_res_blocks": 1}})
    assert model_kwargs(ld, "critic") == {
        "num_res_blocks": 1,
        "spatial_dims": 2,
        "in_slices": 3,
        "out_channels": 1,
    }
    ld_out = config_from_dict({"generator_kwargs": {"out_channels": 2}})
    assert model_kwargs(ld_out, "critic")["out_channels"] == 2

    # a critic geometry that contradicts the generator's is refused, one that repeats it is accepted
    with pytest.raises(
        VCEInputError, match=r"critic_kwargs.in_slices=1 differs from the generator's in_slices=3"
    ):
        model_kwargs(
            config_from_dict({"mode": "2.5d", "context": 1, "critic_kwargs": {"in_slices": 1}}), "critic"
        )
    assert (
        model_kwargs(config_from_dict({"critic_kwargs": {"spatial_dims": 2}}), "critic")["spatial_dims"] == 2
    )
    # built without the geometry, a critic names what it needs; a typo names the closest argument
    with pytest.raises(VCEInputError, match="needs spatial_dims, in_modalities, in_slices, out_channels"):
        build_model("patch_discriminator")
    with pytest.raises(VCEInputError, match="no argument 'num_res_block' .did you mean 'num_res_blocks'"):
        build_model("ld_cgan_generator", num_res_block=1)


def test_unknown_objective_and_vgg_content_loss(data: dict[str, list[str]], tmp_path: Path) -> None:
    from support import write_random_vgg
    from vce_core.errors import VCEModelError
    from vce_core.losses import VGGPerceptualLoss, multiscale_loss
    from vce_core.train import Trainer

    base = {**TINY, **data, "critic": ""}
    with pytest.raises(VCEModelError, match="unknown objective"):
        Trainer(config_from_dict(base, ["objective=nope"]), run_dir=tmp_path / "a")
    with pytest.raises(VCEInputError, match="perceptual_weights"):
        Trainer(config_from_dict(base, ["content_loss=vgg"]), run_dir=tmp_path / "b")
    with pytest.raises(VCEInputError, match="does not exist"):
        Trainer(config_from_dict(base, ["content_loss=vgg", f"perceptual_weights={tmp_path / 'no.pth'}"]))
    vgg = write_random_vgg(tmp_path / "vgg16.safetensors")
    trainer = Trainer(
        config_from_dict(base, ["content_loss=vgg", f"perceptual_weights={vgg}", "content_space=image"]),
        run_dir=tmp_path / "c",
    )
    from vce_core.models.ld_cgan import content_loss

    gen = torch.Generator().manual_seed(0)
    native = torch.rand(2, 1, 16, 16, generator=gen)
    preds = [torch.rand(2, 1, 16, 16, generator=gen), torch.rand(2, 1, 8, 8, generator=gen)]
    target = torch.rand(2, 1, 16, 16, generator=gen)
    loss = VGGPerceptualLoss(vgg)
    expected = multiscale_loss(loss, [preds[0] + native, preds[1] + F.avg_pool2d(native, 2)], target + native)
    torch.testing.assert_close(
        content_loss(trainer.cfg, preds, target, native, trainer.objective.vgg), expected
    )
    assert trainer.iteration()["content"] > 0


def test_virtual_contrast_run_card_and_resume_across_a_stage(tmp_path: Path) -> None:
    from support import write_contrast_cases

    folders = write_contrast_cases(tmp_path / "cases", 3, shape=(24, 24, 8))
    base = {
        "name": "vc",
        "task": "virtual_contrast",
        "inputs": ["native", "t2", "adc"],
        "optional_inputs": ["adc"],
        "data": [str(f) for f in folders[:2]],
        "val_data": [str(folders[2])],
        "generator": "hrfcn",
        "generator_kwargs": {"widths": [4, 8, 8], "stem_channels": 4, "res_blocks": 1},
        "critic": "",
        "crop": 16,
        "batch_size": 2,
        "iterations": 4,
        "stages": [
            {"fraction": 0.5, "lr_g": 1e-3},
            {"fraction": 0.5, "lr_g": 1e-4, "loss_weights": {"local": 10}},
        ],
        "val_every": 2,
        "val_slices": 2,
        "ckpt_every": 0,
        "cache_dtype": "float32",
        "threads": 1,
        "ema_decay": 0.5,
    }
    # a loss weight the objective never reads (here misspelt, in one stage) is refused before training
    typo = {**base, "stages": [base["stages"][0], {**base["stages"][1], "loss_weights": {"locall": 10}}]}
    with pytest.raises(
        VCEInputError, match="loss_weights locall are not terms of the hrfcn objective"
    ) as err:
        train(config_from_dict(typo), run_dir=tmp_path / "typo")
    assert "mae, ssim, local" in str(err.value) and not (tmp_path / "typo" / "card.json").exists()
    straight = train(config_from_dict(base), run_dir=tmp_path / "straight")
    assert straight.task == "virtual_contrast" and straight.inputs == ["native", "t2", "adc"]
    assert straight.optional_inputs == ["adc"] and straight.target == "standard_dose"
    assert straight.normalization["applied_to"] == ["native", "t2", "adc", "standard_dose"]
    assert [s["end"] for s in straight.training["stages"]] == [2, 4] and straight.training[
        "objective"
    ] == "hrfcn"
    assert {"mae", "psnr", "ssim", "native_mae", "native_psnr"} <= set(straight.validation)
    assert straight.content_loss is None and straight.dose_range is None
    assert straight.data["train"]["inputs"] == ["native", "t2", "adc"]
    assert read_card(tmp_path / "straight") == straight

    # interrupted as the second stage begins (stage boundaries are fractions of `iterations`, so the
    # interrupted run must have the same iterations), then resumed
    from vce_core.train import Trainer

    trainer = Trainer(config_from_dict(base), run_dir=tmp_path / "halves")
    original = trainer.objective.step

    def interrupting() -> dict:
        if trainer.step == 2:
            raise KeyboardInterrupt
        return original()

    trainer.objective.step = interrupting
    assert trainer.fit().training["stopped_by"] == "interrupted"
    assert main(["--resume", str(tmp_path / "halves")]) == 0
    a = torch.load(tmp_path / "straight" / "resume.pt", weights_only=False)
    b = torch.load(tmp_path / "halves" / "resume.pt", weights_only=False)
    assert a["stage_index"] == b["stage_index"] == 1
    for key in ("generator", "ema"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name} differs after resume"


def test_bias_loss_is_the_l1_of_block_means() -> None:
    """bias_loss against block means computed by numpy; an offset smaller than the noise is what it sees."""
    import numpy as np

    from vce_core.errors import VCEInputError
    from vce_core.models.ld_cgan import bias_loss

    gen = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 1, 16, 24, generator=gen), torch.randn(2, 1, 16, 24, generator=gen)
    d = (pred - target).numpy()
    blocks = d.reshape(2, 1, 4, 4, 6, 4).mean(axis=(3, 5))  # 4x4 blocks
    expected = np.abs(blocks).reshape(2, -1).sum(1).mean()
    assert float(bias_loss(pred, target, 4)) == pytest.approx(expected, rel=1e-5)
    noise = torch.randn(4, 1, 64, 64, generator=gen) * 0.04
    other = torch.randn(4, 1, 64, 64, generator=gen) * 0.04
    # an offset of a quarter of the noise: the block means see it (≈ 1.8×), voxel-wise L1 barely (≈ 1.03×)
    shifted = float(bias_loss(noise + 0.01, other, 8)) / float(bias_loss(noise, other, 8))
    voxelwise = float((noise + 0.01 - other).abs().mean() / (noise - other).abs().mean())
    assert shifted > 1.5 and voxelwise < 1.1
    with pytest.raises(VCEInputError, match="shape"):
        bias_loss(pred, target[:, :, :8], 4)
    with pytest.raises(VCEInputError, match="bias_pool"):
        bias_loss(pred, target, 0)


def test_lesion_bias_loss_is_the_l1_of_each_region_mean_per_sample() -> None:
    """lesion_bias_loss against a loop over (sample, region value); small regions are left out; a texture
    with zero mean over a region costs nothing, an offset over it does, however it falls on a block grid."""
    from vce_core.errors import VCEInputError
    from vce_core.models.ld_cgan import bias_loss, lesion_bias_loss

    gen = torch.Generator().manual_seed(1)
    pred, target = torch.randn(3, 1, 16, 16, generator=gen), torch.randn(3, 1, 16, 16, generator=gen)
    regions = torch.full((3, 1, 16, 16), float("nan"))
    regions[0, 0, :8, :8], regions[0, 0, 8:, :] = 0.1, -0.2  # two regions
    regions[1, 0, :6, :6], regions[1, 0, 12:, 12:] = 0.1, 0.3  # the same value as sample 0: its own region
    regions[2, 0, 5:7, 5:7] = 0.1  # 4 voxels: left out at min_voxels 16
    expected = 0.0
    for b in range(3):
        for v in torch.unique(regions[b][torch.isfinite(regions[b])]):
            m = regions[b] == v
            if int(m.sum()) >= 16:
                expected += abs(float((pred[b][m] - target[b][m]).mean()))
    assert float(lesion_bias_loss(pred, target, regions)) == pytest.approx(expected / 3, rel=1e-5)
    assert float(lesion_bias_loss(pred, target, regions, min_voxels=4)) > float(
        lesion_bias_loss(pred, target, regions)
    )
    # a ±1 checkerboard on a 6x6 lesion straddling 8x8 blocks: zero mean over the lesion, not per block
    lesion = torch.full((1, 1, 16, 16), float("nan"))
    lesion[0, 0, 5:11, 5:11] = 0.2
    board = torch.zeros(1, 1, 16, 16)
    board[0, 0, 5:11, 5:11] = (torch.arange(6).view(6, 1) + torch.arange(6)).remainder(2) * 2.0 - 1.0
    zero = torch.zeros_like(board)
    assert float(lesion_bias_loss(board, zero, lesion)) == pytest.approx(0.0, abs=1e-6)
    assert float(lesion_bias_loss(board + 0.01 * torch.isfinite(lesion), zero, lesion)) == pytest.approx(0.01)
    assert float(bias_loss(board, zero, 8)) > 0.05  # each 8x8 block holds an odd 3x3 corner of the board
    empty = lesion_bias_loss(pred.requires_grad_(), target, torch.full_like(regions, float("nan")))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(VCEInputError, match="one spatial size"):
        lesion_bias_loss(pred, target, regions[..., :8])
    with pytest.raises(VCEInputError, match="lesion_min_voxels"):
        lesion_bias_loss(pred, target, regions, min_voxels=0)


def test_t1_loss_is_the_mean_l1_over_known_voxels_with_the_target_clipped() -> None:
    from vce_core.errors import VCEInputError
    from vce_core.models.ld_cgan import T1_LOG_RANGE, t1_loss

    pred = torch.tensor([[[[0.1, -0.2], [0.3, 0.0]]]], requires_grad=True)
    target = torch.tensor([[[[0.0, float("nan")], [1.0, -0.1]]]])
    bound = 0.95 * T1_LOG_RANGE  # a target beyond the head's reach counts at the bound
    expected = (abs(0.1 - 0.0) + abs(0.3 - bound) + abs(0.0 + 0.1)) / 3
    loss = t1_loss(pred, target)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert float(pred.grad[0, 0, 0, 1]) == 0.0 and float(pred.grad[0, 0, 0, 0]) == pytest.approx(1 / 3)
    empty = t1_loss(pred, torch.full_like(target, float("nan")))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(VCEInputError, match="differ in shape"):
        t1_loss(pred, target[..., :1])


def test_balanced_t1_loss_weights_each_target_value_alike() -> None:
    """``balance=True``: the mean over distinct target values of each value's mean error (tissues count
    alike however many voxels they hold), checked against a hand computation and its gradient."""
    from vce_core.models.ld_cgan import T1_LOG_RANGE, t1_loss

    bound = 0.95 * T1_LOG_RANGE
    # nine voxels of one tissue (target −0.3, error 0.1 each), one of another (target 0, error 0.5),
    # one beyond the head's reach (counts at the bound) and one unknown voxel
    pred = torch.tensor([-0.2] * 9 + [0.5, 0.0, 7.0]).view(1, 1, 3, 4).requires_grad_(True)
    target = torch.tensor([-0.3] * 9 + [0.0, 2.0, float("nan")]).view(1, 1, 3, 4)
    plain = (9 * 0.1 + 0.5 + bound) / 11
    balanced = (0.1 + 0.5 + bound) / 3
    assert t1_loss(pred, target).item() == pytest.approx(plain, rel=1e-5)
    loss = t1_loss(pred, target, balance=True)
    assert loss.item() == pytest.approx(balanced, rel=1e-5)
    loss.backward()
    grad = pred.grad.flatten()
    assert grad[:9] == pytest.approx([1 / 27] * 9) and float(grad[9]) == pytest.approx(1 / 3)
    assert float(grad[11]) == 0.0
    # one tissue only: the balanced loss is the plain one
    same, fixed = torch.full_like(target, -0.3), pred.detach()
    assert float(t1_loss(fixed, same, balance=True)) == pytest.approx(float(t1_loss(fixed, same)))


def test_t1_class_loss_is_the_cross_entropy_of_the_tissue_set_of_each_known_voxel() -> None:
    """Against a hand computation: a voxel whose target is one class's log factor costs ``−log p`` of that
    class; one whose factor two classes share (choroid plexus and metastasis at 1.5 T) ``−log(p_a + p_b)``;
    unknown voxels cost nothing and get no gradient; ``balance`` averages per target value; a target no
    class holds is refused."""
    from vce_core.errors import VCEInputError
    from vce_core.models.ld_cgan import t1_class_loss, t1_class_table

    names, table = t1_class_table()
    rim, choroid, met, dura = (
        names.index(n) for n in ("enhancing_rim", "choroid_plexus", "metastasis", "dura")
    )
    assert float(table[0, choroid]) == float(table[0, met])  # one T1 at 1.5 T
    assert float(table[1, choroid]) != float(table[1, met])
    assert float(table[0, rim]) == 0.0 == float(table[1, rim])
    torch.manual_seed(0)
    logits = torch.randn(2, len(names), 1, 4, requires_grad=True)
    nan = float("nan")
    # sample 0 at 1.5 T: rim, choroid/metastasis (shared), dura, unknown
    # sample 1 at 3 T: metastasis x 3, unknown
    target = torch.tensor(
        [
            [[[0.0, float(table[0, choroid]), float(table[0, dura]), nan]]],
            [[[float(table[1, met])] * 3 + [nan]]],
        ]
    )
    rows = torch.stack([table[0], table[1]])
    p = torch.softmax(logits.detach(), dim=1)
    terms = [
        -torch.log(p[0, rim, 0, 0]),
        -torch.log(p[0, choroid, 0, 1] + p[0, met, 0, 1]),
        -torch.log(p[0, dura, 0, 2]),
        *[-torch.log(p[1, met, 0, j]) for j in range(3)],
    ]
    loss = t1_class_loss(logits, target, rows)
    assert loss.item() == pytest.approx(float(torch.stack(terms).mean()), rel=1e-5)
    loss.backward()
    assert float(logits.grad[:, :, 0, 3].abs().sum()) == 0.0  # the unknown voxel of each sample
    assert float(logits.grad[0, rim, 0, 0]) < 0  # raising the right class lowers the loss
    # balanced: four target values (rim, choroid/met at 1.5 T, dura, met at 3 T) count alike
    balanced = (terms[0] + terms[1] + terms[2] + torch.stack(terms[3:]).mean()) / 4
    assert t1_class_loss(logits.detach(), target, rows, balance=True).item() == pytest.approx(
        float(balanced), rel=1e-5
    )
    empty = t1_class_loss(logits, torch.full_like(target, nan), rows)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(VCEInputError, match="match no tissue class"):
        t1_class_loss(logits, torch.full_like(target, 0.2), rows)
    with pytest.raises(VCEInputError, match="rows"):
        t1_class_loss(logits, target, rows[:, :3])


def test_t1_class_head_maps_its_softmax_through_the_table_of_the_field_strength() -> None:
    """``t1_classes``: the T1 map is ``Σ p_k · table[B0, k]`` (a head made certain of one class gives that
    tissue's factor at 1.5 and at 3 T), the table travels in the state dict, and the option needs
    ``learn_t1``."""
    from vce_core.errors import VCEInputError
    from vce_core.models.ld_cgan import LowDoseGenerator, t1_class_table

    names, table = t1_class_table()
    kw = dict(spatial_dims=2, base_channels=8, num_res_blocks=1, base="physics", learn_t1=True)
    model = LowDoseGenerator(**kw, t1_classes=True)
    assert torch.equal(model.state_dict()["t1_table"], table)
    k = names.index("meningioma")
    logits = torch.zeros(2, len(names), 4, 4)
    logits[:, k] = 30.0
    t = model.t1_log_map(logits, torch.tensor([1.5, 3.0]))
    assert t.shape == (2, 1, 4, 4)
    assert torch.allclose(t[0], table[0, k].expand(1, 4, 4), atol=1e-5)
    assert torch.allclose(t[1], table[1, k].expand(1, 4, 4), atol=1e-5)
    uniform = model.t1_log_map(torch.zeros(1, len(names), 2, 2), torch.tensor([3.0]))
    assert torch.allclose(uniform, table[1].mean().expand(1, 1, 2, 2), atol=1e-6)
    assert "t1_table" not in LowDoseGenerator(**kw).state_dict()
    with pytest.raises(VCEInputError, match="t1_classes without learn_t1"):
        LowDoseGenerator(**{**kw, "learn_t1": False}, t1_classes=True)
    with pytest.raises(VCEInputError, match="t1_classes is"):
        LowDoseGenerator(**kw, t1_classes="yes")


def test_physics_base_trains_with_the_sequence_and_the_bias_term(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """A physics-base generator refuses cases without a T1 sequence, trains on cases that record it, and
    the bias term is logged and named among the card's deviations."""
    from vce_core.errors import VCEInputError

    physics = {**TINY, "generator_kwargs": {**TINY["generator_kwargs"], "base": "physics"}}
    with pytest.raises(VCEInputError, match="sequence"):
        train(config_from_dict({**physics, **data}, ["iterations=1"]), run_dir=tmp_path / "no-seq")
    folders = _physics_folders(data, tmp_path)
    cfg = config_from_dict(
        {**physics, **folders, "loss_weights": {"bias": 1.0}, "objective_kwargs": {"bias_pool": 4}},
        ["iterations=2", "val_every=2"],
    )
    card = train(cfg, run_dir=tmp_path / "run")
    assert card.config["base"] == "physics"
    assert any(
        d.startswith("bias term (ours): 1 x L1 of the 4x4 block means") for d in card.training["deviations"]
    )
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert "bias" in log[0].split(",") and len(log) >= 3


def _physics_folders(
    data: dict[str, list[str]], tmp_path: Path, *, labels: bool = False
) -> dict[str, list[str]]:
    """Copies of the test cases that record their T1 sequence (a physics base needs it) and, with
    ``labels``, the phantom's tissue labels (the T1 target needs them)."""
    import shutil

    from support import record_labels

    folders = {
        key: [str(record_sequence(shutil.copytree(p, tmp_path / "cases" / Path(p).name))) for p in paths]
        for key, paths in data.items()
    }
    for paths in folders.values():
        for p in paths if labels else ():
            record_labels(Path(p))
    return folders


def _t1_map_error(run: Path, folders: list[str]) -> tuple[float, float]:
    """Mean L1 error of the saved generator's T1 map on training crops (GroupNorm sees crop statistics)
    against the phantom's truth, and the same error of the head's zero output (its untrained start)."""
    from vce_core.data import SliceDataset
    from vce_core.models.ld_cgan import t1_loss
    from vce_core.synthesis import Synthesizer

    synth = Synthesizer.from_checkpoint(run, device="cpu")
    seen: list[torch.Tensor] = []
    hook = synth.model.t1_head.register_forward_hook(lambda _m, _i, o: seen.append(o))
    ds = SliceDataset(folders, crop=16, dtype="float32", t1_target=True)
    learned = untrained = 0.0
    for k in range(0, len(ds), max(1, len(ds) // 12)):
        s = ds[k]
        with torch.no_grad():
            nat, sd, fs = s["native"][None], s["standard_dose"][None], float(s["field_strength"])
            synth.model(nat, sd, 0.1, fs, sequence=s["sequence"][None])
        fs_t, target = torch.tensor([fs]), s["t1_target"][None]
        learned += float(t1_loss(synth.model.t1_log_map(seen[-1], fs_t), target))
        untrained += float(t1_loss(synth.model.t1_log_map(torch.zeros_like(seen[-1]), fs_t), target))
    hook.remove()
    return learned, untrained


def _assert_t1_learned(run: Path, folders: list[str]) -> None:
    """The run's logged T1 term fell to under half its start, and its saved T1 map is under half as far
    from the truth as the head's untrained start."""
    values = _logged(run, "t1")
    assert np.mean(values[-5:]) < 0.5 * np.mean(values[:5])
    learned, untrained = _t1_map_error(run, folders)
    assert learned < 0.5 * untrained


def _t1_only_config(learn: dict[str, Any], folders: dict[str, list[str]]) -> Any:
    """Training on the T1 term alone (no content, no critic), 200 fast iterations."""
    return config_from_dict(
        {**learn, **folders, "loss_weights": {"t1": 50.0}, "lambda_content": 0.0, "lambda_adv": 0.0},
        ["iterations=200", "lr_g=3e-3", "ema_decay=0.0", "critic=", "log_every=1"],
    )


def _logged(run: Path, column: str) -> list[float]:
    log = (run / "log.csv").read_text().splitlines()
    index = log[0].split(",").index(column)
    return [float(row.split(",")[index]) for row in log[1:]]


def test_t1_supervision_pulls_the_learned_t1_map_to_the_phantom_truth(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """``loss_weights.t1``: refused without a learned T1 map or on cases without labels; with them the
    trainer loads the target, logs the term, names it among the deviations, and training on the term alone
    brings the map's error below its start (the head starts at the default T1, log factor 0)."""
    from support import record_labels
    from vce_core.errors import VCEInputError

    physics = {**TINY, "generator_kwargs": {**TINY["generator_kwargs"], "base": "physics"}}
    folders = _physics_folders(data, tmp_path)
    with pytest.raises(VCEInputError, match="has none"):
        train(config_from_dict({**physics, **folders, "loss_weights": {"t1": 1.0}}), run_dir=tmp_path / "a")
    learn = {**physics, "generator_kwargs": {**physics["generator_kwargs"], "learn_t1": True}}
    with pytest.raises(VCEInputError, match="no tissue labels"):
        train(config_from_dict({**learn, **folders, "loss_weights": {"t1": 1.0}}), run_dir=tmp_path / "b")
    for paths in folders.values():
        for p in paths:
            record_labels(Path(p))
    with pytest.raises(VCEInputError, match="t1_balance"):
        bad = {**learn, **folders, "loss_weights": {"t1": 1.0}, "objective_kwargs": {"t1_balance": "yes"}}
        train(config_from_dict(bad), run_dir=tmp_path / "c")
    for bad_scope in ("tumour", True):
        with pytest.raises(VCEInputError, match="t1_tissues"):
            bad = {
                **learn,
                **folders,
                "loss_weights": {"t1": 1.0},
                "objective_kwargs": {"t1_tissues": bad_scope},
            }
            train(config_from_dict(bad), run_dir=tmp_path / "d")
    card = train(_t1_only_config(learn, folders), run_dir=tmp_path / "run")
    assert any(
        d.startswith("T1 supervision (ours, phantom only): 50 x L1") and d.endswith("on enhancing tissue")
        for d in card.training["deviations"]
    )
    for scope, words in (("all", "on every labelled tissue"), ("lesions", "on the enhancing lesions")):
        every = {**learn, "objective_kwargs": {"t1_tissues": scope}}
        trainer = Trainer(
            config_from_dict({**every, **folders, "loss_weights": {"t1": 1.0}}), run_dir=tmp_path / scope
        )
        assert trainer.train_set.t1_target == scope
        assert any(d.endswith(words) for d in trainer.objective.deviations())
    _assert_t1_learned(tmp_path / "run", folders["data"])


def test_lesion_term_loads_the_tissue_regions_and_falls_with_training(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """``loss_weights.lesion``: refused without labels; with them the trainer loads the regions (the T1
    target of ``t1_tissues``) though the T1 term is off, logs the term, names it among the deviations and,
    trained on it alone, lowers it."""
    from vce_core.errors import VCEInputError

    physics = {**TINY, "generator_kwargs": {**TINY["generator_kwargs"], "base": "physics"}}
    weights = {"loss_weights": {"lesion": 50.0}, "objective_kwargs": {"t1_tissues": "enhancing"}}
    with pytest.raises(VCEInputError, match="no tissue labels"):
        plain = _physics_folders(data, tmp_path / "plain")
        train(config_from_dict({**physics, **plain, **weights}), run_dir=tmp_path / "a")
    folders = _physics_folders(data, tmp_path, labels=True)
    with pytest.raises(VCEInputError, match="lesions are not terms of the ld_cgan objective"):
        train(
            config_from_dict({**physics, **folders, "loss_weights": {"lesions": 1.0}}), run_dir=tmp_path / "c"
        )
    with pytest.raises(VCEInputError, match="objective_kwargs bias_pol are not options of the ld_cgan"):
        misspelt = {**physics, **folders, "objective_kwargs": {"bias_pol": 4}}
        train(config_from_dict(misspelt), run_dir=tmp_path / "d")
    with pytest.raises(VCEInputError, match="lesion_min_voxels"):
        bad = {**weights, "objective_kwargs": {"lesion_min_voxels": 0}}
        train(config_from_dict({**physics, **folders, **bad}), run_dir=tmp_path / "b")
    trainer = Trainer(config_from_dict({**physics, **folders, **weights}), run_dir=tmp_path / "t")
    assert trainer.train_set.t1_target == "enhancing"
    card = train(
        config_from_dict(
            {**physics, **folders, **weights, "lambda_content": 0.0, "lambda_adv": 0.0},
            ["iterations=200", "lr_g=3e-3", "ema_decay=0.0", "critic=", "log_every=1"],
        ),
        run_dir=tmp_path / "run",
    )
    named = "lesion term (ours, phantom labels): 50 x L1"
    assert any(d.startswith(named) for d in card.training["deviations"])
    values = _logged(tmp_path / "run", "lesion")
    assert np.mean(values[-20:]) < 0.7 * np.mean(values[:20])


def test_t1_class_head_trains_on_the_tissue_labels(data: dict[str, list[str]], tmp_path: Path) -> None:
    """``t1_classes``: the cross-entropy is logged and named among the deviations, falls with training,
    and the saved generator (its class table restored from the checkpoint) maps T1 nearer the truth than
    its uniform start."""
    kwargs = {**TINY["generator_kwargs"], "base": "physics", "learn_t1": True, "t1_classes": True}
    folders = _physics_folders(data, tmp_path, labels=True)
    with pytest.raises(VCEInputError, match="t1_tissues all with a tissue-class T1 head"):
        every = {**TINY, "generator_kwargs": kwargs, "objective_kwargs": {"t1_tissues": "all"}}
        train(config_from_dict({**every, **folders, "loss_weights": {"t1": 1.0}}), run_dir=tmp_path / "a")
    card = train(_t1_only_config({**TINY, "generator_kwargs": kwargs}, folders), run_dir=tmp_path / "run")
    assert card.config["t1_classes"] is True
    assert any("cross-entropy of the T1 head's tissue classes" in d for d in card.training["deviations"])
    _assert_t1_learned(tmp_path / "run", folders["data"])


def test_lesion_focus_trains_on_labelled_cases_and_names_itself(
    data: dict[str, list[str]], tmp_path: Path
) -> None:
    """``lesion_focus``: refused on cases without labels; on labelled cases the run trains, its card keeps
    the share in the config and names the sampling among the deviations."""
    from vce_core.errors import VCEInputError

    folders = _physics_folders(data, tmp_path)
    with pytest.raises(VCEInputError, match="no tissue labels"):
        train(config_from_dict({**TINY, **folders, "lesion_focus": 0.25}), run_dir=tmp_path / "a")
    labelled = _physics_folders(data, tmp_path / "labelled", labels=True)
    card = train(config_from_dict({**TINY, **labelled, "lesion_focus": 0.25}), run_dir=tmp_path / "run")
    assert card.training["config"]["lesion_focus"] == 0.25 and card.training["iterations"] == 4
    assert any(
        d.startswith("lesion-centred crops (ours, phantom only): 25% of") for d in card.training["deviations"]
    )
    plain = train(config_from_dict({**TINY, **labelled}), run_dir=tmp_path / "plain")
    assert not any("lesion-centred" in d for d in plain.training["deviations"])
