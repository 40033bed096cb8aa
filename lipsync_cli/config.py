"""Typed configuration: one frozen dataclass per component, the one source of defaults.

The CLI builds these from its options; library users build them directly. Each field has a
one-line comment saying what it controls. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal, Optional, Tuple

# The choices of the string-valued settings, named once: the dataclasses below type their fields with these
# and the CLI hands the same types to Typer, so `--help` lists them and a wrong value is a parser error.
LoopMode = Literal["pingpong", "forward"]
Precision = Literal["auto", "fp32", "fp16", "bf16"]
GeneratorArch = Literal["wav2lip", "refs"]
PerceptualWeights = Literal["imagenet", "random", "off"]
ReferenceMode = Literal["kmeans", "random"]
MuseTalkReference = Literal["same", "kmeans"]
FaceCrop = Literal["auto", "none"]


@dataclass(frozen=True)
class FaceConfig:
    """How faces are found, chosen, tracked and cropped."""

    detector: str = "auto"  # "auto" (face_alignment on CUDA, dlib on a CPU when installed) or a name in faces.REGISTRY
    box: Optional[Tuple[int, int, int, int]] = None  # fixed x1 y1 x2 y2 in display pixels: skips detection
    face: str = "largest"  # which face when several: "largest", "center" or an index N (left to right)
    pads: Tuple[int, int, int, int] = (0, 10, 0, 0)  # top, bottom, left, right padding in pixels (Wav2Lip's default)
    detect_max_side: int = 640  # frames are downscaled so their longer side is at most this before detection
    smooth_window: int = 5  # centred temporal window (frames) for box smoothing; 1 disables
    scene_cut_threshold: float = 0.3  # box IoU below this between consecutive frames starts a new smoothing segment
    track_min_iou: float = 0.2  # a detection continues the chosen face's track only above this IoU
    crossfade_frames: int = 3  # frames of cross-fade at the edges of a stretch with no face


@dataclass(frozen=True)
class MuseTalkConfig:
    """The MuseTalk 1.5 family (`--model musetalk` or a MuseTalk models/ folder)."""

    reference: MuseTalkReference = "same"  # reference image: each frame itself (as upstream) or K KMeans frames per clip
    n_refs: int = 5  # K KMeans reference frames with reference "kmeans"
    extra_margin: int = 10  # pixels added below the chin to the landmark box (MuseTalk v1.5's extra_margin)


@dataclass(frozen=True)
class LatentSyncConfig:
    """The LatentSync 1.6 / 1.5 family (`--model latentsync`, `latentsync-1.5` or a LatentSync checkpoints folder)."""

    seed: int = 1247  # seeds the initial noise and the VAE posterior draws (upstream's seed): same input, same output
    steps: int = 20  # DDIM denoising steps (upstream's inference_steps)
    guidance: float = 1.5  # classifier-free guidance scale; 1.0 runs one UNet half without guidance
    deepcache: bool = False  # upstream's launcher default: the whole UNet only every 3rd step (~2.5x faster, approximate)
    window: int = 16  # frames per UNet call (upstream's num_frames, at most 24); halved on out-of-memory
    vae_frames: int = 4  # frames per VAE encode/decode call (bounds the VAE's activation memory)


@dataclass(frozen=True)
class DubConfig:
    """Everything `lipsync dub` needs besides the two input paths."""

    model: str = "wav2lip_gan"  # weights.toml entry name or a checkpoint path
    faces: FaceConfig = field(default_factory=FaceConfig)  # face detection/tracking settings
    batch_size: int = 32  # generator batch; halved automatically on out-of-memory
    chunk_frames: int = 64  # frames decoded, generated and encoded per streaming chunk (bounds memory)
    device: str = "auto"  # "auto", "cpu", "cuda" or "cuda:N"
    precision: Precision = "auto"  # "auto" (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32) or a fixed one
    crf: int = 18  # H.264 constant rate factor of the output
    loop: LoopMode = "pingpong"  # how a video shorter than the audio is extended: back and forth, or from the start
    fps: float = 25.0  # frame rate of the video made from a still image
    start: float = 0.0  # seconds into VIDEO and AUDIO where the dub starts (both cut there, in sync)
    duration: Optional[float] = None  # seconds of AUDIO dubbed from `start`; None: to its end
    force: bool = False  # overwrite an existing output file
    quiet: bool = False  # no progress bars or summary
    musetalk: MuseTalkConfig = field(default_factory=MuseTalkConfig)  # settings of the MuseTalk family
    latentsync: LatentSyncConfig = field(default_factory=LatentSyncConfig)  # settings of the LatentSync family


@dataclass(frozen=True)
class RayConfig:
    """`lipsync dub --jobs JOBS.csv --ray`: how rows are spread over the workers of a Ray cluster."""

    address: Optional[str] = None  # "host:port", "ray://host:10001" or "local" (a new cluster); None: $RAY_ADDRESS, else local
    workers: Optional[int] = None  # at most this many workers; None: one per GPU (or per cpus_per_worker cores)
    gpus_per_worker: float = 1.0  # GPUs each worker reserves; 0.5 puts two workers on one GPU
    cpus_per_worker: int = 4  # cores per worker on a cluster without GPUs (its torch threads)
    retries: int = 2  # times a row whose worker died is re-queued (then it is reported failed); also worker restarts


@dataclass(frozen=True)
class PreprocessConfig:
    """`lipsync preprocess`: videos → frames, audio, mel, face tracks and crops."""

    size: int = 96  # side of the square face crops stored per frame
    detector: str = "auto"  # face backend name, as FaceConfig.detector
    fps: int = 25  # frames are resampled to this rate
    workers: int = 1  # parallel clip workers
    shard: Tuple[int, int] = (0, 1)  # (i, n): process only clips whose index % n == i
    val_fraction: float = 0.1  # share of speakers/clips held out for validation
    min_frames: int = 25  # shorter clips (or face tracks) are skipped
    max_gap_frames: int = 5  # face gaps up to this many frames are interpolated; longer ones cut the clip
    device: str = "auto"  # face detector device: "auto" (cuda when available), "cpu", "cuda"
    seed: int = 0  # seed of the train/val split


@dataclass(frozen=True)
class TrainConfig:
    """The shared Trainer's settings (all models)."""

    batch_size: int = 64  # samples per step per process
    lr: float = 1e-4  # Adam learning rate
    betas: Tuple[float, float] = (0.9, 0.999)  # Adam betas
    max_steps: int = 200_000  # total optimisation steps
    val_every: int = 1000  # steps between validations
    val_batches: int = 20  # batches per validation
    ckpt_every: int = 1000  # steps between checkpoints
    keep_last: int = 3  # step checkpoints kept besides last.pt and best.pt
    log_every: int = 50  # steps between log lines
    num_workers: int = 2  # DataLoader worker processes
    device: str = "auto"  # "auto", "cpu", "cuda"
    amp: bool = True  # mixed precision on CUDA (ignored on CPU)
    seed: int = 0  # RNG seed
    resume: bool = False  # continue from RUN_DIR/last.pt
    lr_anneal: float = 0.0  # last share of max_steps over which the LR falls linearly to 0 (0: constant, as Wav2Lip)


