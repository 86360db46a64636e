"""Trainer: the ST-CLIP modules on a label split's train classes, with the paper's schedule (method.md section 8).

Data order and box subsets are functions of (seed, step), and checkpoints hold weights, momentum buffers and the
step, so ``--resume`` continues exactly where a run stopped. Multi-GPU runs under torchrun (DDP): every rank
takes its share of each global batch of keyframes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler

from stclip_cli.weights.cards import ModelCard, build_model, card_from_dict, load_card, load_tensors, read_metadata, save_checkpoint
from stclip_cli.data.common import DatasetView, KeyframeDataset, collate
from stclip_cli.errors import StclipError, first_line
from stclip_cli.benchmark.losses import action_loss
from stclip_cli.model.base import ActionModel
from stclip_cli.core.preprocess import ClipPreprocess
from stclip_cli.core.scoring import ModelInputs

LAST = "last.safetensors"
FINAL = "final.safetensors"
METRICS = "metrics.jsonl"

# the paper's settings per dataset (method.md section 8); every one can be overridden from the CLI
PAPER_DEFAULTS: dict[str, dict[str, Any]] = {
    "jhmdb": dict(model="stclip-vitb16", iterations=3000, lr=2.5e-4, warmup_iters=800),
    "ucf24": dict(model="stclip-vitb16", iterations=3000, lr=2.5e-4, warmup_iters=800),
    "ava": dict(model="stclip-vitl14-ava", iterations=20000, lr=4e-4, warmup_iters=2000),
}


@dataclass
class TrainConfig:
    """Every training setting; defaults are the paper's J-HMDB / UCF101-24 ones."""

    dataset: str
    split: int
    out: Path
    model: str = "stclip-vitb16"
    iterations: int = 3000
    batch_size: int = 8
    lr: float = 2.5e-4
    momentum: float = 0.9
    weight_decay: float = 1e-7
    warmup_iters: int = 800
    warmup_factor: float = 0.25
    max_boxes: int = 10
    gamma: float = 2.0
    seed: int = 2
    checkpoint_every: int = 500
    log_every: int = 20
    workers: int = 2
    device: str = "auto"
    half: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Every number in range, named by its flag: one line before the dataset or any model loads, never a
        division by zero, a silent zero-step run or a worker count the DataLoader rejects with a traceback."""
        for flag, value, low, high in (
            ("--iterations", self.iterations, 1, None), ("--batch-size", self.batch_size, 1, None),
            ("--max-boxes", self.max_boxes, 1, None), ("--checkpoint-every", self.checkpoint_every, 1, None),
            ("--log-every", self.log_every, 1, None), ("--warmup-iters", self.warmup_iters, 0, None),
            ("--workers", self.workers, 0, 128), ("--seed", self.seed, 0, 2**32 - 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
                within = f"from {low} to {high}" if high is not None else f"of at least {low}"
                raise StclipError(f"{flag} must be a whole number {within} (got {value})")
        for flag, value, low, high, what in (
            ("--lr", self.lr, 0.0, None, "above 0"), ("--momentum", self.momentum, 0.0, 1.0, "from 0 to below 1"),
            ("--weight-decay", self.weight_decay, 0.0, None, "of at least 0"),
            ("--warmup-factor", self.warmup_factor, 0.0, 1.0, "from 0 to 1"), ("gamma", self.gamma, 0.0, None, "of at least 0"),
        ):
            bad = not isinstance(value, (int, float)) or not math.isfinite(value) or value < low
            bad = bad or (flag == "--lr" and value == 0) or (high is not None and (value >= high if flag == "--momentum" else value > high))
            if bad:
                raise StclipError(f"{flag} must be a number {what} (got {value})")

    def for_metadata(self) -> dict[str, Any]:
        """JSON-ready copy."""
        data = asdict(self)
        data["out"] = str(self.out)
        return data


def default_run_dir(dataset: str, split: int) -> Path:
    """Where ``stclip train`` writes when no --out is given: runs/<dataset>-split<K> under the working directory."""
    return Path("runs") / (f"{dataset}-all" if split == 0 else f"{dataset}-split{split}")


def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up from ``warmup_factor`` to 1 over ``warmup_iters`` steps, then constant (the reference's
    multi-step decay points lie beyond its last iteration)."""
    if step < cfg.warmup_iters:
        alpha = step / cfg.warmup_iters
        return cfg.lr * (cfg.warmup_factor * (1 - alpha) + alpha)
    return cfg.lr


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda`` without CUDA is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StclipError(f"--device {name} asked for, but this torch build sees no CUDA GPU; use --device cpu")
    return device


