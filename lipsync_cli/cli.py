"""The `lipsync` command line: thin adapters (parse → call one library function → map errors).

Heavy modules (torch, face-alignment, librosa) are imported inside command bodies so that
`lipsync --help` answers instantly. Errors are one line on stderr with the exit codes of
lipsync_cli.errors; a traceback only with -v/--verbose.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from lipsync_cli import __version__
from lipsync_cli.config import RayConfig
from lipsync_cli.errors import LipsyncError, UsageError

app = typer.Typer(
    name="lipsync",
    help="Lip-sync dubbing: re-generate the mouth in a video so it matches a new speech track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(help="Train the lip-sync expert or a generator.", no_args_is_help=True)
weights_app = typer.Typer(help="List, download, verify and locate model weights.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(weights_app, name="weights")

DETECTOR_HELP = "Face backend: face_alignment, face_alignment:<its detector> (sfd, blazeface) or dlib."
VERBOSE_FLAGS = ("-v", "--verbose", "--debug")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Show tracebacks and debug logs.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lipsync-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    verbose: bool = VerboseOpt,
) -> None:
    """Lip-sync dubbing from the command line."""


def _parse_shard(text: Optional[str]) -> tuple[int, int]:
    """'i/n' → (i, n) with 0 <= i < n; None → (0, 1)."""
    if text is None:
        return (0, 1)
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise UsageError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise UsageError(f"--shard {text}: need 0 <= i < n")
    return (i, n)


def _one_of(flag: str, value: str, choices: tuple[str, ...]) -> None:
    """A usage error (exit 2) naming the flag and its choices unless value is one of them."""
    if value not in choices:
        raise UsageError(f"{flag} must be {', '.join(choices[:-1])} or {choices[-1]}, got {value!r}")


def _face_arg(value: str) -> str:
    if value in ("largest", "center") or value.isdigit():
        return value
    raise UsageError(f"--face must be 'largest', 'center' or a face index, got {value!r}")


@app.command()
def dub(
    video: Optional[Path] = typer.Argument(None, help="Video (or still image) of a person talking."),
    audio: Optional[Path] = typer.Argument(None, help="New speech: any file with an audio stream."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output mp4 (default: <video stem>_dubbed.mp4 next to VIDEO)."),
    model: str = typer.Option("wav2lip_gan", "--model", "-m", help="weights.toml name or checkpoint path."),
    detector: str = typer.Option("face_alignment", "--detector", help=DETECTOR_HELP),
    box: Optional[List[int]] = typer.Option(None, "--box", help="Fixed face box X1 Y1 X2 Y2 (skips detection).", show_default=False),
    face: str = typer.Option("largest", "--face", help="Which face when several: largest, center or an index N."),
    pads: Optional[List[int]] = typer.Option(None, "--pads", help="Padding T B L R around the face box, pixels [default: 0 10 0 0]."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Generator batch size (halved on out-of-memory)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), fp32, fp16 or bf16."),
    crf: int = typer.Option(18, "--crf", min=0, max=51, help="H.264 quality (lower is better)."),
    loop: str = typer.Option("pingpong", "--loop", help="Extend a short video: pingpong or forward."),
    fps: float = typer.Option(25.0, "--fps", min=1.0, help="Frame rate of the video made from a still image."),
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="Batch mode: CSV with columns video,audio,output."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch mode: process rows i of n, as i/n."),
    report: Optional[Path] = typer.Option(None, "--report", help="Batch mode: per-row status, seconds, frames and error as .csv or .json."),
    ray: bool = typer.Option(False, "--ray", help='Batch mode: spread rows over a Ray cluster, one worker per GPU (needs pip install "lipsync-cli\\[ray]").'),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --ray: host:port, ray://host:10001 or local (default: $RAY_ADDRESS, else a local cluster)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --ray: at most N workers (default: one per GPU)."),
    gpus_per_worker: float = typer.Option(RayConfig.gpus_per_worker, "--gpus-per-worker", min=0.01, help="With --ray: GPUs per worker (0.5: two per GPU)."),
    cpus_per_worker: int = typer.Option(RayConfig.cpus_per_worker, "--cpus-per-worker", min=1, help="With --ray on a cluster without GPUs: cores per worker."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite an existing output."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Dub VIDEO with AUDIO: the lips are re-generated to match the new speech."""
    from lipsync_cli.config import DubConfig, FaceConfig

    if box is not None and len(box) not in (0, 4):
        raise UsageError("--box takes four numbers: X1 Y1 X2 Y2")
    _one_of("--loop", loop, ("pingpong", "forward"))
    _one_of("--precision", precision, ("auto", "fp32", "fp16", "bf16"))
    faces = FaceConfig(
        detector=detector,
        box=tuple(box) if box else None,
        face=_face_arg(face),
        pads=tuple(pads) if pads else FaceConfig().pads,
    )
    cfg = DubConfig(model=model, faces=faces, batch_size=batch_size, device=device, precision=precision, crf=crf,
                    loop=loop, fps=fps, force=force, quiet=quiet)
    ray_cfg = _ray_config(ray, ray_address, workers, gpus_per_worker, cpus_per_worker)
    if jobs is not None:
        if video is not None or audio is not None:
            raise UsageError("pass either VIDEO AUDIO or --jobs JOBS.csv, not both")
        raise typer.Exit(_run_jobs(jobs, cfg, _parse_shard(shard), report, ray_cfg))
    if video is None or audio is None:
        raise UsageError("dub needs VIDEO and AUDIO (or --jobs JOBS.csv)")
    for flag, value in (("--shard", shard), ("--report", report), ("--ray", ray_cfg)):
        if value is not None:
            raise UsageError(f"{flag} only applies with --jobs")
    from lipsync_cli.pipeline import dub as run_dub

    run_dub(video, audio, output, cfg)


