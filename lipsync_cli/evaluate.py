"""`lipsync evaluate`: how well a video's lips follow its speech, and (with a reference) image quality.

Sync follows SyncNet's evaluation recipe but with OUR expert, so the numbers are named
expert_sync_distance / expert_sync_confidence, never LSE-D / LSE-C (papers compute those with the
original SyncNet, whose scale differs): the face track gives a lower-half crop per frame, the expert
embeds every 5-frame window and the mel window at each offset of −15…+15 frames, the distance is
averaged over windows per offset, and the report gives the smallest mean distance, the confidence
(median − min over offsets) and the best offset, over the whole video and per second.

Offsets are in frames of EXPERT_FPS video; a positive offset means the audio lags the picture.

Next to these, the papers' LSE-D / LSE-C are measured with the original SyncNet exactly as upstream
computes them (lipsync_cli/syncnet.py, inputs prepared by lipsync_cli/lse.py), on the same face track.
Without SyncNet weights (offline, default --syncnet) the expert figures are still reported and the LSE
figures are null, with a warning: a user checking a dub offline still gets an answer. Weights named
explicitly with --syncnet must exist (exit 3 otherwise).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lipsync_cli.config import FaceConfig, PreprocessConfig, SyncNetConfig
from lipsync_cli.errors import InputError, UsageError, WeightsError
from lipsync_cli.silence import silence_report
from lipsync_cli.timing import EXPERT_FRAMES as WINDOW

log = logging.getLogger(__name__)

# experts are trained on clips resampled to the dataset rate (5 frames ↔ 16 mel frames = 0.2 s at 25 fps),
# so videos are decoded at that rate too, whatever their own
EXPERT_FPS = PreprocessConfig.fps
MAX_OFFSET = 15  # offsets searched: −15…+15 frames (±0.6 s), SyncNet's vshift
BATCH = 64  # windows per expert forward pass


def evaluate(video: Path, audio: Optional[Path] = None, reference: Optional[Path] = None,
             expert: str = "lipsync_expert", detector: str = FaceConfig.detector, as_json: bool = False,
             device: str = "auto", box: Optional[tuple[int, int, int, int]] = None, face: str = FaceConfig.face,
             syncnet: Optional[SyncNetConfig] = None) -> dict:
    """Measure `video` against `audio` (default: its own soundtrack), print the report, return it.

    reference: ground-truth video of the same frames, adds PSNR/SSIM/LMD/sharpness.
    box: fixed face box x1 y1 x2 y2 in display pixels instead of detection (library use, tests).
    face: which face is scored when several ("largest", "center" or an index), by both judges.
    syncnet: LSE-D / LSE-C settings (weights, face crop, JPEG step); default SyncNetConfig().
    """
    from lipsync_cli import evaluate_many as many

    lse_cfg = syncnet or SyncNetConfig()
    if many.is_many(Path(video)):  # a test set: each video against its own audio, then the mean
        if audio is not None:
            raise UsageError("--audio applies to one video; a folder or list is measured against each video's own audio")
        result = many.measure_many(many.items(Path(video), Path(reference) if reference else None),
                                   lambda v, ref: measure(v, None, ref, expert, detector, device, box, face, lse_cfg))
        if as_json:
            print(to_json(result))
        else:
            many.print_many(result)
        return result
    report = measure(Path(video), Path(audio) if audio else None, Path(reference) if reference else None,
                     expert, detector, device, box, face, lse_cfg)
    if as_json:
        print(to_json(report))
    else:
        print_report(report)
    return report


def measure(video: Path, audio: Optional[Path], reference: Optional[Path], expert: str,
            detector: str, device: str, box=None, face: str = "largest",
            lse_cfg: SyncNetConfig = SyncNetConfig()) -> dict:
    """The whole report as a plain dict (the JSON output)."""
    from lipsync_cli import media
    from lipsync_cli.inference import pick_device

    dev = pick_device(device)
    net, expert_path = load_expert(expert, dev)
    syncnet_model, syncnet_path, skipped = load_syncnet(lse_cfg.weights, dev)
    sound = audio or video
    wav = media.load_audio(sound)
    faces = _FaceFinder(detector, dev, box, face)
    track, raw_track = faces.tracks(video)
    if not track.found.any():
        raise InputError(f"no face found in {video}: evaluate needs a visible face "
                         f"(try the other --detector, face_alignment or dlib)")
    crops = lower_halves(decode(video), track, int(net.config.get("size", 96)))
    video_emb, audio_emb = embed(net, crops, track.found, wav, dev)
    report = {"video": str(video), "audio": str(sound), "expert": str(expert_path), "fps": EXPERT_FPS,
              "frames": len(track.boxes), "sync": sync_report(video_emb, audio_emb)}
    report["per_second"] = per_second(video_emb, audio_emb)
    report["silence"] = silence_report(wav, track.landmarks, EXPERT_FPS)
    report["syncnet"] = measure_lse(video, audio, raw_track, lse_cfg, syncnet_model, syncnet_path, skipped)
    report["sync"].update({k: report["syncnet"].get(k) for k in LSE_KEYS})
    if reference is not None:
        report["reconstruction"] = reconstruction(video, reference, track, faces.track(reference))
    return report


# ---- inputs: expert, frames, faces ---------------------------------------------------------------


def load_expert(name_or_path: str, device: str):
    """(expert nn.Module in eval mode on `device`, the checkpoint file it came from)."""
    from lipsync_cli import weights
    from lipsync_cli.models import load_checkpoint

    path = weights.resolve(name_or_path)
    return load_checkpoint(path, device=device, expect="expert"), path


LSE_KEYS = ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms")  # the headline SyncNet figures, beside the expert's


def load_syncnet(weights: Optional[str], device: str):
    """(SyncNet model, its file, None), or (None, None, why) when the default weights are unavailable.
    Weights the user named explicitly are required: their WeightsError (exit 3) propagates."""
    from lipsync_cli import syncnet
    from lipsync_cli import weights as registry

    try:
        path = registry.resolve(weights or syncnet.WEIGHTS)
    except WeightsError as err:
        if weights is not None:
            raise
        return None, None, str(err)
    return syncnet.load(path, device), path, None


def measure_lse(video: Path, audio: Optional[Path], raw_track, cfg: SyncNetConfig, model, path,
                skipped: Optional[str]) -> dict:
    """report["syncnet"]: LSE-D / LSE-C and their details, or why they were not measured."""
    from lipsync_cli import lse

    if model is None:
        log.warning("LSE-D/LSE-C not measured: %s", skipped)
        return {"weights": None, "skipped": skipped, **{k: None for k in LSE_KEYS}}
    track = None if cfg.face_crop == "none" else raw_track
    return {"weights": str(path), **lse.measure(video, audio, model, track, cfg.jpeg, cfg.batch_size)}


def decode(video: Path) -> Iterator[np.ndarray]:
    """Frames of `video` resampled to EXPERT_FPS, (H, W, 3) uint8 RGB, streamed."""
    from lipsync_cli import media

    info = media.probe(video)
    if not info.has_video or info.is_image:
        raise InputError(f"{video} is not a video; evaluate needs a video of a talking face")
    return media.iter_frames(video, info, fps=EXPERT_FPS)


class _FaceFinder:
    """One face detector (loaded once) for every video of a report, or a fixed box."""

    def __init__(self, detector: str, device: str, box=None, face: str = "largest"):
        from lipsync_cli.config import FaceConfig

        self.cfg = FaceConfig(detector=detector, box=tuple(box) if box else None, face=face)
        # SyncNet's crop rule smooths the detector's own boxes itself (median of 13), unpadded
        self.raw_cfg = FaceConfig(detector=detector, box=self.cfg.box, face=face, pads=(0, 0, 0, 0), smooth_window=1)
        self.device = device
        self._detector = None

    def tracks(self, video: Path):
        """(the expert's track: smoothed and padded, the raw detector boxes for SyncNet's crop): one detection pass."""
        from lipsync_cli import media
        from lipsync_cli.faces import track as tracking

        raw = self.track(video, self.raw_cfg)
        if self.cfg.box is not None:
            return raw, raw
        info = media.probe(video)
        return tracking.finish_track(raw, self.cfg, (info.height, info.width)), raw

    def track(self, video: Path, cfg=None):
        """lipsync_cli.faces.track.FaceTrack of `video` at EXPERT_FPS (boxes and landmarks, NaN: no face)."""
        from lipsync_cli import media
        from lipsync_cli.faces import get_detector
        from lipsync_cli.faces import track as tracking

        cfg = cfg or self.cfg
        info = media.probe(video)
        size = (info.height, info.width)
        if cfg.box is not None:
            n = sum(1 for _ in decode(video))  # frame count at EXPERT_FPS, not the file's rate
            return tracking.box_track(cfg.box, n, size, cfg)
        self._detector = self._detector or get_detector(cfg.detector, device=self.device)
        return tracking.detect_track(decode(video), self._detector, cfg, size)


def lower_halves(frames: Iterator[np.ndarray], track, size: int) -> np.ndarray:
    """(N, size/2, size, 3) uint8 RGB: the lower half of each frame's face crop (what the expert sees);
    zeros where there is no face (those windows are dropped later)."""
    from lipsync_cli.faces.crop import crop

    out = np.zeros((len(track.boxes), size // 2, size, 3), np.uint8)
    for i, frame in zip(range(len(out)), frames):
        if np.isfinite(track.boxes[i]).all():
            out[i] = crop(frame, track.boxes[i], size)[size // 2:]
    return out


# ---- the expert's embeddings ---------------------------------------------------------------------


def embed(net, crops: np.ndarray, has_face: np.ndarray, wav: np.ndarray,
          device: str) -> tuple[np.ndarray, np.ndarray]:
    """(video_emb (N-4, D), audio_emb (M, D)) float64, L2-normalised.

    crops (N, S/2, S, 3) uint8 RGB lower halves; has_face (N,) bool.
    video_emb[i] embeds frames i..i+4 (NaN when one of them has no face); audio_emb[j] embeds the mel window starting at frame j's time, for every frame time whose
    full window lies inside the audio, up to MAX_OFFSET frames past the video's end.
    """
    from lipsync_cli import timing
    from lipsync_cli.audio import log_mel

    n_win = len(crops) - WINDOW + 1
    if n_win < 1:
        raise InputError(f"the video has {len(crops)} frames at {EXPERT_FPS} fps; evaluate needs at least {WINDOW}")
    mel = log_mel(wav)  # (80, T) float32
    n_audio = _full_mel_windows(mel.shape[1], n_win + MAX_OFFSET)
    if n_audio < 1:
        raise InputError(f"the audio is shorter than one {WINDOW}-frame window; pass longer speech")
    mels = timing.mel_windows(mel, timing.frame_times(n_audio, EXPERT_FPS))  # (M, 80, 16) float32
    windows = _stack_windows(crops, n_win)  # (N-4, 15, S/2, S) uint8, frame-major then RGB
    video_emb, audio_emb = _run_expert(net, windows, mels, device)
    complete = np.array([has_face[i:i + WINDOW].all() for i in range(n_win)])
    video_emb[~complete] = np.nan
    return video_emb, audio_emb


def _full_mel_windows(n_mel: int, limit: int) -> int:
    """How many frame times (0, 1/fps, …) have a whole mel window inside n_mel mel frames (≤ limit)."""
    from lipsync_cli import timing

    n = 0
    while n < limit and timing.mel_index(n / EXPERT_FPS) + timing.MEL_WINDOW <= n_mel:
        n += 1
    return n


def _stack_windows(crops: np.ndarray, n_win: int) -> np.ndarray:
    """(N, H, W, 3) → (n_win, 3*WINDOW, H, W): frames i..i+4 on channels, as the expert was trained."""
    idx = np.arange(n_win)[:, None] + np.arange(WINDOW)[None, :]
    win = crops[idx]  # (n_win, 5, H, W, 3)
    return win.transpose(0, 1, 4, 2, 3).reshape(n_win, 3 * WINDOW, crops.shape[1], crops.shape[2])


def _run_expert(net, windows: np.ndarray, mels: np.ndarray, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Embed face windows and mel windows in batches. The expert's forward takes both at once, so
    the shorter side of a batch is padded with zeros and the padding's embeddings are discarded."""
    import torch

    n, m = len(windows), len(mels)
    video, audio = [], []
    with torch.inference_mode():
        for start in range(0, max(n, m), BATCH):
            stop = min(start + BATCH, max(n, m))
            faces = _padded(windows[start:stop], stop - start)
            mel = _padded(mels[start:stop], stop - start)
            face_t = torch.from_numpy(faces).to(device).float() / 255.0  # (B, 15, S/2, S) in [0, 1], RGB
            mel_t = torch.from_numpy(mel).to(device).float().unsqueeze(1)  # (B, 1, 80, 16)
            a, v = net(mel_t, face_t)
            video.append(v[: max(0, min(stop, n) - start)].double().cpu().numpy())
            audio.append(a[: max(0, min(stop, m) - start)].double().cpu().numpy())
    return np.concatenate(video), np.concatenate(audio)


