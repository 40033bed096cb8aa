"""The `lipsync` command line: thin adapters (parse → call one library function → map errors).

The library modules are imported at the top; none of them imports torch or a face backend at import
(they do so inside the functions that need them), so `lipsync --help` stays fast. The one exception is
the training package, whose modules are torch modules: `lipsync train` imports it inside the command.
Errors are one line on stderr with the exit codes of lipsync_cli.errors; a traceback only with -v/--verbose.
"""

from __future__ import annotations

import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import List, Literal, Optional, Tuple, get_args

import typer

from lipsync_cli import __version__, batch, pipeline, ray_batch, weights
from lipsync_cli.config import (ARCH_GAN, DubConfig, ExpertConfig, FaceConfig, FaceCrop, GeneratorArch, GeneratorConfig,
                                LoopMode, MuseTalkReference, PerceptualWeights, Precision, PreprocessConfig, RayConfig,
                                ReferenceMode, RefsConfig, SyncNetConfig, TrainConfig, train_defaults)
from lipsync_cli.data import preprocess as preprocessing
from lipsync_cli.device import pick_device
from lipsync_cli.errors import LipsyncError, UsageError
from lipsync_cli.evaluation import evaluate as evaluation
from lipsync_cli.faces import detector_names, survey
from lipsync_cli.generators.registry import FAMILIES, claiming_family

# Plain (click-style) help: Typer's rich help prints `<bool>` after every on/off flag (Typer 0.29) and folds
# words at 80 columns; the plain one shows `--gan / --no-gan` and wraps at spaces.
HELP = dict(rich_markup_mode=None)

