"""One training loop for every registered generator: CPU or GPU, bf16, resume, DDP via torchrun, stages.

Usage::

    python -m vce_core.train --config configs/ld_cgan_2d_np.yaml [--set key=value ...] [--resume RUN_DIR]
    python -m vce_core.train --config configs/hrfcn_2d.yaml          # virtual contrast (seed 001)
    torchrun --nproc_per_node 4 -m vce_core.train --config configs/ld_cgan_3d_np.yaml

The loop is the same for every model; what one training iteration does is the model family's
:class:`vce_core.models.objective.Objective` (seed 000's WGAN-GP + content in
:mod:`vce_core.models.ld_cgan`, HRFCN's MAE + SSIM + local loss, PGMGVCE's pixelwise gradient + LSGAN,
DyeFreeNet's pretraining and cascade, AMCGAN's cGAN + λ·L1 in their model files). The trainer owns the data
(:func:`vce_core.data.build_dataset` for the config's ``task``), the generator and the objective's extra
networks, the optimisers ``g`` and ``d`` (Adam with the config's betas and weight decay), the **stages**
(:func:`vce_core.train_config.resolve_stages`: learning rates, lr decay and loss weights per stage, set
before every iteration), EMA, validation (:func:`validate`, with the figures of the config's ``task``),
checkpoints and bit-exact resume.

The settings are a :class:`vce_core.train_config.TrainConfig` (YAML + ``--set`` overrides). A run directory
holds ``weights.safetensors`` (EMA generator) and ``card.json`` (everything needed to rebuild and to cite the
model), written by :mod:`vce_core.checkpoint`, plus ``resume.pt`` (bit-exact continuation), ``log.csv`` and
``val.csv``. Ctrl-C, SIGTERM and ``max_minutes`` stop cleanly after writing all of them.
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import platform
import random
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn

from vce_core.checkpoint import ModelCard, atomic_write, write_checkpoint
from vce_core.data import (
    CaseDataset,
    ResumableSampler,
    build_dataset,
    find_case_folders,
    split_by_case,
)
from vce_core.errors import VCEInputError, VCEModelError
from vce_core.train_config import (
    Stage,
    TrainConfig,
    config_from_dict,
    load_config,
    model_kwargs,
    resolve_stages,
    stage_at,
)

__all__ = [
    "TrainConfig",
    "Trainer",
    "config_from_dict",
    "load_config",
    "main",
    "model_kwargs",
    "train",
    "validate",
]


# ============================================================================================== helpers
def hardware() -> dict[str, Any]:
    """CPU model, threads and GPU name of this machine (for the card)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU + CUDA) RNG states of this process."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _split_folders(cfg: TrainConfig) -> tuple[list[Path], list[Path]]:
    """Training and validation case folders: ``data`` and ``val_data``, or a ``val_fraction`` of the cases."""
    folders = find_case_folders(cfg.data)
    if not cfg.val_data:
        return split_by_case(folders, cfg.val_fraction, cfg.seed)
    val_folders = find_case_folders(cfg.val_data)
    overlap = {f.resolve() for f in folders} & {f.resolve() for f in val_folders}
    if overlap:
        raise VCEInputError(
            f"{len(overlap)} case folder(s) are in both data and val_data",
            expected="disjoint training and validation cases",
        )
    return folders, val_folders


class _Stop(Exception):
    """Raised by the SIGTERM handler; handled like KeyboardInterrupt."""