def _padded(x: np.ndarray, rows: int) -> np.ndarray:
    if len(x) == rows:
        return x
    pad = np.zeros((rows - len(x),) + x.shape[1:], x.dtype)
    return np.concatenate([x, pad])


# ---- the report ----------------------------------------------------------------------------------


def sync_report(video_emb: np.ndarray, audio_emb: np.ndarray) -> dict:
    """Whole-video sync numbers (SyncNet recipe, our expert) plus the expert's loss at offset 0."""
    from lipsync_cli import metrics

    summary = metrics.sync_summary(metrics.offset_distances(video_emb, audio_emb, MAX_OFFSET), MAX_OFFSET)
    out = _named(summary)
    out["expert_sync_loss"] = metrics.expert_loss(video_emb, audio_emb)
    return out


def per_second(video_emb: np.ndarray, audio_emb: np.ndarray) -> list[dict]:
    """The same numbers for the windows starting in each second of video (where sync breaks)."""
    from lipsync_cli import metrics

    dist = metrics.offset_distances(video_emb, audio_emb, MAX_OFFSET)
    rows = []
    for start in range(0, len(dist), EXPERT_FPS):
        block = metrics.sync_summary(dist[start:start + EXPERT_FPS], MAX_OFFSET)
        rows.append({"second": start // EXPERT_FPS, **_named(block)})
    return rows


def _named(summary: dict) -> dict:
    """metrics.sync_summary's keys → report keys that cannot be mistaken for the papers' LSE-D/LSE-C."""
    frames = summary["offset_frames"]
    return {
        "expert_sync_distance": summary["distance"],
        "expert_sync_confidence": summary["confidence"],
        "offset_frames": frames,
        "offset_ms": None if frames is None else round(1000.0 * frames / EXPERT_FPS),
        "windows": summary["windows"],
    }


def reconstruction(video: Path, reference: Path, track, ref_track) -> dict:
    """Generated `video` against ground-truth `reference`, frame by frame at EXPERT_FPS, inside the
    reference's face box and mouth box (its mouth landmarks, or the lower half of the box without them).

    PSNR is computed from the mean per-frame MSE (inf only when every frame matches exactly);
    SSIM and sharpness are means over frames; LMD is in units of the reference face box.
    """
    from lipsync_cli import metrics

    sums = {k: [] for k in ("mse_mouth", "mse_face", "ssim_mouth", "ssim_face", "sharp", "sharp_ref")}
    for i, (gen, ref) in enumerate(zip(decode(video), decode(reference))):
        if i >= len(ref_track.boxes) or not np.isfinite(ref_track.boxes[i]).all():
            continue
        for key, value in _frame_metrics(gen, ref, ref_track.boxes[i], ref_track.landmarks[i]).items():
            sums[key].append(value)
    if not sums["mse_face"]:
        raise InputError(f"no face found in {reference}; reconstruction metrics need the reference's face")
    mean = {k: float(np.mean(v)) for k, v in sums.items()}
    n = min(len(track.landmarks), len(ref_track.landmarks))
    boxes = ref_track.boxes[:n]
    gen_lm = np.stack([metrics.normalise_landmarks(track.landmarks[i], boxes[i]) for i in range(n)])
    ref_lm = np.stack([metrics.normalise_landmarks(ref_track.landmarks[i], boxes[i]) for i in range(n)])
    return {
        "reference": str(reference), "frames": len(sums["mse_face"]),
        "psnr_mouth": metrics.psnr_from_mse(mean["mse_mouth"]), "psnr_face": metrics.psnr_from_mse(mean["mse_face"]),
        "ssim_mouth": mean["ssim_mouth"], "ssim_face": mean["ssim_face"],
        "m_lmd": metrics.landmark_distance(gen_lm, ref_lm, metrics.MOUTH),
        "f_lmd": metrics.landmark_distance(gen_lm, ref_lm, metrics.FACE),
        "sharpness_mouth": mean["sharp"], "sharpness_mouth_reference": mean["sharp_ref"],
    }


def _frame_metrics(gen: np.ndarray, ref: np.ndarray, box: np.ndarray, landmarks: np.ndarray) -> dict:
    """One frame's metrics inside the face box (images cropped to it) and the mouth box."""
    from lipsync_cli import metrics

    face = metrics.box_mask(box, ref.shape[:2])
    ys, xs = np.nonzero(face.any(axis=1))[0], np.nonzero(face.any(axis=0))[0]
    sl = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))  # SSIM maps only over the face region
    gen_face, ref_face = gen[sl], ref[sl]
    if np.isfinite(landmarks).all():
        mouth_box = metrics.mouth_box(landmarks)
    else:
        mouth_box = np.array([box[0], (box[1] + box[3]) / 2, box[2], box[3]], np.float32)
    mouth = metrics.box_mask(mouth_box, ref.shape[:2])[sl]
    smap = metrics.ssim_map(gen_face, ref_face)
    return {
        "mse_mouth": metrics.mse(gen_face, ref_face, mouth), "mse_face": metrics.mse(gen_face, ref_face),
        "ssim_mouth": float(smap[mouth].mean()), "ssim_face": float(smap.mean()),
        "sharp": metrics.sharpness(gen_face, mouth), "sharp_ref": metrics.sharpness(ref_face, mouth),
    }


