"""Per-frame face boxes for a whole video: detect in batches, choose one face, follow it, smooth it.

Works on a stream: frames are consumed in chunks and dropped; only the per-frame boxes (N, 4) and
landmarks (N, 68, 2) are kept, so memory grows by ~560 bytes per frame whatever the resolution.

The face is chosen once (cfg.face, on the first frame where that choice exists) and then followed by
IoU with its last box: choosing per frame would flip between two people of similar size.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import islice
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from lipsync_cli.config import FaceConfig
from lipsync_cli.errors import UsageError
from lipsync_cli.faces.base import N_LANDMARKS, Face, FaceDetector, box_area, clip_box, iou

DETECT_BATCH = 16  # frames per detector call: enough to fill a GPU, small enough to bound memory


@dataclass
class FaceTrack:
    """The chosen face in every frame, in full-resolution frame pixels."""

    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2, padded, smoothed, clipped; NaN rows: no face
    landmarks: np.ndarray  # (N, 68, 2) float32 x, y; NaN where unknown (no face, or a fixed --box)
    face_index: Optional[int] = None  # the followed face's index as --face N takes it (None: --box or no face)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def found(self) -> np.ndarray:
        """(N,) bool: frames that have a face box."""
        return np.isfinite(self.boxes).all(axis=1)


def detect_track(frames: Iterable[np.ndarray], detector: FaceDetector, cfg: FaceConfig,
                 frame_size: Optional[Tuple[int, int]] = None,
                 progress: Optional[Callable[[int], None]] = None, batch_size: int = DETECT_BATCH) -> FaceTrack:
    """Detect, choose, follow and smooth the face over a stream of frames.

    frames: (H, W, 3) uint8 RGB, consumed chunk by chunk. frame_size: (height, width); the frames'
    own shape takes precedence (it is only needed when the stream is empty). progress(n) is called
    after each chunk with the number of frames it held.
    """
    follower = _Follower(cfg.face, cfg.track_min_iou)
    boxes: List[np.ndarray] = []
    marks: List[np.ndarray] = []
    size = frame_size or (0, 0)
    for chunk in _chunks(frames, batch_size):
        size = chunk[0].shape[:2]
        picked = [follower.follow(faces, size) for faces in detector.detect(chunk, max_side=cfg.detect_max_side)]
        boxes.append(np.stack([_box_row(face) for face in picked]))
        marks.append(np.stack([_landmark_rows(face) for face in picked]))
        if progress is not None:
            progress(len(chunk))
    follower.check_chosen()
    raw = FaceTrack(_concat(boxes, (4,)), _concat(marks, (N_LANDMARKS, 2)), follower.chosen_index)
    return finish_track(raw, cfg, size)


def finish_track(raw: FaceTrack, cfg: FaceConfig, frame_size: Tuple[int, int]) -> FaceTrack:
    """Raw per-frame detections → smoothed (per scene), padded boxes clipped to the (height, width) frame."""
    segments = scene_segments(raw.boxes, cfg.scene_cut_threshold)
    boxes = smooth(raw.boxes, segments, cfg.smooth_window)
    flat = raw.landmarks.reshape(len(raw), N_LANDMARKS * 2)  # x, y of every point smoothed like a box coordinate
    landmarks = smooth(flat, segments, cfg.smooth_window).reshape(raw.landmarks.shape)
    return FaceTrack(pad_boxes(boxes, cfg.pads, frame_size), landmarks.astype(np.float32), raw.face_index)


def box_track(box: Sequence[float], n: int, frame_size: Tuple[int, int], cfg: Optional[FaceConfig] = None) -> FaceTrack:
    """A fixed --box for all n frames, clipped to the (height, width) frame; no landmarks.

    The box is used as the user typed it: cfg.pads apply to detected boxes only (as in Wav2Lip), and
    `cfg` is accepted so callers can pass the same arguments as to detect_track.
    """
    height, width = frame_size
    row = clip_box(np.asarray(box, dtype=np.float32), width, height)
    if row[2] <= row[0] or row[3] <= row[1]:
        raise UsageError(f"--box {' '.join(str(v) for v in box)} is empty inside the {width}x{height} frame; "
                         "pass X1 Y1 X2 Y2 with X1 < X2 and Y1 < Y2 in display pixels")
    return FaceTrack(np.tile(row, (n, 1)), np.full((n, N_LANDMARKS, 2), np.nan, dtype=np.float32))


def edit_weights(track: FaceTrack, crossfade_frames: int) -> np.ndarray:
    """(N,) float32 in [0, 1]: how much of the generated mouth each frame gets.

    0 where there is no face; ramps up over `crossfade_frames` frames next to a faceless stretch so the
    mouth does not pop in or out; 1 elsewhere (the video's own start and end are not stretches).
    """
    found = track.found
    missing = np.flatnonzero(~found)
    if len(missing) == 0 or crossfade_frames <= 0:
        return found.astype(np.float32)
    frames = np.arange(len(found))
    after = np.searchsorted(missing, frames)  # first faceless frame at or after each frame
    next_gap = np.where(after < len(missing), missing[np.minimum(after, len(missing) - 1)] - frames, np.inf)
    prev_gap = np.where(after > 0, frames - missing[np.maximum(after - 1, 0)], np.inf)
    distance = np.minimum(next_gap, prev_gap)  # 0 on faceless frames
    return np.clip(distance / (crossfade_frames + 1), 0.0, 1.0).astype(np.float32)


# ---- choosing and following the face ------------------------------------------------------------


class _Follower:
    """Chooses the face once, then follows it by IoU with its last box.

    A lost face (no detection above min_iou) is re-acquired only while the video has shown at most one
    face at a time: with a single person there is nobody to confuse it with (e.g. after a camera cut),
    with several people a lost track stays lost rather than jumping to someone else.
    """

    def __init__(self, choice: str, min_iou: float):
        self.choice = choice
        self.min_iou = min_iou
        self.last: Optional[np.ndarray] = None
        self.alone = True  # no frame so far had more than one face
        self.most_faces = 0
        self.chosen_index: Optional[int] = None  # the chosen face's left-to-right index where it was chosen

    def follow(self, faces: List[Face], size: Tuple[int, int]) -> Optional[Face]:
        self.alone = self.alone and len(faces) <= 1
        self.most_faces = max(self.most_faces, len(faces))
        if not faces:
            return None
        if self.last is None:
            face = choose_face(faces, self.choice, size)
            if face is not None:
                self.chosen_index = left_to_right(faces).index(next(i for i, f in enumerate(faces) if f is face))
        else:
            face = self._match(faces) or (faces[0] if self.alone else None)
        if face is not None:
            self.last = face.box
        return face

    def _match(self, faces: List[Face]) -> Optional[Face]:
        overlaps = [float(iou(self.last, face.box)) for face in faces]
        best = int(np.argmax(overlaps))
        return faces[best] if overlaps[best] >= self.min_iou else None

    def check_chosen(self) -> None:
        """An index --face that no frame ever had is a usage error, not a silent 'no face'."""
        if self.last is None and self.choice.isdigit() and self.most_faces > 0:
            raise UsageError(f"--face {self.choice}: at most {self.most_faces} face(s) per frame were found "
                             f"(indices 0..{self.most_faces - 1}, left to right); pick one of those")


def left_to_right(faces: List[Face]) -> List[int]:
    """Positions in `faces` ordered by box centre, left to right: index N of this list is --face N."""
    boxes = np.stack([face.box for face in faces])
    return [int(i) for i in np.argsort((boxes[:, 0] + boxes[:, 2]) / 2, kind="stable")]


def choose_face(faces: List[Face], choice: str, size: Tuple[int, int]) -> Optional[Face]:
    """'largest' (box area), 'center' (box centre nearest the frame centre) or 'N' (N-th from the left).
    None when the frame has fewer than N + 1 faces (the choice is made on a later frame)."""
    boxes = np.stack([face.box for face in faces])
    if choice == "largest":
        return faces[int(np.argmax(box_area(boxes)))]
    if choice == "center":
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        frame_centre = np.array([size[1], size[0]], dtype=np.float32) / 2
        return faces[int(np.argmin(np.linalg.norm(centres - frame_centre, axis=1)))]
    if choice.isdigit():
        index = int(choice)
        return faces[left_to_right(faces)[index]] if index < len(faces) else None
    raise UsageError(f"--face must be 'largest', 'center' or a face index, got {choice!r}")


# ---- smoothing and padding ------------------------------------------------------------------------


def scene_segments(boxes: np.ndarray, cut_threshold: float) -> List[Tuple[int, int]]:
    """[start, stop) runs of frames with a face, split where consecutive boxes overlap less than
    cut_threshold (a camera cut or a jump): smoothing across such a boundary would drag the box
    through the wrong place for a few frames."""
    found = np.isfinite(boxes).all(axis=1)
    n = len(boxes)
    starts = np.ones(n, dtype=bool)
    if n > 1:
        starts[1:] = ~found[:-1] | (iou(boxes[:-1], boxes[1:]) < cut_threshold)
    starts &= found
    segments = []
    for start in np.flatnonzero(starts):
        stop = start + 1
        while stop < n and found[stop] and not starts[stop]:
            stop += 1
        segments.append((int(start), int(stop)))
    return segments


def smooth(values: np.ndarray, segments: List[Tuple[int, int]], window: int) -> np.ndarray:
    """Centred moving average of (N, D) rows over `window` frames (odd; an even one acts as window+1),
    within each segment only; the window shrinks at segment edges. NaN entries stay NaN and are
    left out of their neighbours' averages. Rows outside the segments become NaN."""
    out = np.full(values.shape, np.nan, dtype=np.float32)
    half = max(0, window // 2)
    for start, stop in segments:
        part = values[start:stop].astype(np.float64)
        known = np.isfinite(part)
        sums = np.vstack([np.zeros((1, part.shape[1])), np.cumsum(np.where(known, part, 0.0), axis=0)])
        counts = np.vstack([np.zeros((1, part.shape[1])), np.cumsum(known, axis=0)])
        lo = np.maximum(np.arange(len(part)) - half, 0)
        hi = np.minimum(np.arange(len(part)) + half + 1, len(part))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (sums[hi] - sums[lo]) / (counts[hi] - counts[lo])
        out[start:stop] = np.where(known, mean, np.nan)
    return out


def pad_boxes(boxes: np.ndarray, pads: Sequence[int], frame_size: Tuple[int, int]) -> np.ndarray:
    """Grow (N, 4) boxes by pads = (top, bottom, left, right) pixels, then clip to the (height, width) frame."""
    top, bottom, left, right = pads
    grown = boxes + np.array([-left, -top, right, bottom], dtype=np.float32)
    return clip_box(grown, frame_size[1], frame_size[0])


# ---- helpers -------------------------------------------------------------------------------------


def _chunks(frames: Iterable[np.ndarray], size: int) -> Iterator[List[np.ndarray]]:
    it = iter(frames)
    while chunk := list(islice(it, size)):
        yield chunk


def _box_row(face: Optional[Face]) -> np.ndarray:
    return np.full(4, np.nan, np.float32) if face is None else np.asarray(face.box, np.float32)


def _landmark_rows(face: Optional[Face]) -> np.ndarray:
    if face is None or face.landmarks is None:
        return np.full((N_LANDMARKS, 2), np.nan, np.float32)
    return np.asarray(face.landmarks, np.float32)


def _concat(parts: List[np.ndarray], row_shape: Tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0, *row_shape), np.float32)