def _ray_config(ray: bool, address, workers, gpus_per_worker, cpus_per_worker) -> Optional[RayConfig]:
    """The --ray settings, or None without --ray (where any of them is a usage error, not silently ignored)."""
    cfg = RayConfig(address=address, workers=workers, gpus_per_worker=gpus_per_worker, cpus_per_worker=cpus_per_worker)
    if not ray:
        if cfg != RayConfig():
            raise UsageError("--ray-address, --workers, --gpus-per-worker and --cpus-per-worker only apply with --ray")
        return None
    return cfg


def _run_jobs(jobs: Path, cfg, shard: tuple[int, int], report: Optional[Path], ray_cfg: Optional[RayConfig]) -> int:
    if ray_cfg is None:
        from lipsync_cli.batch import run_batch

        return run_batch(jobs, cfg, shard, report)
    from lipsync_cli.ray_batch import run_ray_batch

    return run_ray_batch(jobs, cfg, ray_cfg, shard, report)


@app.command()
def preprocess(
    src: Path = typer.Argument(..., help="Folder of videos, flat or speaker/clip.mp4 nested."),
    out: Path = typer.Argument(..., help="Dataset folder to write (re-runs skip finished clips)."),
    size: int = typer.Option(96, "--size", min=32, help="Face crop side in pixels."),
    detector: str = typer.Option("face_alignment", "--detector", help=DETECTOR_HELP),
    workers: int = typer.Option(1, "--workers", min=1, help="Clips processed in parallel."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process clips i of n, as i/n."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", min=0.0, max=0.9, help="Share of clips held out for validation."),
    device: str = typer.Option("auto", "--device", help="Face detector device: auto, cpu or cuda."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Turn a folder of talking-face videos into a training dataset."""
    from lipsync_cli.config import PreprocessConfig
    from lipsync_cli.data.preprocess import preprocess as run_preprocess

    cfg = PreprocessConfig(size=size, detector=detector, workers=workers, shard=_parse_shard(shard),
                           val_fraction=val_fraction, device=device)
    run_preprocess(src, out, cfg, quiet=quiet)


# Options shared by both `train` commands (the Trainer's settings, TrainConfig).
MaxStepsOpt = typer.Option(200_000, "--max-steps", min=1, help="Total optimisation steps.")
ValEveryOpt = typer.Option(1000, "--val-every", min=1, help="Steps between validations.")
CkptEveryOpt = typer.Option(1000, "--ckpt-every", min=1, help="Steps between checkpoints.")
TrainDeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda (torchrun: one GPU per process).")
WorkersOpt = typer.Option(2, "--workers", min=0, help="DataLoader worker processes.")
SeedOpt = typer.Option(0, "--seed", help="RNG seed.")
ResumeOpt = typer.Option(False, "--resume", help="Continue from RUN_DIR/last.pt.")


def _train_config(batch_size, lr, max_steps, val_every, ckpt_every, device, workers, seed, resume):
    from lipsync_cli.config import TrainConfig

    return TrainConfig(batch_size=batch_size, lr=lr, max_steps=max_steps, val_every=val_every,
                       ckpt_every=ckpt_every, device=device, num_workers=workers, seed=seed, resume=resume)


@train_app.command("expert")
def train_expert(
    data: Path = typer.Argument(..., help="Dataset folder written by `lipsync preprocess`."),
    run_dir: Path = typer.Option(..., "--output", "-o", help="Run folder for checkpoints and logs."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: float = typer.Option(1e-4, "--lr"),
    max_steps: int = MaxStepsOpt,
    val_every: int = ValEveryOpt,
    ckpt_every: int = CkptEveryOpt,
    device: str = TrainDeviceOpt,
    workers: int = WorkersOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Train the Wav2Lip-compatible lip-sync expert."""
    from lipsync_cli.config import ExpertConfig
    from lipsync_cli.train import train_expert as run

    cfg = _train_config(batch_size, lr, max_steps, val_every, ckpt_every, device, workers, seed, resume)
    run(data, run_dir, cfg, ExpertConfig(), quiet=quiet)


@train_app.command("generator")
def train_generator(
    data: Path = typer.Argument(..., help="Dataset folder written by `lipsync preprocess`."),
    expert: str = typer.Option(..., "--expert", help="Expert checkpoint (path or weights.toml name), kept frozen."),
    run_dir: Path = typer.Option(..., "--output", "-o", help="Run folder for checkpoints and logs."),
    arch: str = typer.Option("wav2lip", "--arch", help="wav2lip or refs (the reference-attention generator)."),
    gan: Optional[bool] = typer.Option(None, "--gan/--no-gan", show_default=False,
                                       help="Adversarial training [default: off for wav2lip, on (stage 2) for refs]."),
    batch_size: int = typer.Option(16, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr", show_default=False, help="Adam LR [default: 1e-4 wav2lip, 2e-4 refs]."),
    max_steps: int = MaxStepsOpt,
    val_every: int = ValEveryOpt,
    ckpt_every: int = CkptEveryOpt,
    sync_threshold: float = typer.Option(0.75, "--sync-threshold", help="wav2lip: validation sync loss that switches the sync loss on."),
    refs_k: int = typer.Option(10, "--refs", min=1, help="refs: K KMeans reference frames per clip."),
    base: int = typer.Option(32, "--base", min=4, help="refs: channels of the first encoder level."),
    perceptual: str = typer.Option("imagenet", "--perceptual", help="refs: VGG-16 weights of the perceptual loss: imagenet, random or off."),
    reference_mode: str = typer.Option("kmeans", "--reference-mode", help="refs: kmeans (K references) or random (1 random reference, ablation)."),
    attention: bool = typer.Option(True, "--attention/--mean-refs", help="refs: audio-keyed attention over references, or their mean (ablation)."),
    mask_head: bool = typer.Option(True, "--mask-head/--no-mask-head", help="refs: predict the blend mask (off: landmark mask, ablation)."),
    residual: bool = typer.Option(True, "--residual/--no-residual", help="refs: residual encoder blocks (off: plain, ablation)."),
    device: str = TrainDeviceOpt,
    workers: int = WorkersOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Train a generator (Wav2Lip architecture or the reference-attention one)."""
    from lipsync_cli.config import GeneratorConfig, RefsConfig
    from lipsync_cli.train import train_generator as run

    _one_of("--arch", arch, ("wav2lip", "refs"))
    _one_of("--perceptual", perceptual, ("imagenet", "random", "off"))
    _one_of("--reference-mode", reference_mode, ("kmeans", "random"))
    refs = RefsConfig(n_refs=refs_k, base=base, perceptual=perceptual, reference_mode=reference_mode,
                      attention=attention, mask_head=mask_head, residual=residual,
                      adversarial=True if gan is None else gan)
    gen_cfg = GeneratorConfig(arch=arch, refs=refs, gan=bool(gan), sync_threshold=sync_threshold)
    lr = lr if lr is not None else (2e-4 if arch == "refs" else 1e-4)
    cfg = _train_config(batch_size, lr, max_steps, val_every, ckpt_every, device, workers, seed, resume)
    run(data, run_dir, cfg, gen_cfg, expert, quiet=quiet)


@app.command()
def evaluate(
    video: Path = typer.Argument(..., help="Dubbed (or any talking-face) video."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Speech to check against (default: the video's own audio)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Ground-truth video: adds PSNR, SSIM, LMD, sharpness."),
    expert: str = typer.Option("lipsync_expert", "--expert", help="Expert checkpoint (path or weights.toml name)."),
    detector: str = typer.Option("face_alignment", "--detector", help=DETECTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    device: str = typer.Option("auto", "--device"),
    verbose: bool = VerboseOpt,
) -> None:
    """Measure lip-sync (expert distance/confidence over offsets) and, with --reference, image quality."""
    from lipsync_cli.evaluate import evaluate as run

    run(video, audio=audio, reference=reference, expert=expert, detector=detector, as_json=as_json, device=device)


@weights_app.command("list")
def weights_list() -> None:
    """Show every known weights file: licence, size and whether it is cached."""
    from lipsync_cli import weights

    weights.print_table()


@weights_app.command("download")
def weights_download(
    names: Optional[List[str]] = typer.Argument(None, help="Entries to fetch (default: all)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept licences without asking."),
    verbose: bool = VerboseOpt,
) -> None:
    """Download weights into the cache (shows each licence first)."""
    from lipsync_cli import weights

    for name in names or weights.names():
        typer.echo(weights.resolve(name, accept_licence=yes))


@weights_app.command("verify")
def weights_verify(
    names: Optional[List[str]] = typer.Argument(None, help="Entries to check (default: all cached)."),
    verbose: bool = VerboseOpt,
) -> None:
    """Re-hash cached weights against weights.toml."""
    from lipsync_cli import weights

    weights.verify_cached(names or None)


@weights_app.command("path")
def weights_path(name: str = typer.Argument(..., help="Entry name."), verbose: bool = VerboseOpt) -> None:
    """Print the local path of a weights file (resolving it, without downloading)."""
    from lipsync_cli import weights

    typer.echo(weights.resolve(name, download=False))


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: run the app, turn our errors into one line and an exit code."""
    import click

    args = sys.argv[1:] if argv is None else argv
    verbose = any(a in VERBOSE_FLAGS for a in args)
    _configure_logging(verbose)
    signals = _interrupt_on_sigterm()
    try:
        code = app(args=args, standalone_mode=False, prog_name="lipsync")
    except LipsyncError as err:
        _fail(err, err.exit_code, verbose)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except Terminated:
        _fail("terminated (SIGTERM); partial output was removed", 143, verbose)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail("interrupted; partial output was removed", 130, verbose)
    except Exception as err:  # an internal bug: still one line unless asked for details
        _fail(f"internal error: {type(err).__name__}: {err} (run with -v for the traceback)", 5, verbose)
    if code == 130:  # typer catches KeyboardInterrupt (Terminated included) itself and returns 130, silently
        if signals["sigterm"]:
            _fail("terminated (SIGTERM); partial output was removed", 143, verbose)
        _fail("interrupted; partial output was removed", 130, verbose)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(err, code: int, verbose: bool) -> None:
    if verbose and isinstance(err, BaseException):
        import traceback

        traceback.print_exc()
    typer.echo(f"error: {err}", err=True)
    sys.exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so every `with`/`finally` cleanup (temp files, checkpoints) runs."""


def _interrupt_on_sigterm() -> dict:
    """Install the SIGTERM handler; the returned dict records whether it fired (typer hides the exception)."""
    import signal

    seen = {"sigterm": False}

    def handler(signum, frame):
        seen["sigterm"] = True
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)
    return seen


def _configure_logging(verbose: bool) -> None:
    import logging

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
