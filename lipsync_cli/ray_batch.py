"""`lipsync dub --jobs JOBS.csv --ray`: the batch spread over every GPU of a machine or of a Ray cluster.

One long-lived worker (a Ray actor) per GPU, or per `cpus_per_worker` cores without GPUs, loads the generator and
the detector once. The driver holds the queue and hands an idle worker the next row the moment it finishes one, so
a long video never holds back the short ones behind it (as static shards would). A row means what it means in
batch.py (whose parsing, skip rule and per-row error handling are reused): an existing output is skipped, a failing
row is reported and the batch goes on, outputs are atomic. A worker that dies during a row (killed, out of memory,
node lost) is restarted by Ray and its row goes back to the front of the queue, at most RayConfig.retries times.

Ray is imported only inside run_ray_batch, so nothing else in lipsync-cli needs the `ray` extra.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

from lipsync_cli.batch import (Job, Models, Outcome, batch_config, check_report_path, dub_row, prepare_jobs, print_outcomes, row_line,
                               say_interrupted, unfinished, write_report)
from lipsync_cli.config import DubConfig, RayConfig
from lipsync_cli.errors import InputError, LipsyncError, UsageError
from lipsync_cli.frames import SPOOL_PREFIX, remove_stale_spools
from lipsync_cli.media.atomic import partial_path
from lipsync_cli.pipeline import check_commercial, dub

log = logging.getLogger(__name__)

RAY_MISSING = 'the --ray batch needs Ray, which is not installed: pip install "lipsync-cli[ray]"'
POLL_S = 0.5  # the driver wakes this often to refresh the display; also how soon it notices Ctrl-C
CONNECT_TIMEOUT_S = 5.0  # a cluster address must accept a TCP connection within this
REVIVE_WAIT_S = 1.0  # how long a restarting worker is left alone before it is asked again whether it is up
STOP_GRACE_S = 10.0  # after Ctrl-C, how long killed workers get to be reported dead before partial files are removed


def import_ray():
    """The ray module, or a usage error (exit 2) naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError(RAY_MISSING) from None
    return ray


def run_ray_batch(jobs_file: Path, cfg: DubConfig, ray_cfg: RayConfig, shard: tuple[int, int] = (0, 1),
                  report: Optional[Path] = None) -> int:
    """Dub every row of this shard on the cluster's workers; returns the exit code (1 if any row failed)."""
    ray = import_ray()
    check_report_path(report)
    cfg = batch_config(cfg)  # the driver's cache folder: the workers of this node share it
    todo, outcomes = prepare_jobs(jobs_file, cfg, shard)
    # Workers may run in another folder (or on another node with the same shared mount): paths go out absolute.
    todo = [_absolute(job) for job in todo]
    interrupt: Optional[KeyboardInterrupt] = None
    scheduler = None
    try:
        with BatchProgress(cfg.quiet, len(todo)) as progress:
            for outcome in outcomes:
                progress.say(row_line(outcome))
            if todo:
                check_commercial(cfg)  # before any worker starts: the same models would be refused on every row
                with connect(ray, ray_cfg.address):
                    plan = plan_workers(ray.available_resources(), ray_cfg, cfg.device, len(todo))
                    scheduler = Scheduler(ray, start_workers(ray, plan, cfg, ray_cfg.retries), todo,
                                          ray_cfg.retries, progress.say, cfg.tmp_dir)
                    progress.start(len(scheduler.workers))
                    try:
                        while scheduler.busy():
                            for outcome in scheduler.step(POLL_S):
                                progress.finished(outcome)
                            progress.show(len(scheduler.running))
                    except KeyboardInterrupt as stop:  # SIGTERM arrives as its subclass (cli.Terminated)
                        interrupt = stop
                        scheduler.stop()
    except KeyboardInterrupt:  # before the workers ran (Ctrl-C while they load): no row started
        _complete(outcomes, scheduler, todo, "not started", report)
        say_interrupted(outcomes)
        raise
    except BaseException as err:  # a loading or cluster error: its own message, and still a report of every row
        _complete(outcomes, scheduler, todo, f"not started: the batch stopped ({type(err).__name__}: {err})", report)
        raise
    _complete(outcomes, scheduler, todo, "not started", report)
    if not cfg.quiet:
        print_outcomes(outcomes)
        print_workers(outcomes)
    if interrupt is not None:
        say_interrupted(outcomes)
        raise interrupt
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _complete(outcomes: list[Outcome], scheduler, todo: list[Job], reason: str, report: Optional[Path]) -> None:
    """Every exit: the rows the workers ended, an "interrupted" line for each other row, then the report."""
    outcomes += scheduler.outcomes if scheduler is not None else []
    outcomes += unfinished(todo, outcomes, reason)
    if report is not None:
        write_report(report, outcomes)