app = typer.Typer(
    **HELP,
    name="lipsync",
    help="Lip-sync dubbing: re-generate the mouth in a video so it matches a new speech track.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
train_app = typer.Typer(**HELP, help="Train the lip-sync expert or a generator.", no_args_is_help=True)
weights_app = typer.Typer(**HELP, help="List, download, verify and locate model weights.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(weights_app, name="weights")

DETECTOR_HELP = ("Face backend: auto (mediapipe on a CPU, face_alignment on CUDA), mediapipe (Apache-2.0 weights), "
                 "face_alignment, face_alignment:<its detector> (sfd, blazeface, retinaface, ...) or dlib.")
DETECTOR_METAVAR = "auto|mediapipe|face_alignment[:DET]|dlib"
VERBOSE_FLAGS = ("-v", "--verbose", "--debug")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")
StartOpt = typer.Option(DubConfig().start, "--start", min=0.0, metavar="SECONDS",
                        help="Start this many seconds into VIDEO and AUDIO (both cut there, in sync).")
DurationOpt = typer.Option(DubConfig().duration, "--duration", min=0.01, metavar="SECONDS", show_default=False,
                           help="Only this many seconds from --start (try settings on a short piece).")

# Every default below is read from the config dataclasses (the one source of defaults); the CLI only names them.
DUB, FACES, PREP, TRAIN = DubConfig(), FaceConfig(), PreprocessConfig(), TrainConfig()
GEN, REFS, EXPERT_TRAIN, LSE, RAY = GeneratorConfig(), RefsConfig(), train_defaults("expert"), SyncNetConfig(), RayConfig()


Detector = Literal[tuple(detector_names())]  # type: ignore[valid-type]  # the registry's names, as choices


def _version(value: bool) -> None:
    if value:
        typer.echo(f"lipsync-cli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    verbose: bool = typer.Option(False, *VERBOSE_FLAGS, help="Show tracebacks and debug logs (also accepted after any command)."),
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


def _face_arg(value: str) -> str:
    if value in ("largest", "center") or value.isdigit():
        return value
    raise UsageError(f"--face must be 'largest', 'center' or a face index, got {value!r}")


@app.command()
def dub(
    video: Optional[Path] = typer.Argument(None, help="Video (or still image) of a person talking."),
    audio: Optional[Path] = typer.Argument(None, help="New speech: any file with an audio stream."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output mp4 (default: <video stem>_dubbed.mp4 next to VIDEO)."),
    model: str = typer.Option(DUB.model, "--model", "-m",
                              help="weights.toml name (wav2lip_gan, wav2lip, musetalk, latentsync, latentsync-1.5), checkpoint path, MuseTalk models/ or LatentSync checkpoints/ folder."),
    detector: Detector = typer.Option(FACES.detector, "--detector", metavar=DETECTOR_METAVAR, help=DETECTOR_HELP),
    box: Optional[Tuple[int, int, int, int]] = typer.Option(None, "--box", metavar="X1 Y1 X2 Y2",
                                                            help="Fixed face box (skips detection).", show_default=False),
    face: str = typer.Option(FACES.face, "--face", help="Which face when several: largest, center or an index N."),
    pads: Tuple[int, int, int, int] = typer.Option(FACES.pads, "--pads", metavar="T B L R",
                                                   help="Padding around the face box, pixels."),
    batch_size: int = typer.Option(DUB.batch_size, "--batch-size", min=1,
                                   help="Generator batch size (halved on out-of-memory; MuseTalk: at most 8)."),
    reference: MuseTalkReference = typer.Option(DUB.musetalk.reference, "--reference",
                                                help="MuseTalk reference image: each frame itself, or a few KMeans frames per clip "
                                                     "(closest head pose, closed mouth)."),
    seed: int = typer.Option(DUB.latentsync.seed, "--seed", help="LatentSync: seed of its noise and VAE draws (same seed, same output)."),
    steps: int = typer.Option(DUB.latentsync.steps, "--steps", min=1, max=1000, help="LatentSync: DDIM denoising steps."),
    guidance: float = typer.Option(DUB.latentsync.guidance, "--guidance", min=1.0, help="LatentSync: classifier-free guidance scale (1: off, faster)."),
    deepcache: bool = typer.Option(DUB.latentsync.deepcache, "--deepcache", help="LatentSync: the whole UNet only every 3rd step, as upstream's launchers (about 2.5x faster, approximate)."),
    device: str = typer.Option(DUB.device, "--device", help="auto, cpu or cuda[:N]."),
    precision: Precision = typer.Option(DUB.precision, "--precision",
                                        help="auto: fp16 on CUDA, bf16 on CPUs with native bf16, else fp32."),
    crf: int = typer.Option(DUB.crf, "--crf", min=0, max=51, help="H.264 quality (lower is better)."),
    loop: LoopMode = typer.Option(DUB.loop, "--loop", help="Extend a short video back and forth, or from the start."),
    fps: float = typer.Option(DUB.fps, "--fps", min=1.0, help="Frame rate of the video made from a still image."),
    jobs: Optional[Path] = typer.Option(None, "--jobs", help="Batch mode: CSV with columns video,audio,output."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Batch mode: process rows i of n, as i/n."),
    report: Optional[Path] = typer.Option(None, "--report", help="Batch mode: per-row status, seconds, frames and error as .csv or .json."),
    ray: bool = typer.Option(False, "--ray", help='Batch mode: spread rows over a Ray cluster, one worker per GPU (needs pip install "lipsync-cli[ray]").'),
    ray_address: Optional[str] = typer.Option(RAY.address, "--ray-address", help="With --ray: host:port, ray://host:10001 or local (default: $RAY_ADDRESS, else a local cluster)."),
    workers: Optional[int] = typer.Option(RAY.workers, "--workers", min=1, help="With --ray: at most N workers (default: one per GPU)."),
    gpus_per_worker: float = typer.Option(RAY.gpus_per_worker, "--gpus-per-worker", min=0.01, help="With --ray: GPUs per worker (0.5: two per GPU)."),
    cpus_per_worker: int = typer.Option(RAY.cpus_per_worker, "--cpus-per-worker", min=1, help="With --ray on a cluster without GPUs: cores per worker."),
    start: float = StartOpt,
    duration: Optional[float] = DurationOpt,
    tmp_dir: Optional[Path] = typer.Option(DUB.tmp_dir, "--tmp-dir", help="Where a looped video's frames are spooled (default: a hidden folder beside the output); its free space is checked first."),
    force: bool = typer.Option(DUB.force, "--force", "-f", help="Overwrite an existing output (with --jobs: dub every row again, done ones too)."),
    commercial: bool = typer.Option(DUB.commercial, "--commercial",
                                    help="Refuse to start unless every model of the run is cleared for commercial use "
                                         "(--detector auto then means mediapipe)."),
    quiet: bool = QuietOpt,
) -> None:
    """Dub VIDEO with AUDIO: the lips are re-generated to match the new speech."""
    claimed = claiming_family(model)
    if claimed is None:
        weights.check_generator(model, FAMILIES)
    latentsync = replace(DUB.latentsync, seed=seed, steps=steps, guidance=guidance, deepcache=deepcache)
    if latentsync != DUB.latentsync and claimed != "latentsync":
        raise UsageError("--seed, --steps, --guidance and --deepcache apply only to --model latentsync, "
                         "latentsync-1.5 or a LatentSync checkpoints folder")
    if reference != DUB.musetalk.reference and claimed != "musetalk":
        raise UsageError("--reference applies only to --model musetalk (or a MuseTalk models/ folder)")
    faces = FaceConfig(detector=detector, box=box, face=_face_arg(face), pads=pads)
    cfg = DubConfig(model=model, faces=faces, batch_size=batch_size, device=device, precision=precision, crf=crf,
                    loop=loop, fps=fps, start=start, duration=duration, force=force, quiet=quiet,
                    commercial=commercial, musetalk=replace(DUB.musetalk, reference=reference), latentsync=latentsync,
                    tmp_dir=str(tmp_dir) if tmp_dir is not None else None)
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

    pipeline.dub(video, audio, output, cfg)


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
        return batch.run_batch(jobs, cfg, shard, report)

    return ray_batch.run_ray_batch(jobs, cfg, ray_cfg, shard, report)


@app.command()
def faces(
    video: Path = typer.Argument(..., help="Video (or still image) to look for faces in."),
    image: Optional[Path] = typer.Option(None, "--image", help="Picture with the numbered boxes "
                                                                "(default: <video stem>_faces.png next to VIDEO)."),
    detector: Detector = typer.Option(FACES.detector, "--detector", metavar=DETECTOR_METAVAR, help=DETECTOR_HELP),
    device: str = typer.Option(DUB.device, "--device", help="Face detector device: auto, cpu or cuda."),
    start: float = StartOpt,
    duration: Optional[float] = DurationOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    quiet: bool = QuietOpt,
) -> None:
    """List the faces a dub can follow (the index --face takes, frames, mean box) and draw them numbered."""
    image = image or video.with_name(f"{video.stem}_faces.png")
    survey.list_faces(video, image, FaceConfig(detector=detector), pick_device(device), start, duration, as_json, quiet)


@app.command()
def preprocess(
    src: Path = typer.Argument(..., help="Folder of videos, flat or speaker/clip.mp4 nested."),
    out: Path = typer.Argument(..., help="Dataset folder to write (re-runs skip finished clips)."),
    size: int = typer.Option(PREP.size, "--size", min=32, help="Face crop side in pixels."),
    detector: Detector = typer.Option(PREP.detector, "--detector", metavar=DETECTOR_METAVAR, help=DETECTOR_HELP),
    workers: int = typer.Option(PREP.workers, "--workers", min=1, help="Clips processed in parallel."),
    shard: Optional[str] = typer.Option(None, "--shard", help="Process clips i of n, as i/n."),
    val_fraction: float = typer.Option(PREP.val_fraction, "--val-fraction", min=0.0, max=0.9,
                                       help="Share of clips held out for validation."),
    device: str = typer.Option(PREP.device, "--device", help="Face detector device: auto, cpu or cuda."),
    quiet: bool = QuietOpt,
) -> None:
    """Turn a folder of talking-face videos into a training dataset."""
    cfg = PreprocessConfig(size=size, detector=detector, workers=workers, shard=_parse_shard(shard),
                           val_fraction=val_fraction, device=device)
    preprocessing.preprocess(src, out, cfg, quiet=quiet)


# Options shared by both `train` commands (the Trainer's settings, TrainConfig).
MaxStepsOpt = typer.Option(TRAIN.max_steps, "--max-steps", min=1, help="Total optimisation steps.")
ValEveryOpt = typer.Option(TRAIN.val_every, "--val-every", min=1, help="Steps between validations.")
CkptEveryOpt = typer.Option(TRAIN.ckpt_every, "--ckpt-every", min=1, help="Steps between checkpoints.")
LogEveryOpt = typer.Option(TRAIN.log_every, "--log-every", min=1, help="Steps between log lines (the progress bar "
                                                                       "shows the latest losses every step).")
TrainDeviceOpt = typer.Option(TRAIN.device, "--device", help="auto, cpu or cuda (torchrun: one GPU per process).")
WorkersOpt = typer.Option(TRAIN.num_workers, "--workers", min=0, help="DataLoader worker processes.")
SeedOpt = typer.Option(TRAIN.seed, "--seed", help="RNG seed.")
ResumeOpt = typer.Option(TRAIN.resume, "--resume", help="Continue from RUN_DIR/last.pt.")


def _per_arch(field: str) -> str:
    """'16 wav2lip, 16 refs': a generator Trainer default per architecture, for --help."""
    return ", ".join(f"{getattr(train_defaults(arch), field):g} {arch}" for arch in get_args(GeneratorArch))


def _trainer_settings(model: str, options: dict) -> TrainConfig:
    """The TrainConfig of a train command: its options named as TrainConfig fields, over `model`'s defaults."""
    names = {f.name for f in fields(TrainConfig)}
    return train_defaults(model, **{k: v for k, v in options.items() if k in names})


@train_app.command("expert")
def train_expert(
    data: Path = typer.Argument(..., help="Dataset folder written by `lipsync preprocess`."),
    run_dir: Path = typer.Option(..., "--output", "-o", help="Run folder for checkpoints and logs."),
    batch_size: int = typer.Option(EXPERT_TRAIN.batch_size, "--batch-size", min=1),
    lr: float = typer.Option(EXPERT_TRAIN.lr, "--lr", help="Adam learning rate."),
    max_steps: int = MaxStepsOpt,
    val_every: int = ValEveryOpt,
    ckpt_every: int = CkptEveryOpt,
    log_every: int = LogEveryOpt,
    device: str = TrainDeviceOpt,
    num_workers: int = WorkersOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train the Wav2Lip-compatible lip-sync expert."""
    from lipsync_cli.train import train_expert as run

    run(data, run_dir, _trainer_settings("expert", locals()), ExpertConfig(), quiet=quiet)


@train_app.command("generator")
def train_generator(
    data: Path = typer.Argument(..., help="Dataset folder written by `lipsync preprocess`."),
    expert: str = typer.Option(..., "--expert", help="Expert checkpoint (path or weights.toml name), kept frozen."),
    run_dir: Path = typer.Option(..., "--output", "-o", help="Run folder for checkpoints and logs."),
    arch: GeneratorArch = typer.Option(GEN.arch, "--arch", help="Wav2Lip's architecture or the reference-attention one."),
    gan: Optional[bool] = typer.Option(GEN.gan, "--gan/--no-gan", show_default=False,
                                       help="Adversarial training [default: " + ", ".join(
                                           f"{'on' if on else 'off'} for {a}" for a, on in ARCH_GAN.items()) + "]."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, show_default=False,
                                             help=f"[default: {_per_arch('batch_size')}]"),
    lr: Optional[float] = typer.Option(None, "--lr", show_default=False, help=f"Adam LR [default: {_per_arch('lr')}]."),
    max_steps: int = MaxStepsOpt,
    val_every: int = ValEveryOpt,
    ckpt_every: int = CkptEveryOpt,
    log_every: int = LogEveryOpt,
    sync_threshold: float = typer.Option(GEN.sync_threshold, "--sync-threshold",
                                         help="wav2lip: validation sync loss that switches the sync loss on."),
    refs_k: int = typer.Option(REFS.n_refs, "--refs", min=1, help="refs: K KMeans reference frames per clip."),
    base: int = typer.Option(REFS.base, "--base", min=4, help="refs: channels of the first encoder level."),
    perceptual: PerceptualWeights = typer.Option(REFS.perceptual, "--perceptual",
                                                 help="refs: VGG-16 weights of the perceptual loss."),
    reference_mode: ReferenceMode = typer.Option(REFS.reference_mode, "--reference-mode",
                                                 help="refs: K KMeans references, or 1 random reference (ablation)."),
    attention: bool = typer.Option(REFS.attention, "--attention/--mean-refs", help="refs: audio-keyed attention over references, or their mean (ablation)."),
    mask_head: bool = typer.Option(REFS.mask_head, "--mask-head/--no-mask-head", help="refs: predict the blend mask (off: landmark mask, ablation)."),
    residual: bool = typer.Option(REFS.residual, "--residual/--no-residual", help="refs: residual encoder blocks (off: plain, ablation)."),
    device: str = TrainDeviceOpt,
    num_workers: int = WorkersOpt,
    seed: int = SeedOpt,
    resume: bool = ResumeOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Train a generator (Wav2Lip architecture or the reference-attention one)."""
    from lipsync_cli.train import train_generator as run

    refs = RefsConfig(n_refs=refs_k, base=base, perceptual=perceptual, reference_mode=reference_mode,
                      attention=attention, mask_head=mask_head, residual=residual)
    gen_cfg = GeneratorConfig(arch=arch, refs=refs, gan=gan, sync_threshold=sync_threshold)
    run(data, run_dir, _trainer_settings(arch, locals()), gen_cfg, expert, quiet=quiet)


@app.command()
def evaluate(
    video: Path = typer.Argument(..., help="Dubbed (or any talking-face) video; or a folder / .txt list of videos (per-video rows and their mean)."),
    audio: Optional[Path] = typer.Option(None, "--audio", help="Speech to check against (default: the video's own audio)."),
    reference: Optional[Path] = typer.Option(None, "--reference", help="Ground-truth video (a folder of same-named ones for a folder): adds PSNR, SSIM, LMD, sharpness."),
    expert: Optional[str] = typer.Option(None, "--expert", show_default=False,
                                         help="Our expert: checkpoint path, weights.toml name, or none to skip it (default: "
                                              "lipsync_expert, skipped with a warning when not here)."),
    detector: Detector = typer.Option(FACES.detector, "--detector", metavar=DETECTOR_METAVAR, help=DETECTOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda[:N]."),
    face: str = typer.Option(FACES.face, "--face", help="Which face is scored when several: largest, center or an index N."),
    syncnet: Optional[str] = typer.Option(LSE.weights, "--syncnet", show_default=False,
                                          help="Original SyncNet for LSE-D/LSE-C: weights.toml name or syncnet_v2.model path "
                                               "(default: the syncnet_v2 entry; LSE is then skipped with a warning when unavailable; none: skip it)."),
    face_crop: FaceCrop = typer.Option(LSE.face_crop, "--face-crop",
                                       help="auto: detect and crop as syncnet_python; none: VIDEO already is a face crop."),
    jpeg: bool = typer.Option(LSE.jpeg, "--jpeg/--no-jpeg", help="Upstream's JPEG round trip of every crop (published LSE numbers include it)."),
    start: float = StartOpt,
    duration: Optional[float] = DurationOpt,
) -> None:
    """Measure lip-sync (LSE-D/LSE-C with the original SyncNet, our expert's distance/confidence) and, with --reference, image quality."""
    lse = replace(LSE, weights=syncnet, face_crop=face_crop, jpeg=jpeg)
    evaluation.evaluate(video, audio=audio, reference=reference, expert=expert, detector=detector, as_json=as_json,
                        device=device, face=_face_arg(face), syncnet=lse, start=start, duration=duration)


@weights_app.command("list")
def weights_list(as_json: bool = typer.Option(False, "--json", help="Print the list as JSON.")) -> None:
    """Show every known weights file: licence, size and whether it is cached (tab-separated when piped)."""
    weights.print_table(as_json=as_json)


@weights_app.command("download")
def weights_download(
    names: Optional[List[str]] = typer.Argument(None, help="Entries to fetch (default: all; musetalk: its parts)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Accept licences without asking."),
) -> None:
    """Download weights into the cache (shows each licence first)."""
    for name in weights.expand(names or weights.names()):
        typer.echo(weights.resolve(name, accept_licence=yes))


@weights_app.command("verify")
def weights_verify(
    names: Optional[List[str]] = typer.Argument(None, help="Entries to check (default: every local one, and the "
                                                           "default model's files must be there; musetalk: its parts)."),
) -> None:
    """Re-hash local weights against weights.toml; name the default model's files that are missing."""
    weights.verify_cached(weights.expand(names) if names else None, required=weights.expand([DUB.model]))


@weights_app.command("path")
def weights_path(name: str = typer.Argument(..., help="Entry name (musetalk: each of its parts, one a line).")) -> None:
    """Print the local path of a weights file (resolving it, without downloading)."""
    for part in weights.expand([name]):
        typer.echo(weights.resolve(part, download=False))


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: run the app, turn our errors into one line and an exit code."""
    args = _hoist_verbose(sys.argv[1:] if argv is None else list(argv))
    verbose = bool(args) and args[0] == "--verbose"
    _configure_logging(verbose)
    signals = _interrupt_on_sigterm()
    try:
        code = app(args=args, standalone_mode=False, prog_name="lipsync")
    except LipsyncError as err:
        _fail(err, err.exit_code, verbose)
    except _click_errors("ClickException", typer.TyperException) as err:  # a bad option or argument: the parser's own message, its exit code (2)
        message = err.format_message()
        if type(err).__name__ == "NoArgsIsHelpError":  # `lipsync train` alone: its help is the answer
            typer.echo(message)
            sys.exit(getattr(err, "exit_code", 2))
        if not message:  # the same with rich help, which printed it itself
            sys.exit(getattr(err, "exit_code", 2))
        _fail(message, getattr(err, "exit_code", 2), verbose)
    except Terminated:
        _fail("terminated (SIGTERM); partial output was removed", 143, verbose)
    except (KeyboardInterrupt, *_click_errors("Abort", typer.Abort)):
        _fail("interrupted; partial output was removed", 130, verbose)
    except Exception as err:  # an internal bug: still one line unless asked for details
        _fail(f"internal error: {type(err).__name__}: {err} (run with -v for the traceback)", 5, verbose)
    if code == 130:  # typer catches KeyboardInterrupt (Terminated included) itself and returns 130, silently
        if signals["sigterm"]:
            _fail("terminated (SIGTERM); partial output was removed", 143, verbose)
        _fail("interrupted; partial output was removed", 130, verbose)
    sys.exit(code if isinstance(code, int) else 0)


def _hoist_verbose(args: List[str]) -> List[str]:
    """-v/--verbose/--debug anywhere on the line → one --verbose in front, where the root command declares it,
    so `lipsync dub a.mp4 b.wav -v` works and logging is configured before any command runs."""
    if not any(a in VERBOSE_FLAGS for a in args):
        return args
    return ["--verbose", *(a for a in args if a not in VERBOSE_FLAGS)]


def _click_errors(name: str, typer_class) -> tuple:
    """Typer's class and the separate click package's class of that name (when installed): Typer >= 0.2x
    raises those of its own copy of click (ClickException subclasses typer.TyperException); older Typer
    raised click's."""
    try:
        import click

        return (typer_class, getattr(click.exceptions, name))
    except ImportError:
        return (typer_class,)


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
    """Warnings from everyone; with -v our own debug lines (device, model, detector, timings) as well, but not
    third-party debug output (numba alone printed hundreds of bytecode lines at DEBUG)."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ours = logging.getLogger("lipsync_cli")
    for handler in [h for h in ours.handlers if getattr(h, "lipsync_verbose", False)]:
        ours.removeHandler(handler)  # main() may run more than once in a process (tests, batch drivers)
    ours.setLevel(logging.DEBUG if verbose else logging.NOTSET)
    ours.propagate = not verbose
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.lipsync_verbose = True
        ours.addHandler(handler)