# ============================================================================================== trainer
class Trainer:
    """Holds models, optimisers, EMA, data and state; :meth:`fit` is the loop.

    The object is small on purpose: :meth:`iteration` applies the current stage (learning rates, loss
    weights), asks the objective for one training step and updates the EMA; the rest is bookkeeping
    (validation, checkpoints, resume, DDP). Objectives use :meth:`next_batch`, :meth:`update`, :meth:`weight`,
    :attr:`stage`, :attr:`autocast` and the networks (see :class:`vce_core.models.objective.Objective`).
    """

    def __init__(
        self, cfg: TrainConfig, *, run_dir: str | os.PathLike | None = None, command: str | None = None
    ):
        self.cfg = cfg
        self.command = command or shlex.join(
            [Path(sys.executable).name, "-m", "vce_core.train", *sys.argv[1:]]
        )
        self.run_dir = Path(run_dir or cfg.out_dir or Path("runs") / cfg.name)
        self.stages = resolve_stages(cfg)
        self._join_process_group()
        self._choose_device()
        self._build_models()
        self._build_optimisers()
        self._wrap_models()
        self._start_state()
        self._build_data()

    # ------------------------------------------------------------------------------------------ setup
    def _join_process_group(self) -> None:
        """DDP under torchrun (``WORLD_SIZE`` > 1): rank, world size, and this rank's share of the batch."""
        cfg = self.cfg
        self.ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.ddp and not dist.is_initialized():
            dist.init_process_group(
                backend="nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
            )
        self.rank = dist.get_rank() if self.ddp else 0
        self.world = dist.get_world_size() if self.ddp else 1
        self.master = self.rank == 0
        if cfg.batch_size % self.world:
            raise VCEInputError(
                f"batch_size {cfg.batch_size} is not divisible by {self.world} processes",
                expected="a multiple of the world size",
            )
        self.batch = cfg.batch_size // self.world

    def _choose_device(self) -> None:
        """Device (``auto``: this rank's GPU, else CPU), TF32 on CUDA, CPU threads, bf16 autocast or none."""
        cfg = self.cfg
        if cfg.device == "auto":
            self.device = torch.device(
                f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
            )
        else:
            self.device = torch.device(cfg.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.autocast = (
            (lambda: torch.autocast(self.device.type, dtype=torch.bfloat16)) if use_amp else nullcontext
        )
        self.amp_dtype = "bf16" if use_amp else "off"

    def _build_models(self) -> None:
        """Generator, the objective and its extra networks (e.g. the critic), and the generator's EMA copy.

        Every rank seeds identically first, so all ranks start from the same weights (DDP broadcasts anyway).
        """
        from vce_core.models import build_model
        from vce_core.models.objective import build_objective

        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        self.generator = build_model(cfg.generator, **model_kwargs(cfg, "generator")).to(self.device)
        name = cfg.objective or getattr(self.generator, "objective", "")
        if not name:
            raise VCEModelError(
                f"the generator {cfg.generator!r} names no training objective",
                expected="objective: <name> in the config (see vce_core.models.objective)",
            )
        self.objective = build_objective(name, self)
        terms = self.objective.loss_terms
        unknown = sorted({k for st in self.stages for k in st.loss_weights} - set(terms))
        if unknown:
            raise VCEInputError(
                f"loss_weights {', '.join(unknown)} are not terms of the {name} objective",
                expected="loss_weights among: " + (", ".join(terms) or "none (it reads no weights)"),
            )
        options = self.objective.options
        unknown = sorted(set(cfg.objective_kwargs) - set(options))
        if unknown:
            raise VCEInputError(
                f"objective_kwargs {', '.join(unknown)} are not options of the {name} objective",
                expected="objective_kwargs among: " + (", ".join(options) or "none (it reads none)"),
            )
        self.nets: dict[str, nn.Module] = self.objective.build_networks()
        self.fresh: list[str] = []  # init_from: tensors under train_only that the parent lacks
        self.parent: ModelCard | None = self._init_generator() if cfg.init_from else None
        self._freeze_generator()
        self.ema = copy.deepcopy(self.generator).eval().requires_grad_(False)

    def _init_generator(self) -> ModelCard:
        """Load ``cfg.init_from``'s weights into the generator; its card (the parent) is returned.

        Every tensor outside ``cfg.train_only`` must be the parent's (same name and shape): otherwise
        :class:`VCEInputError`, since the weights would not fit or would mean something else. Under
        ``train_only`` a tensor the parent lacks (a new or resized head) keeps its initialisation; their
        names are kept in ``self.fresh``."""
        from vce_core.checkpoint import read_card, read_weights

        folder = Path(self.cfg.init_from)
        try:
            parent = read_card(folder)
            weights = read_weights(folder)
        except (OSError, VCEModelError) as err:
            raise VCEInputError(
                f"init_from {str(folder)!r} is not a readable model folder ({err})",
                expected="a folder with card.json and weights.safetensors, e.g. assets/models/<name>",
            ) from err
        own = self.generator.state_dict()
        prefixes = tuple(self.cfg.train_only)

        def trained(key: str) -> bool:
            return bool(prefixes) and key.startswith(prefixes)

        def fits(key: str) -> bool:
            return key in weights and tuple(weights[key].shape) == tuple(own[key].shape)

        misfit = [k for k in own if not trained(k) and not fits(k)]
        misfit += [k for k in weights if k not in own and not trained(k)]
        if parent["model"] != self.cfg.generator or misfit:
            mine, theirs = dict(self.generator.config), dict(parent["config"])
            differ = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            raise VCEInputError(
                f"init_from {parent['name']!r} ({parent['model']}) does not fit this run's "
                f"{self.cfg.generator}"
                + (f": its {', '.join(differ)} differ" if differ else "")
                + (f"; {len(misfit)} tensors outside train_only differ, e.g. {misfit[0]}" if misfit else ""),
                expected="the checkpoint's generator and generator_kwargs (its card.json); only the "
                "parameters under train_only may be new",
            )
        self.generator.load_state_dict({k: weights[k] for k in own if fits(k)}, strict=False)
        self.fresh = sorted(k for k in own if not fits(k))
        return parent

    def _freeze_generator(self) -> None:
        """``cfg.train_only``: every generator parameter outside those prefixes stops taking gradients."""
        prefixes = tuple(self.cfg.train_only)
        if not prefixes:
            return
        names = [n for n, _ in self.generator.named_parameters()]
        unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
        if unknown:
            tops = sorted({n.split(".")[0] for n in names})
            raise VCEInputError(
                f"train_only {unknown} match no parameter of the generator",
                expected=f"prefixes of its parameter names, e.g. {', '.join(tops)}",
            )
        for n, param in self.generator.named_parameters():
            param.requires_grad_(n.startswith(prefixes))

    def _lineage(self, own: list[str]) -> dict[str, Any]:
        """The card's ``training`` fields of a fine-tuned run: the parent's record and all deviations."""
        if self.parent is None:
            return {"deviations": own}
        cfg = self.cfg
        trained = ", ".join(cfg.train_only) if cfg.train_only else "all parameters"
        fresh = sorted({k.rsplit(".", 1)[0] for k in self.fresh})
        step = (
            f"fine-tuned from {self.parent['name']} for {cfg.iterations} generator iterations, trained: "
            f"{trained} (the rest frozen)" + (f", new: {', '.join(fresh)}" if fresh else "")
        )
        parent_training = dict(self.parent.get("training") or {})
        inherited = list(parent_training.get("deviations", []))
        own = [d for d in own if d not in inherited]  # the config's fixed list is the parent's too
        return {
            "deviations": [*inherited, step + (": " + "; ".join(own) if own else "")],
            "initialised_from": {
                "folder": cfg.init_from,
                "name": self.parent["name"],
                "training": parent_training,
            },
        }

    @property
    def critic(self) -> nn.Module | None:
        """The objective's ``critic`` network, if it has one."""
        return self.nets.get("critic")

    def _build_optimisers(self) -> None:
        """Adam ``g`` (generator side) and ``d`` (critic side) over the objective's parameter groups."""
        cfg = self.cfg
        self.opts: dict[str, torch.optim.Optimizer] = {
            which: torch.optim.Adam(
                params,
                lr=self.stages[0].lr(which, 0),
                betas=tuple(cfg.betas),
                weight_decay=cfg.weight_decay,
            )
            for which, params in self.objective.optimizer_parameters().items()
        }

    def _wrap_models(self) -> None:
        """Modules the updates run through: DDP-wrapped under torchrun; the generator compiled if asked."""
        self.g_train: nn.Module = self.generator
        self.train_nets: dict[str, nn.Module] = dict(self.nets)
        if self.ddp:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            unused = self.objective.ddp_find_unused
            self.g_train = DDP(self.generator, device_ids=ids, find_unused_parameters=unused)
            for name, net in self.nets.items():
                if any(p.requires_grad for p in net.parameters()):
                    self.train_nets[name] = DDP(net, device_ids=ids, find_unused_parameters=unused)
        if self.cfg.compile:
            self.g_train = torch.compile(self.g_train)

    def _start_state(self) -> None:
        """Counters of a new run and the per-rank noise / dose random streams."""
        self.step = 0  # generator updates done
        self.batches_drawn = 0  # batches this rank has taken from its sampler
        self.elapsed = 0.0  # training wall time (s), accumulated over resumes
        self.stage_index = -1  # the stage whose begin_stage ran last (-1: none yet)
        self.val_history: list[dict[str, Any]] = []
        seed = self.cfg.seed + 1000 * self.rank
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def _build_data(self) -> None:
        """Training set (every rank) and validation set (rank 0), split by case, never by slice."""
        cfg = self.cfg
        train_folders, val_folders = _split_folders(cfg)
        common = dict(
            context=cfg.context,
            normalization=cfg.normalization,
            brain_fraction=cfg.brain_fraction,
            cache_size=cfg.cache_size,
            dtype=cfg.cache_dtype,
            patches_per_case=cfg.patches_per_case,
            task=cfg.task,
            inputs=cfg.inputs,
            optional_inputs=cfg.optional_inputs,
            target=cfg.target,
            target_context=cfg.target_context,
        )
        # an objective that supervises a learned T1 map (ld_cgan's loss_weights.t1) needs the phantom's T1
        t1 = getattr(self.objective, "t1_target", False)
        self.train_set: CaseDataset = build_dataset(
            cfg.mode,
            train_folders,
            crop=cfg.crop,
            flips=cfg.flips,
            ce_focus=cfg.ce_focus,
            lesion_focus=cfg.lesion_focus,
            t1_target=t1,
            **common,
        )
        self.val_set: CaseDataset | None = (
            build_dataset(cfg.mode, val_folders, crop=None, flips=False, **common)
            if val_folders and self.master
            else None
        )
        self._batches: Iterator[dict[str, Any]] | None = None

    # ------------------------------------------------------------------------------------------ data
    def next_batch(self) -> dict[str, Any]:
        """The next training batch of this rank, moved to the device (the stream is resumable)."""
        if self._batches is None:
            sampler = ResumableSampler(
                len(self.train_set),
                seed=self.cfg.seed,
                rank=self.rank,
                world_size=self.world,
                start=self.batches_drawn * self.batch,
            )
            loader = torch.utils.data.DataLoader(
                self.train_set,
                batch_size=self.batch,
                sampler=sampler,
                num_workers=self.cfg.num_workers,
                pin_memory=self.device.type == "cuda",
                persistent_workers=self.cfg.num_workers > 0,
                # the loader draws its worker base seed from this generator, not from the global torch RNG
                generator=torch.Generator().manual_seed(self.cfg.seed + self.rank),
            )
            self._batches = iter(loader)
        batch = next(self._batches)
        self.batches_drawn += 1
        return {
            k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()
        }

    # ------------------------------------------------------------------------------------------ updates
    @property
    def stage(self) -> Stage:
        """The stage of the current iteration (learning rates, loss weights, phase)."""
        return stage_at(self.stages, self.step)

    def weight(self, name: str, default: float) -> float:
        """Loss weight ``name`` of the current stage (the config's ``loss_weights``), else ``default``."""
        return float(self.stage.loss_weights.get(name, default))

    def update(self, which: str, loss: Tensor) -> None:
        """Step optimiser ``which`` (``g`` or ``d``): zero grads, backward, clip (``grad_clip``), step."""
        opt = self.opts[which]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], self.cfg.grad_clip)
        opt.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = min(self.cfg.ema_decay, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.generator.parameters(), strict=False):
            e.lerp_(p.detach(), 1.0 - decay)
        for e, p in zip(self.ema.buffers(), self.generator.buffers(), strict=False):
            e.copy_(p)

    @torch.no_grad()
    def reset_ema(self) -> None:
        """Make the EMA an exact copy of the generator (at a stage transition)."""
        self.ema.load_state_dict(self.generator.state_dict())

    def _apply_stage(self) -> None:
        """Enter the current stage if it is new (objective hook, EMA reset) and set its learning rates."""
        stage = self.stage
        if stage.index != self.stage_index:
            self.objective.begin_stage(stage, first_time=True)
            if self.stage_index >= 0:
                self.reset_ema()
            self.stage_index = stage.index
        for which, opt in self.opts.items():
            lr = stage.lr(which, self.step)
            for group in opt.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------------------------------ loop
    def iteration(self) -> dict[str, float]:
        """One training iteration: the stage's settings, the objective's step, the EMA; returns its losses."""
        self._apply_stage()
        stats = self.objective.step()
        self._update_ema()
        self.step += 1
        return stats

    def fit(self) -> ModelCard:
        """Train to ``iterations`` generator updates (or ``max_minutes``, Ctrl-C, SIGTERM); write the run.

        Returns the card written to the run directory.
        """
        if self.master:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(asdict(self.cfg), sort_keys=False))
        log = _CsvLog(self.run_dir / "log.csv", self.master)
        tb = _tensorboard(self.run_dir) if self.master else None
        stop, rate = self._run_iterations(log, tb)
        if stop != "interrupted":
            self._validate_and_log(tb)
        card = self.save(rate, stop=stop)
        log.close()
        if tb is not None:
            tb.close()
        return card

    def _run_iterations(self, log: _CsvLog, tb: Any) -> tuple[str, float]:
        """The loop: iterate until done, out of time or interrupted; returns (stopped by, iterations/s)."""
        from tqdm import tqdm

        cfg = self.cfg
        start_step, t0, elapsed0 = self.step, time.perf_counter(), self.elapsed
        stop = "iterations"
        bar = tqdm(
            total=cfg.iterations,
            initial=self.step,
            disable=not self.master,
            dynamic_ncols=True,
            desc=cfg.name,
        )
        try:
            with _sigterm_raises_stop():
                while self.step < cfg.iterations:
                    stats = self.iteration()
                    self.elapsed = elapsed0 + time.perf_counter() - t0
                    rate = (self.step - start_step) / max(time.perf_counter() - t0, 1e-9)
                    bar.update(1)
                    self._after_iteration(stats, rate, bar, log, tb)
                    if cfg.max_minutes and self.elapsed - elapsed0 >= 60 * cfg.max_minutes:
                        stop = "max_minutes"
                        break
        except (KeyboardInterrupt, _Stop):
            stop = "interrupted"
            if self.master:
                print(f"\ninterrupted at step {self.step}: saving to {self.run_dir}", file=sys.stderr)
        finally:
            bar.close()
        return stop, (self.step - start_step) / max(time.perf_counter() - t0, 1e-9)

    def _after_iteration(self, stats: dict[str, float], rate: float, bar: Any, log: _CsvLog, tb: Any) -> None:
        """Log every ``log_every`` steps, validate every ``val_every``, checkpoint every ``ckpt_every``."""
        cfg = self.cfg
        if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
            bar.set_postfix({k: f"{v:.4g}" for k, v in stats.items()} | {"it/s": f"{rate:.3g}"})
            log.write(
                {"step": self.step, "elapsed_s": round(self.elapsed, 2), "it_per_s": round(rate, 4), **stats}
            )
            if tb is not None:
                for k, v in stats.items():
                    tb.add_scalar(f"train/{k}", v, self.step)
        if cfg.val_every and self.step % cfg.val_every == 0 and self.step < cfg.iterations:
            self._validate_and_log(tb)
        if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.iterations:
            self.save(rate, stop="checkpoint")

    # ------------------------------------------------------------------------------------------ validation
    def _validate_and_log(self, tb: Any) -> None:
        if not self.master or self.val_set is None:
            return
        metrics = validate(self.ema, self.val_set, self.cfg, self.device, self.autocast)
        metrics = {"step": self.step, **metrics}
        self.val_history.append(metrics)
        _CsvLog(self.run_dir / "val.csv", True).write(metrics, close=True)
        if tb is not None:
            for k, v in metrics.items():
                if k != "step" and isinstance(v, float) and math.isfinite(v):
                    tb.add_scalar(f"val/{k}", v, self.step)

    # ------------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-for-bit (RNG states of every rank included)."""
        rngs = [rng_state()]
        if self.ddp:
            rngs = [None] * self.world
            dist.all_gather_object(rngs, rng_state())
        return {
            "config": asdict(self.cfg),
            "step": self.step,
            "batches_drawn": self.batches_drawn,
            "elapsed": self.elapsed,
            "world_size": self.world,
            "stage_index": self.stage_index,
            "generator": self.generator.state_dict(),
            "networks": {name: net.state_dict() for name, net in self.nets.items()},
            "ema": self.ema.state_dict(),
            "optimizers": {which: opt.state_dict() for which, opt in self.opts.items()},
            "scaler": None,  # bf16 autocast needs no loss scaling
            "rng": rngs,
            "val_history": self.val_history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["world_size"] != self.world:
            raise VCEInputError(
                f"the run was trained with {state['world_size']} processes, resumed with {self.world}",
                expected="the same number of processes to resume bit-for-bit",
            )
        self.generator.load_state_dict(state["generator"])
        for name, net in self.nets.items():
            net.load_state_dict(state["networks"][name])
        self.ema.load_state_dict(state["ema"])
        for which, opt in self.opts.items():
            opt.load_state_dict(state["optimizers"][which])
        self.step, self.batches_drawn, self.elapsed = state["step"], state["batches_drawn"], state["elapsed"]
        self.stage_index = state.get("stage_index", -1)
        if 0 <= self.stage_index == self.stage.index:  # resumed inside a stage: re-apply its settings
            self.objective.begin_stage(self.stage, first_time=False)
        self.val_history = list(state.get("val_history", []))
        set_rng_state(state["rng"][self.rank])
        self._batches = None

    def _normalization_card(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.task == "virtual_contrast":
            return {
                "method": cfg.normalization,
                "fit_on": "native for T1 images (native, low doses, the target); every other input on itself",
                "mask": "brain_mask of the native image",
                "applied_to": [*cfg.inputs, cfg.target],
                "per_case": True,
            }
        return {
            "method": cfg.normalization,
            "fit_on": "native",
            "mask": "brain_mask",
            "applied_to": ["native", "standard_dose", "low_dose"],
            "per_case": True,
        }

    def _sampling_deviations(self) -> list[str]:
        """How the training crops were chosen, where that is ours (``lesion_focus``)."""
        share = self.cfg.lesion_focus
        if not share:
            return []
        return [
            f"lesion-centred crops (ours, phantom only): {share:.0%} of the training crops centred on a "
            "voxel of a lesion tissue (the phantom's labels), each lesion tissue of a case drawn alike"
        ]

    def _task_card(self) -> dict[str, Any]:
        cfg = self.cfg
        if cfg.task != "virtual_contrast":
            return {}
        return {
            "task": cfg.task,
            "inputs": list(cfg.inputs),
            "optional_inputs": list(cfg.optional_inputs),
            "target": cfg.target,
        }

    def card(self, rate: float, stop: str) -> ModelCard:
        """The model card of the run as it stands (``rate``: iterations/s; ``stop``: why training stopped)."""
        cfg = self.cfg
        critic = self.critic
        return ModelCard(
            name=cfg.name,
            display_name=cfg.display_name or cfg.name,
            model=cfg.generator,
            config=self.generator.config,
            critic=(
                {"model": cfg.critic, "config": critic.config}
                if critic is not None
                else (self.parent or {}).get("critic")
            ),
            data_mode=cfg.mode,
            context=cfg.context if cfg.mode == "2.5d" else 0,
            patch_size=cfg.crop,
            normalization=self._normalization_card(),
            weights_are="EMA of the generator" if cfg.ema_decay > 0 else "generator",
            training={
                "config": asdict(cfg),
                "command": self.command,
                "objective": self.objective.name,
                "stages": [asdict(stage) for stage in self.stages],
                "iterations": self.step,
                "target_iterations": cfg.iterations,
                "stopped_by": stop,
                "wall_time_s": round(self.elapsed, 1),
                "it_per_s": round(rate, 4),
                "world_size": self.world,
                "device": str(self.device),
                "amp": self.amp_dtype,
                "hardware": hardware(),
                **self._lineage(
                    [*cfg.deviations, *self._sampling_deviations(), *self.objective.deviations()]
                ),
                "finished_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            data={
                "train": self.train_set.describe(),
                "val": self.val_set.describe() if self.val_set else None,
            },
            validation=self.val_history[-1] if self.val_history else {},
            validation_history=self.val_history,
            **self.objective.card_fields(),
            **self._task_card(),
        )

    def save(self, rate: float, stop: str) -> ModelCard:
        """Write resume.pt, then the checkpoint (EMA weights + card) on rank 0; returns the card."""
        state = self.state_dict()  # collective under DDP: every rank calls it
        card = self.card(rate, stop)
        if self.master:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.run_dir / "resume.pt", lambda p: torch.save(state, p))
            write_checkpoint(self.run_dir, self.ema.state_dict(), card)
        return card


# ============================================================================================== validation
def _validation_items(dataset: CaseDataset, val_slices: int) -> list[int]:
    """Dataset indices to validate, per (case, dose): every item (3-D: one whole volume each), or
    ``val_slices`` evenly spaced slices when there are more (2-D/2.5-D). Virtual-contrast items all have
    dose 0, so they are grouped per case."""
    groups: dict[tuple[int, float], list[int]] = {}
    for i, (ci, dose, _) in enumerate(dataset.items):
        groups.setdefault((ci, dose), []).append(i)
    chosen: list[int] = []
    for idx in groups.values():
        if dataset.spatial_dims == 2 and len(idx) > val_slices:
            idx = [idx[int(round(j))] for j in np.linspace(0, len(idx) - 1, val_slices)]
        chosen.extend(idx)
    return chosen


def _means(values: dict[str, list[float]], prefix: str = "") -> dict[str, float]:
    """``{prefix + key: mean}`` of each list of figures (NaN for an empty one)."""
    return {f"{prefix}{k}": float(np.mean(v)) if v else float("nan") for k, v in values.items()}


Scores = Callable[[int, dict[str, Any]], dict[str, float] | None]
"""Per-item figures of a validation: ``scores(dataset index, item)``, None for an item that is skipped."""


@torch.no_grad()
def validate(
    model: nn.Module,
    dataset: CaseDataset,
    cfg: TrainConfig,
    device: torch.device,
    autocast: Any = nullcontext,
) -> dict[str, Any]:
    """Validation figures of ``model`` on ``dataset`` for the config's task, with the baseline the model has
    to beat on the same images (the model is put in eval mode for the loop and restored after).

    Items: ``cfg.val_slices`` evenly spaced brain slices per (case, dose), whole bounding-box slices
    (2-D/2.5-D); whole bounding-box volumes (3-D); items with fewer than 50 brain voxels are skipped, and a
    figure that is undefined on an item (e.g. no CE voxel) is skipped for that figure.

    * ``low_dose`` (:func:`_low_dose_scores`): PSNR, SSIM, MAE_CE, MAE_σ of ``x̂_LD = x_NA + ŷ_LD`` vs. the
      real low dose in normalised units, and ``linear_*`` the same of ``x_NA + d (x_SD − x_NA)``;
    * ``virtual_contrast`` (:func:`_contrast_scores`): MAE, PSNR, SSIM of the synthesized standard dose
      inside the brain, and ``native_*`` the same of the native image, in the native image's 0.5–99.5
      percentile range.
    """
    chosen = _validation_items(dataset, cfg.val_slices)
    if cfg.task == "virtual_contrast":
        keys = [f"{p}{k}" for p in ("", "native_") for k in ("mae", "psnr", "ssim")]
        scores, units = _contrast_scores(model, dataset, device, autocast), "native 0.5-99.5 percentile range"
    else:
        keys = [f"{p}{k}" for p in ("", "linear_") for k in ("psnr", "ssim", "mae_ce", "mae_sigma")]
        scores, units = _low_dose_scores(model, dataset, device, autocast), "normalised"
    values: dict[str, list[float]] = {k: [] for k in keys}
    was_training = model.training
    model.eval()
    try:
        for i in chosen:
            for key, v in (scores(i, dataset[i]) or {}).items():
                if math.isfinite(v):
                    values[key].append(v)
    finally:
        model.train(was_training)
    out: dict[str, Any] = _means(values)
    out["n_images"] = len(chosen)
    out["units"] = units
    return out


def _low_dose_scores(model: nn.Module, dataset: CaseDataset, device: torch.device, autocast: Any) -> Scores:
    """Low-dose figures of one item: the model's and the linear baseline's (see :func:`validate`).

    The CE mask is :func:`vce_core.preprocess.ce_mask` of the real native/standard dose (threshold 0.1) in
    the brain, MAE_σ on brain ∖ CE. Noise comes from a fixed generator (one draw per item, skipped or not),
    so validation never touches the training RNG streams.
    """
    from vce_core.evaluate import case_metrics
    from vce_core.preprocess import ce_mask

    gen = torch.Generator(device="cpu").manual_seed(12345)
    centre = getattr(dataset, "context", 0)

    def scores(i: int, s: dict[str, Any]) -> dict[str, float] | None:
        nat, sd = s["native"][None].to(device), s["standard_dose"][None].to(device)
        noise = torch.randn((1, 1, *nat.shape[2:]), generator=gen).to(device)
        with autocast():
            dose, field = s["dose"][None].to(device), s["field_strength"][None].to(device)
            seq = s["sequence"][None].to(device) if "sequence" in s else None
            pred = model(nat, sd, dose, field, noise, sequence=seq)[0].float()
        brain = s["brain"][0].numpy()
        if brain.sum() < 50:
            return None
        x_na = s["native"][centre].numpy()
        x_sd = s["standard_dose"][centre].numpy()
        real = x_na + s["residual"][0].numpy()
        ce = np.asarray(ce_mask(x_na, x_sd, 0.1, mask=brain), dtype=bool)
        fake = x_na + pred[0, 0].cpu().numpy()
        linear = x_na + float(s["dose"]) * (x_sd - x_na)
        return {
            **case_metrics(fake, real, brain, ce),
            **{f"linear_{k}": v for k, v in case_metrics(linear, real, brain, ce).items()},
        }

    return scores


def _padded_forward(model: nn.Module, x: Tensor, autocast: Any) -> Tensor:
    """``model(x)`` with ``x``'s spatial size padded (edge values) to the model's ``size_multiple``, then
    cropped back (validation slices are padded to multiples of 8 only)."""
    import torch.nn.functional as F

    m = int(getattr(model, "size_multiple", 8))
    size = x.shape[2:]
    pads: list[int] = []
    for n in reversed(size):
        pads += [0, -(-n // m) * m - n]
    if any(pads):
        x = F.pad(x, pads, mode="replicate")
    with autocast():
        out = model(x).float()
    return out[(slice(None), slice(None), *(slice(0, n) for n in size))]


def _in_native_range(y: np.ndarray, case: Any) -> np.ndarray:
    """Normalised ``y`` back to native intensities, divided by the native 0.5–99.5 percentile range."""
    from vce_core.preprocess import denormalize

    lo, hi = case.display_range
    return (np.asarray(denormalize(y, case.params["native"]), dtype=np.float64) - lo) / (hi - lo)


def _contrast_scores(model: nn.Module, dataset: CaseDataset, device: torch.device, autocast: Any) -> Scores:
    """Virtual-contrast figures of one item: the model's and the native image's (see :func:`validate`).

    Prediction and target are mapped back to the native image's intensities
    (:func:`vce_core.preprocess.denormalize` with the case's native parameters) and divided by the native
    image's 0.5–99.5 percentile range in the brain, so the figures do not depend on the normalisation method.
    """
    from vce_core import metrics

    def scores(i: int, s: dict[str, Any]) -> dict[str, float] | None:
        brain = s["brain"][0].numpy()
        if brain.sum() < 50:
            return None
        case = dataset.case(dataset.items[i][0])
        out = _padded_forward(model, s["inputs"][None].to(device), autocast)
        ref = _in_native_range(s["target"][s["target"].shape[0] // 2].numpy(), case)
        rng = float(ref[brain].max() - ref[brain].min())
        figures: dict[str, float] = {}
        for prefix, x in (
            ("", _in_native_range(out[0, out.shape[1] // 2].cpu().numpy(), case)),
            ("native_", _in_native_range(s["native"][0].numpy(), case)),
        ):
            figures[f"{prefix}mae"] = metrics.mae(x, ref, brain)
            figures[f"{prefix}psnr"] = metrics.psnr(x, ref, data_range=rng, mask=brain)
            figures[f"{prefix}ssim"] = metrics.ssim(x, ref, data_range=rng, mask=brain)
        return figures

    return scores


# ======================================================================================== small utilities
@contextmanager
def _sigterm_raises_stop() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`_Stop` (main thread only: signals are set there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: Any) -> None:
        raise _Stop()

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _CsvLog:
    """Append-only CSV (rank 0 only). Its header is the first row's keys; a row with a key the header
    lacks (the critic's terms once a warm-up ends, a stage's own terms) widens it: the file is rewritten
    once with the new columns, earlier rows leaving them empty."""

    def __init__(self, path: Path, active: bool):
        self.path, self.active, self._file, self._writer = path, active, None, None
        self._fields: list[str] = []

    def write(self, row: dict[str, Any], close: bool = False) -> None:
        if not self.active:
            return
        if self._file is None:
            self._open(list(row))
        added = [k for k in row if k not in self._fields]
        if added:
            self._widen(added)
        self._writer.writerow(row)  # type: ignore[union-attr]
        self._file.flush()  # type: ignore[union-attr]
        if close:
            self.close()

    def _open(self, fields: list[str]) -> None:
        new = not self.path.exists()
        if not new:
            with self.path.open(newline="") as f:
                fields = next(csv.reader(f), fields) or fields
        self._fields = fields
        self._file = self.path.open("a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields)  # every key: see _widen
        if new:
            self._writer.writeheader()

    def _widen(self, added: list[str]) -> None:
        self.close()
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        fields = self._fields + added

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

        atomic_write(self.path, write)
        self._open(fields)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file, self._writer = None, None


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))


# ============================================================================================== CLI
def train(
    cfg: TrainConfig,
    *,
    run_dir: str | os.PathLike | None = None,
    resume: str | os.PathLike | None = None,
    command: str | None = None,
) -> ModelCard:
    """Train (or continue) a run and return its card. ``resume`` is a run directory holding ``resume.pt``."""
    trainer = Trainer(cfg, run_dir=run_dir or resume, command=command)
    if resume is not None:
        trainer.load_state_dict(_load_resume(Path(resume)))
    try:
        return trainer.fit()
    finally:
        if trainer.ddp and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _load_resume(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "resume.pt"
    if not path.is_file():
        raise VCEModelError(
            "no resume.pt in the run directory",
            path=run_dir,
            expected="a run directory written by vce_core.train",
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable checkpoint
        raise VCEModelError(f"resume.pt cannot be read ({err})", path=path) from err


_SUMMARY_METRICS = (
    ("psnr", "PSNR", ".2f"),
    ("ssim", "SSIM", ".4f"),
    ("mae", "MAE", ".4f"),
    ("mae_ce", "MAE_CE", ".4f"),
    ("mae_sigma", "MAE_sigma", ".4f"),
)


def _summary(card: ModelCard) -> str:
    """One line: iterations, wall time, speed, why training stopped, and the last validation metrics."""
    t, v = card.training, card.validation
    shown = ", ".join(f"{label} {v[key]:{fmt}}" for key, label, fmt in _SUMMARY_METRICS if key in v)
    return (
        f"{card.name}: {t['iterations']} iterations in {t['wall_time_s']:.0f} s "
        f"({t['it_per_s']:.3g} it/s, stopped by {t['stopped_by']}); val {shown or 'not run'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vce_core.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config (keys of TrainConfig)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable), e.g. --set iterations=2000 "
        "--set generator_kwargs.base_channels=8",
    )
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR (its config + --set overrides)"
    )
    parser.add_argument(
        "--out", metavar="RUN_DIR", help="run directory (default: out_dir of the config, else runs/<name>)"
    )
    args = parser.parse_args(argv)
    command = shlex.join(
        [Path(sys.executable).name, "-m", "vce_core.train", *(sys.argv[1:] if argv is None else argv)]
    )
    try:
        if args.resume:
            state_cfg = _load_resume(Path(args.resume))["config"]
            cfg = config_from_dict(state_cfg, args.overrides)
        elif args.config:
            cfg = load_config(args.config, args.overrides)
        else:
            parser.error("give --config (new run) or --resume RUN_DIR")
        card = train(cfg, run_dir=args.out, resume=args.resume, command=command)
    except VCEInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if card.training["stopped_by"] == "interrupted":
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        print(_summary(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