def _absolute(job: Job) -> Job:
    return replace(job, video=job.video.absolute(), audio=job.audio.absolute(), output=job.output.absolute())


@contextmanager
def connect(ray, address: Optional[str]) -> Iterator[None]:
    """Join the cluster at `address` (None: $RAY_ADDRESS) or start a local one ("local", or neither given) for
    this run only; the connection (and a local cluster) ends with the block."""
    import signal

    if address is None and not os.environ.get("RAY_ADDRESS"):
        address = "local"  # not ray.init()'s default, which would join any cluster `ray start` left on this machine
    verbose = log.isEnabledFor(logging.DEBUG)  # -v: Ray's own logs and the workers' output come through too
    # The dashboard is for long-lived clusters; a cluster that lives for one batch only needs the scheduler.
    extra = {"include_dashboard": False} if address == "local" else {}
    check_reachable(address or os.environ["RAY_ADDRESS"])
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(address=address, logging_level=logging.DEBUG if verbose else logging.ERROR, log_to_driver=verbose,
                 **extra)
        # ray.init installs its own SIGTERM handler; ours (the CLI's) turns SIGTERM into the Ctrl-C path, which
        # stops the workers and removes their partial files.
        if on_sigterm is not None:  # None: a handler not set from Python, which we cannot put back
            signal.signal(signal.SIGTERM, on_sigterm)
    except ConnectionError as err:
        where = address or os.environ.get("RAY_ADDRESS")
        raise InputError(f"cannot reach the Ray cluster at {where}: {err} (start it with `ray start --head`, "
                         "or drop --ray-address/RAY_ADDRESS to use a local one)") from None
    try:
        yield
    finally:
        ray.shutdown()


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """A host:port nobody listens on is an InputError now; ray.init would retry it for minutes, logging each try."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():  # "local", "auto", ray://...: ray.init's own business
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise InputError(f"cannot reach the Ray cluster at {address}: {err} (start it with `ray start --head`, or "
                         "drop --ray-address/RAY_ADDRESS to use a local one)") from None


@dataclass(frozen=True)
class WorkerPlan:
    count: int  # workers to start
    num_cpus: float  # Ray resources each one reserves
    num_gpus: float


def plan_workers(resources: dict, cfg: RayConfig, device: str, rows: int) -> WorkerPlan:
    """One worker per `gpus_per_worker` GPUs, or per `cpus_per_worker` cores when there are none (or --device cpu);
    never more than `cfg.workers` or than rows to dub."""
    gpus = resources.get("GPU", 0.0) if device != "cpu" else 0.0
    cpus = resources.get("CPU", 1.0)
    if gpus > 0:
        count = int(gpus / cfg.gpus_per_worker + 1e-6)  # 1 / (1/3) must give 3, not 2
        if count == 0:
            raise UsageError(f"--gpus-per-worker {cfg.gpus_per_worker:g}: the Ray cluster has {gpus:g} GPU(s) free")
        # One core each for decoding, detection and encoding, which stay on the CPU.
        per_cpu, per_gpu = min(1.0, cpus), cfg.gpus_per_worker
    else:
        per_cpu, per_gpu = float(min(cfg.cpus_per_worker, max(1.0, cpus))), 0.0
        count = int(cpus // per_cpu)
    return WorkerPlan(max(1, min(count, cfg.workers or count, rows)), per_cpu, per_gpu)


class DubWorker:
    """A Ray actor: its models stay loaded while it dubs row after row (the rows' own code is batch.dub_row)."""

    def __init__(self, cfg: DubConfig):
        self.models = Models(cfg)
        self.cfg = replace(cfg, quiet=True)

    def load(self):
        """Load both models now and return this worker's name; a LipsyncError (wrong --model, weights missing) is
        returned rather than raised, so the driver re-raises it as itself: one line and its own exit code."""
        try:
            self.models.generator()
            self.models.detector()
        except LipsyncError as err:
            return err
        return self.models.name

    def dub(self, job: Job, attempt: int) -> Outcome:
        return dub_row(job, self.cfg, self.models, dub, attempt)


def start_workers(ray, plan: WorkerPlan, cfg: DubConfig, restarts: int) -> list:
    """Start the workers and load their models; the first loading error ends the batch before any row runs."""
    actor = ray.remote(DubWorker).options(num_cpus=plan.num_cpus, num_gpus=plan.num_gpus, max_restarts=restarts,
                                          max_task_retries=0)  # a lost row is re-queued by the Scheduler, not Ray
    workers = [actor.remote(cfg) for _ in range(plan.count)]
    for loaded in ray.get([w.load.remote() for w in workers]):
        if isinstance(loaded, LipsyncError):
            raise loaded
    return workers


class Scheduler:
    """The driver's queue: an idle worker gets the next row; the row of a worker that died goes back to the front.

    A dead worker is restarted by Ray (max_restarts) but gets rows again only once it answers a load() call: calls
    on an actor that is still restarting fail at once, and must not use up the retries of the rows sent to it.
    """

    def __init__(self, ray, workers: list, jobs: list[Job], retries: int, say: Callable[[str], None],
                 tmp_dir: Optional[str] = None):
        self.ray, self.workers, self.retries, self.say = ray, workers, retries, say
        self.tmp_dir = tmp_dir  # --tmp-dir: where the workers spool looped videos (else beside each output)
        self.idle = deque(workers)
        self.pending = deque((job, 1) for job in jobs)  # (job, attempt number)
        self.running: dict = {}  # ObjectRef of dub() -> (worker, job, attempt)
        self.reviving: dict = {}  # ObjectRef of load() -> a restarted worker
        self.resting: list = []  # (monotonic time to ask again, worker) for workers not answering yet
        self.deaths = [0] * len(workers)
        self.outcomes: list[Outcome] = []

    def busy(self) -> bool:
        return bool(self.pending or self.running)

    def step(self, timeout: float) -> list[Outcome]:
        """Hand out rows, wait up to `timeout` for a row (or a revival) to end; returns the rows that ended for good."""
        while self.idle and self.pending:
            worker = self.idle.popleft()
            job, attempt = self.pending.popleft()
            self.running[worker.dub.remote(job, attempt)] = (worker, job, attempt)
        self._ask_resting()
        waiting = [*self.running, *self.reviving]
        if not waiting:
            if self.resting:
                time.sleep(timeout)
                return []
            return self._end([Outcome(job, "failed", "no Ray worker left (each died too often)", attempts=attempt - 1)
                              for job, attempt in self._drain()])
        ready, _ = self.ray.wait(waiting, num_returns=1, timeout=timeout)
        ended = []
        for ref in ready:
            if ref in self.reviving:
                self._revived(ref)
                continue
            worker, job, attempt = self.running.pop(ref)
            try:
                ended.append(self.ray.get(ref))
                self.idle.append(worker)
            except self.ray.exceptions.RayError as err:  # the worker process died; a row's own errors are outcomes
                self._lost(worker)
                ended += self._retry(job, attempt, err)
        return self._end(ended)

    def _lost(self, worker) -> None:
        n = self.workers.index(worker)
        self.deaths[n] += 1
        if self.deaths[n] <= self.retries:  # within max_restarts: Ray is starting a new process for it
            self.reviving[worker.load.remote()] = worker

    def _revived(self, ref) -> None:
        worker = self.reviving.pop(ref)
        unavailable = getattr(self.ray.exceptions, "ActorUnavailableError", ())  # Ray's name for "still restarting"
        try:
            loaded = self.ray.get(ref)
        except unavailable:
            self.resting.append((time.monotonic() + REVIVE_WAIT_S, worker))
            return
        except self.ray.exceptions.RayError:  # died again while starting
            self._lost(worker)
            return
        if isinstance(loaded, LipsyncError):  # loaded fine at the start, not now: that node is unusable
            self.say(f"a restarted Ray worker cannot load the models: {loaded}")
            return
        self.idle.append(worker)

    def _ask_resting(self) -> None:
        now = time.monotonic()
        for entry in [e for e in self.resting if e[0] <= now]:
            self.resting.remove(entry)
            self.reviving[entry[1].load.remote()] = entry[1]

    def _retry(self, job: Job, attempt: int, err: Exception) -> list[Outcome]:
        if attempt <= self.retries:
            self.say(f"row {job.row}: its worker died ({type(err).__name__}); retrying "
                     f"(attempt {attempt + 1} of {self.retries + 1})")
            self.pending.appendleft((job, attempt + 1))
            return []
        self._remove_leftovers(job)  # the last killed attempt's
        return [Outcome(job, "failed", f"its worker died {attempt} times (killed or out of memory? see the Ray "
                                       "logs)", attempts=attempt)]

    def stop(self) -> None:
        """Ctrl-C: kill the workers (Ray cannot interrupt a running actor call), wait until Ray reports them dead,
        remove the partial files of the rows they were dubbing; those rows and the queued ones are "interrupted"."""
        for worker in self.workers:
            self.ray.kill(worker, no_restart=True)
        if self.running:
            self.ray.wait(list(self.running), num_returns=len(self.running), timeout=STOP_GRACE_S)
        for _, job, attempt in self.running.values():
            self._remove_leftovers(job, wait=STOP_GRACE_S)
        stopped = [(job, attempt) for _, job, attempt in self.running.values()]
        self.running.clear()
        self._end([Outcome(job, "interrupted", "stopped mid-row", attempts=attempt) for job, attempt in stopped]
                  + [Outcome(job, "interrupted", "not started", attempts=attempt - 1) for job, attempt in self._drain()])

    def _remove_leftovers(self, job: Job, wait: float = 0.0) -> None:
        """What a killed worker left of `job`: its partial output and its loop spool, whose lock is freed when the
        process is really gone (ray.kill returns before that): with `wait` (every worker killed), poll that long."""
        partial_path(job.output).unlink(missing_ok=True)
        folder = Path(self.tmp_dir) if self.tmp_dir else job.output.parent
        deadline = time.monotonic() + wait
        remove_stale_spools(folder)
        while any(folder.glob(f"{SPOOL_PREFIX}*")) and time.monotonic() < deadline:
            time.sleep(0.1)
            remove_stale_spools(folder)

    def _drain(self) -> list[tuple[Job, int]]:
        left = list(self.pending)
        self.pending.clear()
        return left

    def _end(self, outcomes: list[Outcome]) -> list[Outcome]:
        self.outcomes += outcomes
        return outcomes


class BatchProgress:
    """The driver's one display: rows done / failed / running, frames/s over all workers, ETA; row lines above it."""

    def __init__(self, quiet: bool, rows: int):
        self.quiet, self.rows = quiet, rows
        self.done = self.failed = self.frames = 0
        self._progress = self._task = None
        self._console = None
        self._start = time.perf_counter()

    def __enter__(self) -> "BatchProgress":
        if not self.quiet:
            from rich.console import Console

            self._console = Console(stderr=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, workers: int) -> None:
        """The models are loaded: from here the clock of frames/s and the ETA runs."""
        self._start = time.perf_counter()
        self.say(f"{workers} Ray worker(s) ready; dubbing {self.rows} row(s)")
        if self.quiet:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(TextColumn("rows"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[status]}"), TimeRemainingColumn(), console=self._console)
        self._progress.__enter__()
        self._task = self._progress.add_task("rows", total=self.rows, status="")

    def finished(self, outcome: Outcome) -> None:
        self.done += outcome.status == "done"
        self.failed += outcome.status == "failed"
        self.frames += outcome.frames
        self.say(row_line(outcome))

    def show(self, running: int) -> None:
        if self._progress is None:
            return
        fps = self.frames / max(1e-6, time.perf_counter() - self._start)
        status = f"done {self.done} failed {self.failed} running {running}  {fps:.1f} frames/s"
        self._progress.update(self._task, completed=self.done + self.failed, status=status)

    def say(self, line: str) -> None:
        if self._console is not None:
            self._console.print(line, highlight=False, markup=False, soft_wrap=True)


def print_workers(outcomes: list[Outcome]) -> None:
    """Per worker process: rows, frames, busy seconds and model loads (1 each: loaded once, not per row)."""
    from rich.console import Console
    from rich.table import Table

    names = sorted({o.worker for o in outcomes if o.worker})
    if not names:  # every row skipped, or stopped before any ended
        return
    table = Table(title="workers")
    for col in ("worker", "rows", "frames", "seconds", "frames/s", "generator loads", "detector loads"):
        table.add_column(col)
    for name in names:
        mine = [o for o in outcomes if o.worker == name]
        frames, seconds = sum(o.frames for o in mine), sum(o.seconds for o in mine)
        table.add_row(name, str(len(mine)), str(frames), f"{seconds:.1f}", f"{frames / max(seconds, 1e-6):.1f}",
                      str(max(o.generator_loads for o in mine)), str(max(o.detector_loads for o in mine)))
    Console(stderr=True).print(table)
