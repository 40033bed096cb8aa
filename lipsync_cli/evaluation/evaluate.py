"""`lipsync evaluate`: how well a video's lips follow its speech, and (with a reference) image quality.

measure() chains the stages: load the judges, find the face over the frames, score sync with OUR expert
(lipsync_cli/evaluation/expert_sync.py: expert_sync_distance / expert_sync_confidence, never called LSE-D / LSE-C),
then the papers' figures and, with a reference, reconstruction (lipsync_cli/evaluation/reconstruction.py); the report
is printed or written as JSON by lipsync_cli/evaluation/report.py.

Next to the expert's figures, the papers' LSE-D / LSE-C are measured with the original SyncNet exactly as
upstream computes them (evaluation/upstream_syncnet.py, inputs prepared by evaluation/lse.py), on the same
face track. Each part runs on its own when its inputs exist: our expert (default weights lipsync_expert,
non-commercial), LSE (default weights syncnet_v2) and reconstruction (--reference). A default judge whose weights
are not here is skipped with one warning and its figures are null; `--expert none` / `--syncnet none` skip one on
purpose; weights named explicitly must exist (exit 3). Offsets follow upstream syncnet_python's sign everywhere
(positive: the audio is early), in frames at 25 fps and in ms. Frames are resampled to 25 fps (said in the
report when the video's own rate differs).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from lipsync_cli import media, weights
from lipsync_cli.config import FaceConfig, SyncNetConfig
from lipsync_cli.device import pick_device
from lipsync_cli.errors import InputError, UsageError, WeightsError
from lipsync_cli.evaluation import lse, many, upstream_syncnet
from lipsync_cli.evaluation.expert_sync import EXPERT_FPS, embed, lower_halves, per_second, sync_report
from lipsync_cli.evaluation.reconstruction import reconstruction
from lipsync_cli.evaluation.report import print_report, to_json
from lipsync_cli.evaluation.silence import silence_report
from lipsync_cli.faces import get_detector, track as tracking
from lipsync_cli.models import load_checkpoint

log = logging.getLogger(__name__)


SKIP = "none"  # --expert none / --syncnet none: leave that part out on purpose
EXPERT_WEIGHTS = "lipsync_expert"  # the default expert, used when present


def evaluate(video: Path, audio: Optional[Path] = None, reference: Optional[Path] = None,
             expert: Optional[str] = None, detector: str = FaceConfig.detector, as_json: bool = False,
             device: str = "auto", box: Optional[tuple[int, int, int, int]] = None, face: str = FaceConfig.face,
             syncnet: Optional[SyncNetConfig] = None, start: float = 0.0, duration: Optional[float] = None) -> dict:
    """Measure `video` against `audio` (default: its own soundtrack), print the report, return it.

    start / duration: measure only that piece (seconds) of the video, the audio and the reference, cut together.

    reference: ground-truth video of the same frames, adds PSNR/SSIM/LMD/sharpness.
    box: fixed face box x1 y1 x2 y2 in display pixels instead of detection (library use, tests).
    face: which face is scored when several ("largest", "center" or an index), by both judges.
    syncnet: LSE-D / LSE-C settings (weights, face crop, JPEG step); default SyncNetConfig().
    """
    lse_cfg = syncnet or SyncNetConfig()
    if start > 0 or duration is not None:
        if many.is_many(Path(video)):
            raise UsageError("--start/--duration apply to one video, not to a folder or list")
        return _evaluate_piece(video, audio, reference, start, duration,
                               lambda v, a, r: evaluate(v, a, r, expert, detector, as_json, device, box, face, syncnet))
    if many.is_many(Path(video)):  # a test set: each video against its own audio, then the mean
        if audio is not None:
            raise UsageError("--audio applies to one video; a folder or list is measured against each video's own audio")
        report = many.measure_many(many.items(Path(video), Path(reference) if reference else None),
                                   lambda v, ref: measure(v, None, ref, expert, detector, device, box, face, lse_cfg))
        show = many.print_many
    else:
        report = measure(Path(video), Path(audio) if audio else None, Path(reference) if reference else None,
                         expert, detector, device, box, face, lse_cfg)
        show = print_report
    if as_json:
        print(to_json(report))
    else:
        show(report)
    return report


def _evaluate_piece(video, audio, reference, start: float, duration: Optional[float], run) -> dict:
    """evaluate() on the --start/--duration piece of each input, cut into a temporary folder removed after."""
    with tempfile.TemporaryDirectory(prefix="lipsync-piece-") as tmp:
        pieces = [None if p is None else media.cut_piece(Path(p), Path(tmp) / f"{i}-{Path(p).stem}.mkv", start, duration)
                  for i, p in enumerate((video, audio, reference))]
        return run(*pieces)


def measure(video: Path, audio: Optional[Path], reference: Optional[Path], expert: str,
            detector: str, device: str, box=None, face: str = "largest",
            lse_cfg: SyncNetConfig = SyncNetConfig()) -> dict:
    """The whole report as a plain dict (the JSON output)."""
    dev = pick_device(device)
    net, expert_path, expert_skipped = load_expert(expert, dev)
    syncnet_model, syncnet_path, skipped = load_syncnet(lse_cfg.weights, dev)
    if net is None and syncnet_model is None and reference is None:
        raise WeightsError(f"nothing to measure: expert {expert_skipped}; LSE {skipped}; and no --reference "
                           "(get one of the weights, or pass --reference ORIGINAL.mp4 for PSNR/SSIM)")
    sound = audio or video
    wav = media.load_audio(sound)
    faces = _FaceFinder(detector, dev, box, face)
    track, raw_track = faces.tracks(video)
    if not track.found.any():
        raise InputError(f"no face found in {video}: evaluate needs a visible face "
                         f"(try the other --detector, face_alignment or dlib)")
    report = {"video": str(video), "audio": str(sound), "expert": str(expert_path) if net else None,
              "expert_skipped": expert_skipped, "fps": EXPERT_FPS, "resampled": resampled(video),
              "frames": len(track.boxes), **measure_expert(net, video, track, wav, dev)}
    report["silence"] = silence_report(wav, track.landmarks, EXPERT_FPS)
    report["syncnet"] = measure_lse(video, audio, raw_track, lse_cfg, syncnet_model, syncnet_path, skipped)
    report["sync"].update({k: report["syncnet"].get(k) for k in LSE_KEYS})
    if reference is not None:
        ref_track = faces.track(reference)
        report["reconstruction"] = reconstruction(decode(video), decode(reference), str(reference), track, ref_track)
    return report


# ---- inputs: expert, frames, faces ---------------------------------------------------------------


def load_expert(name_or_path: Optional[str], device: str):
    """(expert nn.Module in eval mode on `device`, its checkpoint file, None), or (None, None, why) when it is
    skipped: `none`, or the default weights are not here (one warning). A named expert must exist (exit 3)."""
    if name_or_path == SKIP:
        return None, None, "skipped (--expert none)"
    try:
        path = weights.resolve(name_or_path or EXPERT_WEIGHTS)
    except WeightsError as err:
        if name_or_path is not None:
            raise
        log.warning("our expert's sync figures not measured: %s", err)
        return None, None, str(err)
    return load_checkpoint(path, device=device, expect="expert"), path, None


EXPERT_KEYS = ("expert_sync_distance", "expert_sync_confidence", "offset_frames", "offset_ms", "expert_sync_loss",
               "windows")


def measure_expert(net, video: Path, track, wav: np.ndarray, device: str) -> dict:
    """{"sync": whole-video figures, "per_second": [...]} of our expert; nulls when it is skipped."""
    if net is None:
        return {"sync": {k: None for k in EXPERT_KEYS}, "per_second": []}
    crops = lower_halves(decode(video), track, int(net.config.get("size", 96)))
    video_emb, audio_emb = embed(net, crops, track.found, wav, device)
    return {"sync": sync_report(video_emb, audio_emb), "per_second": per_second(video_emb, audio_emb)}


def resampled(video: Path) -> Optional[str]:
    """'29.97 fps → 25 fps' when the judges see the video at another rate than its own, else None."""
    info = media.probe(video)
    if info.fps == EXPERT_FPS and not info.is_vfr:
        return None
    return f"{'variable' if info.is_vfr else f'{float(info.fps):.3f}'.rstrip('0').rstrip('.')} fps → {EXPERT_FPS} fps"


LSE_KEYS = ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms")  # the headline SyncNet figures, beside the expert's


def load_syncnet(name: Optional[str], device: str):
    """(SyncNet model, its file, None), or (None, None, why) when the default weights are unavailable.
    Weights the user named explicitly are required: their WeightsError (exit 3) propagates."""
    if name == SKIP:
        return None, None, "skipped (--syncnet none)"
    try:
        path = weights.resolve(name or upstream_syncnet.WEIGHTS)
    except WeightsError as err:
        if name is not None:
            raise
        log.warning("LSE-D/LSE-C not measured: %s", err)  # the one warning; the report only says "not measured"
        return None, None, str(err)
    return upstream_syncnet.load(path, device), path, None


def measure_lse(video: Path, audio: Optional[Path], raw_track, cfg: SyncNetConfig, model, path,
                skipped: Optional[str]) -> dict:
    """report["syncnet"]: LSE-D / LSE-C and their details, or why they were not measured."""
    if model is None:
        return {"weights": None, "skipped": skipped, **{k: None for k in LSE_KEYS}}
    track = None if cfg.face_crop == "none" else raw_track
    return {"weights": str(path), **lse.measure(video, audio, model, track, cfg.jpeg, cfg.batch_size)}


def decode(video: Path) -> Iterator[np.ndarray]:
    """Frames of `video` resampled to EXPERT_FPS, (H, W, 3) uint8 RGB, streamed."""
    info = media.probe(video)
    if not info.has_video or info.is_image:
        raise InputError(f"{video} is not a video; evaluate needs a video of a talking face")
    return media.iter_frames(video, info, fps=EXPERT_FPS)


class _FaceFinder:
    """One face detector (loaded once) for every video of a report, or a fixed box."""

    def __init__(self, detector: str, device: str, box=None, face: str = "largest"):
        self.cfg = FaceConfig(detector=detector, box=tuple(box) if box else None, face=face)
        # SyncNet's crop rule smooths the detector's own boxes itself (median of 13), unpadded
        self.raw_cfg = FaceConfig(detector=detector, box=self.cfg.box, face=face, pads=(0, 0, 0, 0), smooth_window=1)
        self.device = device
        self._detector = None

    def tracks(self, video: Path):
        """(the expert's track: smoothed and padded, the raw detector boxes for SyncNet's crop): one detection pass."""
        raw = self.track(video, self.raw_cfg)
        if self.cfg.box is not None:
            return raw, raw
        info = media.probe(video)
        return tracking.finish_track(raw, self.cfg, (info.height, info.width)), raw

    def track(self, video: Path, cfg=None):
        """lipsync_cli.faces.track.FaceTrack of `video` at EXPERT_FPS (boxes and landmarks, NaN: no face)."""
        cfg = cfg or self.cfg
        info = media.probe(video)
        size = (info.height, info.width)
        if cfg.box is not None:
            n = sum(1 for _ in decode(video))  # frame count at EXPERT_FPS, not the file's rate
            return tracking.box_track(cfg.box, n, size, cfg)
        self._detector = self._detector or get_detector(cfg.detector, device=self.device)
        return tracking.detect_track(decode(video), self._detector, cfg, size)