class StepBatchSampler(Sampler[list[int]]):
    """Batches for steps ``start..stop``, iteration-based as the reference's sampler: each epoch is a permutation
    seeded by (seed, epoch) cut into full batches, its last partial batch dropped, so no keyframe repeats within a
    batch; rank r takes r::world of each global batch."""

    def __init__(self, size: int, batch: int, seed: int, start: int, stop: int, rank: int = 0, world: int = 1) -> None:
        if size < batch:
            raise StclipError(f"only {size} training keyframes, fewer than one batch of {batch}: lower --batch-size")
        self.size, self.batch, self.seed = size, batch, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.per_epoch = size // batch

    def __len__(self) -> int:
        return self.stop - self.start

    def indices(self, step: int) -> list[int]:
        """The global batch of ``step`` (before the per-rank share)."""
        epoch, batch = divmod(step, self.per_epoch)
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        return order[batch * self.batch : (batch + 1) * self.batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.indices(step)[self.rank :: self.world]


def training_inputs(
    batch: dict[str, Any], pre: ClipPreprocess, model: ActionModel
) -> tuple[ModelInputs, torch.Tensor]:
    """Collated keyframe items -> model inputs and (P, C) labels; one preprocessing call per keyframe's window."""
    frames, windows, keyframes, crops, person_frame = [], [], [], [], []
    offset = 0
    longest = max(len(images) for images in batch["images"])
    for i, images in enumerate(batch["images"]):
        frames.append(pre.frames(images))
        key = int(batch["key_pos"][i])
        keyframes.append(frames[-1][key])
        boxes = batch["boxes"][i]
        crops.append(pre.person_crops(images[key], np.asarray(boxes, np.float32)))
        row = torch.full((longest,), -1, dtype=torch.long)
        row[: len(images)] = torch.arange(offset, offset + len(images))
        windows.append(row)
        person_frame.append(torch.full((len(boxes),), i, dtype=torch.long))
        offset += len(images)
    all_frames = torch.cat(frames)
    inputs = ModelInputs(
        patches=model.frame_patches(all_frames),
        windows=torch.stack(windows).to(pre.device),
        keyframes=torch.stack(keyframes),
        crops=torch.cat(crops),
        person_frame=torch.cat(person_frame).to(pre.device),
    )
    return inputs, torch.cat(batch["labels"]).to(pre.device)


class Trainer:
    """Runs (or resumes) one training job and writes checkpoints and a metrics log into ``cfg.out``."""

    def __init__(self, cfg: TrainConfig, view: DatasetView, card: ModelCard | None = None, clip_weights: Path | None = None) -> None:
        self.cfg = cfg
        self.view = view
        self.rank, self.world = _distributed_setup()
        self.device = resolve_device(cfg.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        self.card = card or load_card(cfg.model)
        if self.card.kind != "stclip":
            raise StclipError(f"model '{self.card.name}' has nothing to train (a baseline); use --model stclip")
        torch.manual_seed(cfg.seed)
        self.model = build_model(self.card, clip_weights).to(self.device).train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.names = [n for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(self.params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.dataset = KeyframeDataset(view.videos, view.classes, self.card.window, cfg.max_boxes, cfg.seed)
        if len(self.dataset) == 0:
            raise StclipError(f"no annotated keyframes of the {view.subset} classes found in {view.name}; check --data-root")
        self.single_label = torch.tensor([c in set(view.single_label_classes) for c in view.classes], device=self.device)
        self.pre = ClipPreprocess(self.model.clip.visual.preprocess_cfg, self.device)
        self.step = 0
        self.net: torch.nn.Module = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)

    def resume(self) -> None:
        """Restore weights, momentum buffers and the step from ``out/last.safetensors``; a checkpoint of another
        run, card or class list, or one lacking a tensor or with a wrong shape, is one line naming the file."""
        path = self.cfg.out / LAST
        if not path.is_file():
            raise StclipError(f"nothing to resume: {path} does not exist (drop --resume to start a new run)")
        meta = read_metadata(path)
        for key in ("dataset", "split"):
            if meta.get(key) != getattr(self.cfg, key):
                raise StclipError(f"{path} is a {meta.get('dataset')} split {meta.get('split')} run; it cannot resume {self.cfg.dataset} split {self.cfg.split}")
        stored = card_from_dict(meta["card"], f"in checkpoint {path}")
        diffs = [f"{k} {getattr(stored, k)} (this run: {getattr(self.card, k)})" for k in _RESUME_KEYS if getattr(stored, k) != getattr(self.card, k)]
        if diffs:
            raise StclipError(f"{path} was trained with {'; '.join(diffs)}; resume with the run's --model")
        if "classes" in meta and meta["classes"] != self.view.classes:
            raise StclipError(f"{path} was trained on other classes than this run's {self.view.subset} classes; check --data-root")
        step = meta.get("step")
        if step is None:
            raise StclipError(f"{path} records no training step (not written by `stclip train`); it cannot be resumed")
        if step >= self.cfg.iterations:
            raise StclipError(f"{path} is already at step {step}; --iterations {self.cfg.iterations} leaves nothing to train: pass more")
        tensors = load_tensors(path)
        for prefix, required in (("model.", True), ("optim.", False)):
            for name, p in zip(self.names, self.params):
                key = prefix + name
                if key not in tensors:
                    if required:
                        raise StclipError(f"{path} lacks tensor {key}; it is not a checkpoint of this model")
                    continue
                if tuple(tensors[key].shape) != tuple(p.shape) or not tensors[key].is_floating_point():
                    raise StclipError(f"{path}: tensor {key} is {tensors[key].dtype} {tuple(tensors[key].shape)}, this model needs {tuple(p.shape)}")
        rng = tensors.get("rng.torch")
        state = torch.get_rng_state()
        if rng is not None and (rng.dtype != state.dtype or rng.shape != state.shape):
            raise StclipError(f"{path}: tensor rng.torch is {rng.dtype} {tuple(rng.shape)}, not a torch random state")
        with torch.no_grad():
            for name, p in zip(self.names, self.params):
                p.copy_(tensors[f"model.{name}"])
                if f"optim.{name}" in tensors:
                    self.optimizer.state[p]["momentum_buffer"] = tensors[f"optim.{name}"].to(self.device).clone()
        if rng is not None:
            torch.set_rng_state(rng)
        self.step = step

    def save(self, name: str) -> None:
        """Atomically write a checkpoint with everything needed to resume (rank 0 only)."""
        if self.rank != 0:
            return
        extra = {f"optim.{n}": self.optimizer.state[p]["momentum_buffer"] for n, p in zip(self.names, self.params) if "momentum_buffer" in self.optimizer.state[p]}
        extra["rng.torch"] = torch.get_rng_state()
        meta = {
            "dataset": self.cfg.dataset, "split": self.cfg.split, "classes": self.view.classes,
            "step": self.step, "config": self.cfg.for_metadata(),
            "schedule": {"warmup_iters": self.cfg.warmup_iters, "warmup_factor": self.cfg.warmup_factor, "lr": self.cfg.lr},
        }
        save_checkpoint(self.cfg.out / name, self.model, self.card, meta, extra)

    def _boxes(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The loss normaliser on several ranks: the box count averaged over all ranks (None: this batch's own count)."""
        if self.world == 1:
            return None
        count = torch.tensor(float(labels.shape[0]), device=labels.device)
        dist.all_reduce(count)
        return torch.clamp(count / self.world, min=1.0)

    def run(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> Path:
        """Train from ``self.step`` to ``cfg.iterations``; returns the final checkpoint's path."""
        cfg = self.cfg
        if self.rank == 0:
            cfg.out.mkdir(parents=True, exist_ok=True)
        text = self.model.encode_text(self.view.classes)
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, self.step, cfg.iterations, self.rank, self.world)
        # a seeded generator fixes the workers' base seed, so box subsets are the same after a resume
        loader = DataLoader(self.dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.workers,
                            generator=torch.Generator().manual_seed(cfg.seed))
        log = (cfg.out / METRICS).open("a") if self.rank == 0 else None
        started, window_loss, window_steps = time.perf_counter(), 0.0, 0
        batches = iter(loader)
        try:
            while (batch := _next_batch(batches)) is not None:
                lr = learning_rate(self.step, cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                inputs, labels = training_inputs(batch, self.pre, self.model)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.half and self.device.type == "cuda"):
                    logits = self.net(*inputs.args(), text)
                loss = action_loss(logits.float(), labels, self.single_label, cfg.gamma, self._boxes(labels))
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                self.step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise StclipError(f"training diverged at step {self.step} (loss {value}); lower --lr and start a new run")
                window_loss += value
                window_steps += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
                    elapsed = time.perf_counter() - started
                    row = {"step": self.step, "loss": window_loss / window_steps, "lr": lr,
                           "it_s": window_steps / max(elapsed, 1e-9), "boxes": int(labels.shape[0])}
                    if log is not None:
                        log.write(json.dumps(row) + "\n")
                        log.flush()
                    if on_step is not None:
                        on_step(self.step, row)
                    started, window_loss, window_steps = time.perf_counter(), 0.0, 0
                elif on_step is not None:
                    on_step(self.step, {"loss": value, "lr": lr})
                if self.step % cfg.checkpoint_every == 0:
                    self.save(LAST)
        finally:
            # workers stop now, also after an error: a traceback may keep the iterator alive, and its workers with it
            getattr(batches, "_shutdown_workers", lambda: None)()
            del batches
            if log is not None:
                log.close()
        self.save(LAST)
        self.save(FINAL)
        return cfg.out / FINAL


# card fields a resumed run must share with the checkpoint (its name and file may differ)
_RESUME_KEYS = ("kind", "backbone", "pretrained", "window", "lora_rank", "lora_alpha", "interest_k", "rho_init", "temperature", "multi_label")


def _next_batch(batches: Iterator[dict[str, Any]]) -> dict[str, Any] | None:
    """The next batch, or None at the end; a data-loading worker's error becomes one line (torch re-raises it
    with the worker's whole traceback in its message)."""
    try:
        return next(batches)
    except StopIteration:
        return None
    except StclipError as err:
        raise StclipError(_worker_line(err)) from None
    except (RuntimeError, OSError, ValueError, TypeError, KeyError, IndexError, MemoryError) as err:
        raise StclipError(f"data loading failed: {_worker_line(err)}") from None


def _worker_line(err: BaseException) -> str:
    """The original message of an exception a DataLoader worker raised: the last line of the traceback torch puts
    in its message, without the exception's module (``StclipError: `` dropped), else the message's first line."""
    text = str(err).strip()
    if "Original Traceback" not in text:
        return first_line(err)
    name, _, message = text.splitlines()[-1].partition(": ")
    short = name.rsplit(".", 1)[-1]
    return message if short == "StclipError" else f"{short}: {message}" if message else short


def _distributed_setup() -> tuple[int, int]:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPUs, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def latest_run(root: Path = Path("runs")) -> Path:
    """The most recently written final checkpoint under ``root`` (what `stclip eval` uses with no --checkpoint)."""
    finals = sorted(root.glob(f"*/{FINAL}"), key=lambda p: p.stat().st_mtime)
    if not finals:
        raise StclipError(f"no trained run found under {root.resolve()}/*/{FINAL}; pass --checkpoint FILE or run `stclip train` first")
    return finals[-1]


def check_run_folder(out: Path, reads: list) -> None:
    """A run folder is a folder (or will be), and neither it nor a file train writes into it is an input."""
    from stclip_cli.sinks.destinations import refuse_inputs
    from stclip_cli.benchmark.train import FINAL, LAST, METRICS

    if out.exists() and not out.is_dir():
        raise StclipError(f"--out {out} is a file; the run folder holds checkpoints and logs: give a folder")
    for path in (out, *(out / name for name in (LAST, FINAL, METRICS))):
        refuse_inputs(path, "--out", reads)


__all__ = ["check_run_folder", "PAPER_DEFAULTS", "TrainConfig", "Trainer", "default_run_dir", "latest_run", "learning_rate"]