# ---- output --------------------------------------------------------------------------------------


def to_json(report: dict) -> str:
    """The report as strict JSON: inf (identical images' PSNR) becomes "inf", NaN becomes null."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return x

    return json.dumps(clean(report), indent=2, allow_nan=False)


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.{digits}f}"
    return str(x)


def print_report(report: dict) -> None:
    """Rich tables on stdout: whole-video sync, sync per second, and reconstruction if measured."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sync = report["sync"]
    console.print(f"expert: {report['expert']}  (our lip-sync expert: not the paper LSE-D/LSE-C SyncNet)")
    summary = Table(title=f"sync of {report['video']} with {report['audio']}")
    for key in ("expert_sync_distance", "expert_sync_confidence", "offset_frames", "offset_ms",
                "expert_sync_loss", "windows"):
        summary.add_column(key.replace("_", " "), justify="right")
    summary.add_row(*(_fmt(sync[k]) for k in ("expert_sync_distance", "expert_sync_confidence",
                                               "offset_frames", "offset_ms", "expert_sync_loss", "windows")))
    console.print(summary)
    seconds = Table(title=f"per second (offsets in {EXPERT_FPS} fps frames; + = audio late)")
    for key in ("second", "distance", "confidence", "offset frames", "offset ms", "windows"):
        seconds.add_column(key, justify="right")
    for row in report["per_second"]:
        seconds.add_row(*(_fmt(row[k]) for k in ("second", "expert_sync_distance", "expert_sync_confidence",
                                                  "offset_frames", "offset_ms", "windows")))
    console.print(seconds)
    if "syncnet" in report:
        from lipsync_cli.lse import print_lse

        print_lse(console, report["syncnet"])
    if "silence" in report:
        q = report["silence"]
        console.print(f"mouth opening (ours, not a published metric): {_fmt(q['mouth_opening_silent'])} in "
                      f"{q['silent_seconds']:.1f} s of silence vs {_fmt(q['mouth_opening_speaking'])} in "
                      f"{q['speaking_seconds']:.1f} s of speech (ratio {_fmt(q['silent_to_speaking_ratio'])})")
    if "reconstruction" in report:
        rec = Table(title=f"reconstruction against {report['reconstruction']['reference']}")
        rec.add_column("metric")
        rec.add_column("value", justify="right")
        for key, value in report["reconstruction"].items():
            if key != "reference":
                rec.add_row(key.replace("_", " "), _fmt(value, 4))
        console.print(rec)