@dataclass(frozen=True)
class ExpertConfig:
    """The lip-sync expert (SyncNet-style) objective."""

    min_negative_offset: int = 5  # a negative window starts at least this many frames from the positive


@dataclass(frozen=True)
class SyncNetConfig:
    """`lipsync evaluate`'s LSE-D / LSE-C, measured with the original SyncNet (evaluation/upstream_syncnet.py)."""

    weights: Optional[str] = None  # weights.toml name or syncnet_v2.model path; None: the syncnet_v2 entry, skipped (with a warning) when unavailable
    face_crop: FaceCrop = "auto"  # "auto": our face track, cropped with upstream's rule; "none": the video already is a face crop
    jpeg: bool = True  # upstream's JPEG round trip of every crop: published LSE numbers include it
    batch_size: int = 20  # windows per SyncNet forward pass (upstream's; does not change the scores)


@dataclass(frozen=True)
class RefsConfig:
    """The reference-attention generator (arch "refs", issue 5): network, ablation switches, losses, stages."""

    n_refs: int = 10  # K references per clip (KMeans clusters of lip + chin landmarks)
    base: int = 32  # channels of the first encoder level (widths double down to S/32)
    attention: bool = True  # audio-keyed attention over the references; False averages them (ablation)
    mask_head: bool = True  # predict the blend mask; False blends with the landmark/lower-half mask (ablation)
    residual: bool = True  # residual Conv-BN-ReLU blocks; False makes them plain (ablation)
    reference_mode: ReferenceMode = "kmeans"  # K KMeans references, or 1 random reference (ablation)
    perceptual: PerceptualWeights = "imagenet"  # VGG-16 weights of the perceptual loss ("off": no perceptual loss)
    l1_weight: float = 1.0  # alpha_L1 (L1 inside the landmark mask)
    perceptual_weight: float = 0.5  # alpha_perc
    mask_weight: float = 1.0  # alpha_mask (BCE of the predicted mask against the landmark mask)
    stage1_expert_weight: float = 0.01  # alpha_expert in stage 1 once validation passes both thresholds below
    stage2_expert_weight: float = 0.1  # alpha_expert in stage 2
    adv_weight: float = 0.01  # alpha_adv in stage 2
    l1_threshold: float = 0.05  # validation masked L1 below which stage 1 switches the expert loss on
    perceptual_threshold: float = 1.0  # validation perceptual loss below which stage 1 switches the expert loss on
    stage1_fraction: float = 0.5  # share of max_steps spent in stage 1 (stage 2 takes the rest)
    anneal_fraction: float = 0.2  # the LR falls linearly to 0 over this last share of each stage
    r1_gamma: float = 10.0  # R1 gradient penalty on real samples
    ref_blur_sigma: float = 1.5  # training references are blurred with a sigma drawn from [0, this]
    mask_dilate: int = 11  # pixels of the square dilation kernel of the landmark mask


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator objectives: the Wav2Lip architecture and the reference-attention one."""

    arch: GeneratorArch = "wav2lip"  # the Wav2Lip architecture or the reference-attention one
    refs: RefsConfig = field(default_factory=RefsConfig)  # settings of the "refs" architecture
    sync_weight: float = 0.03  # weight of the expert sync loss once enabled
    sync_threshold: float = 0.75  # validation sync loss below which the sync loss is switched on
    gan: Optional[bool] = None  # adversarial training; None: the architecture's default (ARCH_GAN)
    disc_weight: float = 0.07  # adversarial loss weight
    disc_lr: float = 1e-4  # discriminator learning rate
    disc_betas: Tuple[float, float] = (0.5, 0.999)  # discriminator Adam betas

    @property
    def use_gan(self) -> bool:
        """Whether this run trains a discriminator: `gan` when set, else the architecture's default."""
        return ARCH_GAN[self.arch] if self.gan is None else self.gan


# Adversarial training by default: Wav2Lip's plain generator trains without it (its --gan is the wav2lip_gan
# recipe); the refs generator's stage 2 is defined with its multi-frame discriminator (off: ablation).
ARCH_GAN = {"wav2lip": False, "refs": True}

# The Trainer settings that differ per model, from the papers: Wav2Lip trains its expert at batch 64 and its
# generator at 16, both Adam 1e-4; the refs generator uses Adam 2e-4. TrainConfig's own defaults are the
# expert's; train_defaults(model) is what the CLI and the library entry points start from.
MODEL_TRAIN_DEFAULTS = {
    "expert": {},
    "wav2lip": {"batch_size": 16},
    "refs": {"batch_size": 16, "lr": 2e-4},
}


def train_defaults(model: str, **overrides) -> TrainConfig:
    """The TrainConfig of `model` ("expert", "wav2lip" or "refs") with its per-model defaults, then overrides
    (None values are ignored, so a CLI option left unset keeps the default)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(TrainConfig(), **{**MODEL_TRAIN_DEFAULTS[model], **given})
