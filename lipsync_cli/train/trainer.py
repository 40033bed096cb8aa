"""One Trainer for every model: the loop, validation, checkpoints, resume, AMP, DDP, logs, signals.

What differs between models lives in a Task (expert.py, generator.py, ...): its datasets, its
networks and optimizers, one training step and one validation step. Adding a model means adding a
Task subclass; the loop below never changes.

DDP: under `torchrun --nproc_per_node N -m lipsync_cli train ...` (WORLD_SIZE set) each process
joins the process group (nccl on CUDA, gloo on CPU), trains on its DistributedSampler shard with
TrainConfig.batch_size samples per step, and torch's DistributedDataParallel averages gradients.
Every rank validates the same samples and the metrics are averaged, so every rank takes the same
decisions (best model, the generator's sync-loss switch); only rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from lipsync_cli.config import TrainConfig
from lipsync_cli.device import pick_device
from lipsync_cli.errors import InputError, LipsyncError, UsageError
from lipsync_cli.models import read_checkpoint
from lipsync_cli.models.checkpoint import unwrap  # DDP / torch.compile wrappers
from lipsync_cli.train import checkpoints
from lipsync_cli.train.log import RunLog
from lipsync_cli.train.schedules import constant_lr, due, linear_anneal


class TrainingInterrupted(LipsyncError):
    """SIGINT/SIGTERM: the final checkpoint is written; exit 130 (SIGINT) or 143 (SIGTERM)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class Task:
    """What one model brings to the Trainer. Subclasses set nets/optimizers in build().

    nets: name -> nn.Module; `trainable` names are trained (wrapped in DDP, switched between
    train/eval mode, saved); others (a frozen expert) are the task's own business.
    nets[main] is the model a checkpoint file is "of" (its arch/config/state_dict).
    """

    name = "task"
    main = "model"
    best_metric = "loss"  # validation metric, lower is better, that picks best.pt
    config = None  # the task's config dataclass: saved with every checkpoint, compared by --resume

    def __init__(self):
        self.nets: dict[str, torch.nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.trainable: list[str] = []

    def datasets(self, data: Path, seed: int) -> tuple:
        """(train, val) torch Datasets; optional set_epoch(epoch) is called before each pass."""
        raise NotImplementedError

    def build(self, device: torch.device, cfg: TrainConfig) -> None:
        raise NotImplementedError

    def train_step(self, batch: dict, step: int, run: "Trainer") -> dict[str, float]:
        """One update: forward under run.autocast(), then run.optimize(loss, optimizer)."""
        raise NotImplementedError

    def val_step(self, batch: dict, run: "Trainer") -> dict[str, float]:
        """Metrics of one validation batch (called under torch.no_grad, nets in eval mode)."""
        raise NotImplementedError

    def after_validation(self, metrics: dict[str, float], step: int) -> None:
        """Validation-driven schedules (e.g. switching a loss on)."""

    def lr_factor(self, step: int, max_steps: int) -> float:
        """Multiplier of every optimizer's base LR at this step."""
        return constant_lr(step, max_steps)

    def state_dict(self) -> dict:
        """Task state that a resume must restore (flags, stage), weights_only-loadable."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# TrainConfig fields a resumed run may change (how long, how often, where); any other difference would make the
# resumed run a different run than the checkpoint's (epoch arithmetic, LR, RNG streams, network shapes).
RESUMABLE_CHANGES = {"max_steps", "val_every", "val_batches", "ckpt_every", "keep_last", "log_every", "num_workers",
                     "device", "amp", "resume"}
# Config field -> the CLI option that sets it, where the two names differ.
OPTION_NAMES = {"n_refs": "--refs", "gan": "--gan/--no-gan", "attention": "--attention/--mean-refs",
                "mask_head": "--mask-head/--no-mask-head", "residual": "--residual/--no-residual"}


def check_same_run(state: dict, cfg: TrainConfig, task_config, path: Path) -> None:
    """--resume continues the checkpoint's run: a setting that differs from it is an input error naming the
    option (continuing silently with another batch size or K would change, or break, the run)."""
    import json

    def plain(d: dict) -> dict:  # flat (nested configs such as GeneratorConfig.refs inlined); tuples as lists
        flat = {}
        for key, value in json.loads(json.dumps(d)).items():
            flat.update(plain(value) if isinstance(value, dict) else {key: value})
        return flat

    saved = {**plain(state.get("train_config", {})), **plain(state.get("task_config", {}))}
    now = {**plain(asdict(cfg)), **plain(asdict(task_config) if task_config is not None else {})}
    for key, value in now.items():
        if key in RESUMABLE_CHANGES or key not in saved or saved[key] == value:
            continue
        option = OPTION_NAMES.get(key, "--" + key.replace("_", "-"))
        raise InputError(f"--resume: {path} was trained with {key}={saved[key]!r} but this run asks for {value!r}; "
                         f"pass the same {option} (or start a new run with another -o folder)")


class Trainer:
    """Trainer(task, data, run_dir, cfg).fit() -> run_dir. Tasks call autocast() and optimize()."""

    def __init__(self, task: Task, data: Path, run_dir: Path, cfg: TrainConfig, quiet: bool = False):
        self.task, self.data, self.run_dir, self.cfg, self.quiet = task, Path(data), Path(run_dir), cfg, quiet
        self.step, self.best = 0, math.inf
        self.rank, self.world, self.device = 0, 1, torch.device("cpu")

    # -- the run, top to bottom ------------------------------------------------------------------
    def fit(self) -> Path:
        owns_group = self._join_process_group()
        try:
            self._setup()
            with _StopSignals() as stop:
                self._loop(stop)
            self.log.say(f"done: step {self.step}, best val {self.task.best_metric} {self.best:.4g}, "
                         f"checkpoints in {self.run_dir}")
        finally:
            if hasattr(self, "log"):
                self.log.close()
            if owns_group:
                torch.distributed.destroy_process_group()
        return self.run_dir

    def _setup(self) -> None:
        cfg, task = self.cfg, self.task
        _seed_everything(cfg.seed)
        self.train_set, self.val_set = task.datasets(self.data, cfg.seed)
        if len(self.train_set) < cfg.batch_size * self.world or len(self.val_set) == 0:
            raise InputError(f"{self.data} has {len(self.train_set)} training and {len(self.val_set)} validation "
                             f"samples: need at least one batch of {cfg.batch_size} per process and some "
                             "validation clips (lower --batch-size or add clips)")
        task.build(self.device, cfg)
        for opt in task.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        self.amp = cfg.amp and self.device.type == "cuda"  # fp16 autocast + loss scaling on CUDA only
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        resume_step = self._resume() if cfg.resume else self._refuse_overwrite()
        self._wrap_ddp()
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = RunLog(self.run_dir, self.rank == 0, self.quiet, resume_step)
        self.val_loader = self._val_loader()
        self.log.start(self._start_line(resume_step), self.step, cfg.max_steps)

    def _start_line(self, resume_step) -> str:
        """Device, precision, processes, samples and the run folder: what a trainer checks before waiting."""
        cfg = self.cfg
        precision = "fp16 autocast (AMP)" if self.amp else "fp32"
        procs = f" x {self.world} processes" if self.world > 1 else ""
        resumed = f", resuming at step {resume_step}" if resume_step is not None else ""
        return (f"training {type(self.task).__name__.removesuffix('Task').lower() or 'model'} on {self.device}{procs}, "
                f"{precision}; {len(self.train_set)} train / {len(self.val_set)} val samples, batch {cfg.batch_size} "
                f"per process; {cfg.max_steps} steps (log every {cfg.log_every}); run folder {self.run_dir}{resumed}")

    def _loop(self, stop: "_StopSignals") -> None:
        cfg = self.cfg
        if self.step == 0:
            self._validate()  # the untrained baseline: every later value is read against it
        batches = self._train_batches()
        seen, busy = 0, 0.0
        while self.step < cfg.max_steps:
            started = time.perf_counter()
            batch = self._to_device(next(batches))
            self.step += 1
            self._set_lr()
            metrics = self.task.train_step(batch, self.step, self)
            self.scaler.update()
            busy += time.perf_counter() - started
            seen += cfg.batch_size * self.world
            if due(self.step, cfg.log_every) or self.step == cfg.max_steps:
                self.log.write(self.step, "train", {**metrics, "samples_per_s": seen / busy})
                seen, busy = 0, 0.0
            self.log.step(metrics)
            if due(self.step, cfg.val_every) or self.step == cfg.max_steps:
                self._validate()
            saved = due(self.step, cfg.ckpt_every) or self.step == cfg.max_steps
            if saved:
                self._save()
            if self._agree(stop.signum):
                self._stop(stop.signum, saved)

    def _stop(self, signum: int, saved: bool) -> None:
        if not saved:
            self._save()
        name = signal.Signals(signum).name
        raise TrainingInterrupted(f"training stopped by {name} at step {self.step}; checkpoint written to "
                                  f"{self.run_dir / 'last.pt'} (continue with --resume)", 128 + signum)

    # -- helpers for tasks -----------------------------------------------------------------------
    def autocast(self):
        """fp16 autocast on CUDA with AMP on; a no-op context elsewhere."""
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

    def optimize(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Zero this optimizer's grads, backpropagate the (scaled) loss, step. Several optimizers
        may step in one train_step (generator, then discriminator); the scale updates once after."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)

    # -- validation and checkpoints --------------------------------------------------------------
    def _validate(self) -> dict[str, float]:
        nets = [self.task.nets[n] for n in self.task.trainable]
        for net in nets:
            net.eval()
        sums: dict[str, float] = {}
        count = 0
        with torch.no_grad():
            for batch in self.val_loader:
                for key, value in self.task.val_step(self._to_device(batch), self).items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
        for net in nets:
            net.train()
        metrics = self._average({k: v / count for k, v in sums.items()})
        self.task.after_validation(metrics, self.step)
        self.log.write(self.step, "val", metrics)
        self.last_val = metrics
        if self.step > 0 and metrics[self.task.best_metric] < self.best:  # step 0 is the untrained baseline
            self.best = metrics[self.task.best_metric]
            if self.rank == 0:
                checkpoints.write_best(self.run_dir, self.task.nets[self.task.main], step=self.step, metrics=metrics)
        return metrics

    def _save(self) -> None:
        if self.rank != 0:
            return
        state = {"step": self.step, "best": self.best, "world_size": self.world, "train_config": asdict(self.cfg),
                 "task_config": asdict(self.task.config) if self.task.config is not None else {},
                 "optimizers": {k: o.state_dict() for k, o in self.task.optimizers.items()},
                 "nets": {k: unwrap(self.task.nets[k]).state_dict() for k in self.task.trainable
                          if k != self.task.main},
                 "scaler": self.scaler.state_dict(), "rng": checkpoints.rng_state(),
                 "task": self.task.state_dict()}
        checkpoints.write_step_checkpoint(self.run_dir, self.task.nets[self.task.main], self.step,
                                          self.cfg.keep_last, train=state, metrics=getattr(self, "last_val", {}))

    def _resume(self) -> int:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            raise InputError(f"--resume: {path} not found (run without --resume to start, or pass the run folder)")
        ckpt = read_checkpoint(path, str(self.device))
        main = self.task.nets[self.task.main]
        if "train" not in ckpt or ckpt.get("arch") != main.arch:
            raise InputError(f"{path} is not a {self.task.name} training checkpoint of this tool: "
                             "pass the -o folder of an earlier `lipsync train` run of the same kind")
        state = ckpt["train"]
        check_same_run(state, self.cfg, self.task.config, path)
        main.load_state_dict(ckpt["state_dict"])
        for name, net_state in state["nets"].items():
            self.task.nets[name].load_state_dict(net_state)
        for name, opt_state in state["optimizers"].items():
            self.task.optimizers[name].load_state_dict(opt_state)
        if state["scaler"]:  # empty when saved without AMP
            self.scaler.load_state_dict(state["scaler"])
        self.task.load_state_dict(state["task"])
        checkpoints.set_rng_state(state["rng"])
        self.step, self.best = int(state["step"]), float(state["best"])
        return self.step

    def _refuse_overwrite(self) -> None:
        if (self.run_dir / "last.pt").exists():
            raise UsageError(f"{self.run_dir} already holds a training run: pass --resume to continue it "
                             "or choose another -o folder")
        return None

    # -- data ------------------------------------------------------------------------------------
    def _train_batches(self):
        """Endless batches; epoch e is shuffled by (seed, e), and a resumed run skips the batches of
        its current epoch that the checkpointed steps already used, so it sees what an unbroken run
        would have seen."""
        cfg = self.cfg
        sampler = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=True)
        per_epoch = len(sampler) // cfg.batch_size
        epoch, skip = divmod(self.step, per_epoch)
        while True:
            sampler.set_epoch(epoch)
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(epoch)
            indices = list(sampler)[skip * cfg.batch_size:]
            yield from self._loader(self.train_set, indices, drop_last=True)
            epoch, skip = epoch + 1, 0

    def _val_loader(self) -> DataLoader:
        """A fixed random subset (the same every validation, on every rank) of val_batches batches."""
        n = min(len(self.val_set), self.cfg.val_batches * self.cfg.batch_size)
        indices = np.random.default_rng(self.cfg.seed).permutation(len(self.val_set))[:n].tolist()
        return self._loader(self.val_set, indices, drop_last=False)

    def _loader(self, dataset, indices: list[int], drop_last: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.cfg.batch_size, sampler=indices, drop_last=drop_last,
                          num_workers=self.cfg.num_workers, pin_memory=self.device.type == "cuda")

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _set_lr(self) -> None:
        max_steps = self.cfg.max_steps
        factor = self.task.lr_factor(self.step, max_steps) * linear_anneal(
            self.step, round(max_steps * (1 - self.cfg.lr_anneal)), max_steps)
        for opt in self.task.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor

    # -- distribution ----------------------------------------------------------------------------
    def _join_process_group(self) -> bool:
        """Pick the device; under torchrun (WORLD_SIZE > 1) join the process group. True if we
        created the group (and so must destroy it)."""
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = _device(self.cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        if self.world == 1 or torch.distributed.is_initialized():
            return False
        torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        return True

    def _wrap_ddp(self) -> None:
        if self.world == 1:
            return
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        for name in self.task.trainable:
            self.task.nets[name] = DistributedDataParallel(self.task.nets[name], device_ids=ids)

    def _average(self, metrics: dict[str, float]) -> dict[str, float]:
        """Mean over ranks (identical decisions everywhere); unchanged in a single process."""
        if self.world == 1:
            return metrics
        values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(values)
        return dict(zip(metrics, (values / self.world).tolist()))

    def _agree(self, signum: int | None) -> int:
        """The signal any rank received (0 if none): all ranks stop at the same step."""
        if self.world == 1:
            return signum or 0
        flag = torch.tensor([signum or 0], device=self.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        return int(flag.item())


class _StopSignals:
    """SIGINT/SIGTERM set a flag the loop checks after each step (a clean checkpoint, not a
    half-finished step); a second signal interrupts at once. Handlers are restored on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():  # signal() works only there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _device(name: str, local_rank: int) -> torch.device:
    """device.pick_device's choice; a bare "cuda" under torchrun is this process's GPU (its local rank)."""
    name = pick_device(name)
    if name.startswith("cuda"):
        device = torch.device(name if ":" in name else f"cuda:{local_rank}")
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def _seed_everything(seed: int) -> None:
    """The same seed on every rank: identical initial weights (DDP also broadcasts rank 0's)."""
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

