"""LSE-D / LSE-C of a video file: upstream's input preparation, then lipsync_cli.evaluation.upstream_syncnet.score.

syncnet_python scores 224x224 face crops at 25 fps read back from default-quality JPEGs, against int16
16 kHz audio. This module makes that input from any video:

- face_crop "none": the video is already a face crop (Wav2Lip's LRS2 protocol, the SyncNet demo clip):
  its frames go through upstream's exact ffmpeg JPEG step (resampled to 25 fps when the video is not
  25 fps CFR; resized to 224 when it is not 224x224, as Wav2Lip's copy of evaluate() does);
- a face track (our detectors and tracker at 25 fps, raw boxes): cropped with upstream's crop rule
  (evaluation/lse_crop.py), then optionally the same JPEG round trip.

Upstream's pipeline also re-encodes the video (MPEG-4 at qscale 2, then XVID) before evaluate() reads it;
those intermediate lossy steps are not reproduced, the JPEG step of evaluate() itself is (jpeg=True).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from typing import ContextManager, Optional

import numpy as np

from lipsync_cli import media
from lipsync_cli.errors import InputError
from lipsync_cli.evaluation import lse_crop, upstream_syncnet
from lipsync_cli.media import upstream

MAX_GAP = 25  # frames a face may be missed inside one track (upstream's num_failed_det); boxes interpolated


def measure(video: Path, audio: Optional[Path], model, track=None, jpeg: bool = True,
            batch_size: int = upstream_syncnet.BATCH) -> dict:
    """The SyncNet part of the evaluate report for one video and one face track.

    track: lipsync_cli.faces.track.FaceTrack at 25 fps with RAW boxes (no padding or smoothing: the crop
    rule smooths), or None when the video is already a face crop. The scored span is the track's longest
    stretch without a gap above MAX_GAP frames; its audio is cut to start with it.
    """
    pcm = upstream.audio_int16(audio or video)
    if track is None:
        first, frames = 0, whole_frames(video, jpeg)
    else:
        first, stop, boxes = track_span(track, video)
        frames = face_crops(video, first, stop, boxes, jpeg)
        pcm = pcm[first * upstream_syncnet.SAMPLES_PER_FRAME:]
    with frames as crops:  # streamed: scored as they are made (or read back from their JPEG files)
        result = upstream_syncnet.score(crops, pcm, model, batch_size)
    return report(result, first, result["frames"], jpeg, track is None)


def report(result: dict, first: int, n_frames: int, jpeg: bool, whole: bool) -> dict:
    """upstream_syncnet.score's result as plain JSON-ready numbers."""
    return {
        "lse_d": result["lse_d"], "lse_c": result["lse_c"], "av_offset_frames": result["offset"],
        "av_offset_ms": upstream_syncnet.offset_ms(result["offset"]), "face_crop": "none" if whole else "auto",
        "jpeg": jpeg, "first_frame": first, "frames": n_frames, "windows": result["windows"],
        "mdist": [float(v) for v in result["mdist"]],
        "framewise_conf": [round(float(v), 4) for v in result["fconfm"]],  # medfilt(9), what upstream prints
        "per_second": upstream_syncnet.per_second(result["dists"], first),
    }


# ---- frames --------------------------------------------------------------------------------------


def whole_frames(video: Path, jpeg: bool) -> ContextManager:
    """A context giving (224, 224, 3) uint8 BGR frames at 25 fps, one at a time: the whole picture of a video that
    is already a face crop (with jpeg, upstream.JpegFrames: read when iterated, its files removed when the context
    ends; without, decoded as they are scored)."""
    info = _video_info(video)
    resample = None if (info.fps == upstream_syncnet.FPS and not info.is_vfr) else upstream_syncnet.FPS
    if jpeg:
        return upstream.open_jpeg_frames(video, fps=resample, size=upstream_syncnet.SIZE)
    import cv2

    size = (upstream_syncnet.SIZE, upstream_syncnet.SIZE)
    return nullcontext(cv2.resize(np.ascontiguousarray(f[..., ::-1]), size)  # RGB -> BGR
                       for f in media.iter_frames(video, info, fps=upstream_syncnet.FPS))


def face_crops(video: Path, first: int, stop: int, boxes: np.ndarray, jpeg: bool) -> ContextManager:
    """A context giving stop - first (224, 224, 3) uint8 BGR crops, one at a time: upstream's crop of frames
    first..stop-1 (25 fps) around `boxes` (stop - first, 4), streamed through the JPEG round trip when jpeg (then
    read back from the JPEG files), else made as they are scored; never all held at once."""
    from itertools import islice

    s, x, y = lse_crop.smoothed_boxes(boxes)
    frames = islice(media.iter_frames(video, _video_info(video), fps=upstream_syncnet.FPS), first, stop)
    crops = (lse_crop.crop_face(np.ascontiguousarray(f[..., ::-1]), s[i], x[i], y[i])  # RGB -> BGR
             for i, f in enumerate(frames))
    if jpeg:
        return upstream.open_jpeg_round_trip(crops, upstream_syncnet.SIZE, upstream_syncnet.SIZE,
                                             upstream_syncnet.FPS)
    return nullcontext(crops)


def _video_info(video: Path):
    info = media.probe(video)
    if not info.has_video or info.is_image:
        raise InputError(f"{video} is not a video; LSE-D/LSE-C need a video of a talking face")
    return info


# ---- the face track ------------------------------------------------------------------------------


def track_span(track, video: Path) -> tuple[int, int, np.ndarray]:
    """(first, stop, boxes (stop - first, 4) float64): the longest run of the track in which the face is
    never missing for more than MAX_GAP frames, with missing boxes linearly interpolated (as upstream's
    tracker does); leading and trailing frames without the face are not scored."""
    found = np.flatnonzero(track.found)
    if len(found) == 0:
        raise InputError(f"no face found in {video}: LSE-D/LSE-C need a visible face (try the other --detector, "
                         f"or --face-crop none if the video is already a face crop)")
    breaks = np.flatnonzero(np.diff(found) > MAX_GAP + 1)
    runs = np.split(found, breaks + 1)
    run = max(runs, key=lambda r: r[-1] - r[0])  # the first of the longest
    first, stop = int(run[0]), int(run[-1]) + 1
    frames = np.arange(first, stop)
    known = np.asarray(track.boxes, np.float64)[run]
    boxes = np.stack([np.interp(frames, run, known[:, j]) for j in range(4)], axis=1)
    return first, stop, boxes
