"""dub(): video → frames + audio → faces → crops → model → blend → encode, streamed in chunks.

Two passes over the video keep memory flat whatever its length: the first decodes and detects faces
(keeping only boxes and landmarks), the second decodes again, generates the mouth chunk by chunk,
blends it into the full-resolution frames and pipes them to the encoder.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np

from lipsync_cli import audio as mel_frontend, faces, frames as framing, media, timing, weights
from lipsync_cli.config import DubConfig
from lipsync_cli.device import pick_device, release_freed_memory
from lipsync_cli.errors import InputError, UsageError
from lipsync_cli.faces import cache as face_cache, track as tracking
from lipsync_cli.generators.registry import load_for
from lipsync_cli.progress import Stages

log = logging.getLogger(__name__)

OUTPUT_CONTAINERS = (".mp4", ".mov", ".mkv")  # containers that carry H.264 + AAC as players expect
SILENCE_PEAK = 1e-4  # audio whose peak stays below this has nothing to lip-sync to


@dataclass
class DubResult:
    output: Path
    frames: int  # frames written
    frames_edited: int  # frames whose mouth was re-generated
    seconds: dict = field(default_factory=dict)  # wall-clock seconds per stage
    detector: str = "box"  # the face backend used ("box": a fixed --box, no detection)
    licence_notice: Optional[str] = None  # the run's licence line: its models not cleared for commercial use, or that all are
    face: str = ""  # which face was dubbed: "face 0 (--face largest), mean box x1 y1 x2 y2"
    fit: str = ""  # how the video was fitted to the audio: "", "looped (pingpong) ...", "trimmed ..."

    def summary(self) -> str:
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        notes = "".join(f"; {note}" for note in (self.face, self.fit) if note)
        return (f"dubbed {self.frames} frames ({self.frames_edited} edited; faces: {self.detector}{notes}) in "
                f"{stages} → {self.output}")


def dub(video: Path, audio: Path, out: Optional[Path] = None, cfg: DubConfig = DubConfig(),
        generator=None, detector=None) -> DubResult:
    """Dub `video` (or a still image) with the speech in `audio`; writes `out` atomically.

    `generator` / `detector` may be passed pre-loaded (batch mode loads them once for all rows).
    """
    video, audio = Path(video), Path(audio)
    check_commercial(cfg)
    out = output_path(video, audio, out, cfg.force)
    info = media.probe(video)
    if not info.has_video:
        raise InputError(f"no video stream in {video} (pass a video or an image of a face)")
    speech, info, audio_start = cut(media.load_audio(audio), info, cfg)
    check_speech(speech, audio)
    fps, plan = frame_plan(info, speech, cfg)
    spool_dir = spool_folder(plan, info, out, cfg)

    with Stages(cfg.quiet) as stages:
        with stages.time("load"):
            generator = generator or _load_generator(cfg)
        log.debug("model %s: %s; device %s, precision %s", cfg.model, describe_model(cfg.model, generator),
                  generator.device, generator.precision)
        with stages.time("audio"):  # per-frame audio input, each at its own timestamp
            mels = generator.audio_windows(speech, timing.frame_times(len(plan), float(fps)))
        track, detector = find_faces(video, info, int(plan.max()) + 1, cfg, detector, stages)
        if len(track.boxes) <= plan.max():  # truncated or damaged video: use the frames that decode
            log.warning("%s: only %d of %d frames decode; using those", video, len(track.boxes), plan.max() + 1)
            plan = framing.source_plan(len(plan), len(track.boxes), cfg.loop)
        face = face_note(track, cfg)
        track = generator.face_track(track, (info.height, info.width))  # the boxes this family crops at
        edit = track_edit_weights(track, cfg)
        if edit.any():
            prepare_references(video, info, track, generator, stages)
        with media.VideoWriter(out, info.width, info.height, fps, audio=audio, crf=cfg.crf, audio_start=audio_start,
                               audio_seconds=len(speech) / mel_rate()) as writer:
            write_frames(writer, video, info, plan, edit, track, mels, generator, stages, cfg, spool_dir)
        result = summarise(out, video, info, plan, edit, face, cfg, detector, stages)
    return result


def cut(speech: np.ndarray, info, cfg: DubConfig) -> tuple[np.ndarray, object, float]:
    """The --start/--duration window: (speech from there, the video's MediaInfo from there, the second of the
    audio file where it starts). The cut is at a video frame boundary, and the audio is cut at that frame's
    time, so picture and sound stay in sync."""
    if cfg.start <= 0 and cfg.duration is None:
        return speech, info, 0.0
    info = media.starting_at(info, cfg.start)
    start = cfg.start if info.is_image else float(info.first_frame / info.fps)
    first = round(start * mel_rate())
    if first >= len(speech):
        raise InputError(f"--start {cfg.start:g} is past the end of the audio ({len(speech) / mel_rate():.2f} s)")
    stop = len(speech) if cfg.duration is None else first + round(cfg.duration * mel_rate())
    return speech[first:stop], info, start


def mel_rate() -> int:
    return mel_frontend.SAMPLE_RATE


def describe_model(model: str, generator) -> str:
    """'<file> (family <name>)' for -v: which file was loaded and as what (nothing is re-hashed)."""
    path = Path(model).expanduser()
    if not path.exists():
        with contextlib.suppress(UsageError):  # a generator passed in by a library caller may name no entry
            path = weights.find_local(weights.entry(weights.expand([model])[0])) or path  # a family's main file
    family = getattr(getattr(generator, "model", None), "arch", None) or type(generator).__name__
    return f"{path} (family {family})"


def frame_plan(info, speech: np.ndarray, cfg: DubConfig) -> tuple[Fraction, np.ndarray]:
    """(output fps, (N_out,) int64 source frame of each output frame): as many frames as the speech lasts."""
    fps = Fraction(cfg.fps).limit_denominator(1001) if info.is_image else info.fps
    n_out = max(1, round(len(speech) / mel_frontend.SAMPLE_RATE * fps))
    return fps, framing.source_plan(n_out, 1 if info.is_image else info.n_frames, cfg.loop)


def prepare_references(video: Path, info, track, generator, stages) -> None:
    """Hand the generator its reference crops for this clip, when its family takes references."""
    refs = generator.reference_plan(track)
    if refs is not None:
        with stages.time("refs"):
            generator.set_references(frame_crops(video, info, track, refs[0], generator.crop), refs[1])


def spool_folder(plan: np.ndarray, info, out: Path, cfg: DubConfig) -> Path:
    """Where a looped video's frames are spooled (--tmp-dir, else the output's folder), checked for space now,
    before any work, so a full disk is one clear error rather than a failure mid-dub."""
    folder = Path(cfg.tmp_dir) if cfg.tmp_dir else out.parent
    if not folder.is_dir():
        raise InputError(f"--tmp-dir {folder} is not a folder (create it first)")
    if not framing.is_monotonic(plan):
        framing.check_spool_space(folder, int(plan.max()) + 1, (info.height, info.width, 3))
    return folder


def write_frames(writer, video: Path, info, plan, edit, track, mels, generator, stages, cfg: DubConfig,
                 spool_dir: Path) -> None:
    """Pass 2: decode the planned source frames in chunks, edit the mouths, encode."""
    shape = (info.height, info.width, 3)
    stages.bar("dub", len(plan))
    with framing.FrameSource(_decode(video, info), int(plan.max()) + 1, shape, framing.is_monotonic(plan),
                             spool_dir) as source:
        for part in framing.chunks(len(plan), chunk_size(cfg.chunk_frames, shape)):
            rows = plan[part]
            with stages.time("decode"):
                frames = source.take(rows)
            with stages.time("audio"):  # the chunk's audio windows, made now (memory flat in length)
                windows = mels[part]
            frames = edit_frames(frames, track, rows, edit[rows], windows, generator, stages)
            with stages.time("encode"):
                for frame in frames:
                    writer.write(frame)
            stages.advance("dub", len(frames))
            # the chunk's frames, crops and activations are freed now: hand their pages back, else the heap's
            # fragments left RSS wandering 1.23-1.26 GB between MuseTalk chunks instead of a flat 1.04 GB
            release_freed_memory()


def summarise(out: Path, video: Path, info, plan, edit, face: str, cfg: DubConfig, detector, stages) -> DubResult:
    """The run's result, its summary line and the licence line of the models it used."""
    edited = int(np.count_nonzero(edit[plan] > 0))
    generator = weights.model_entries(cfg.model)
    own = [] if generator else [str(cfg.model)]  # a checkpoint of the user's own, not a weights.toml entry
    models = [*generator, *(detector.weights if detector else ())]
    result = DubResult(out, len(plan), edited, dict(stages.seconds), detector.name if detector else "box",
                       weights.licence_notice(models, own), face, fit_note(info, plan, cfg))
    log.debug("stage seconds: %s", ", ".join(f"{k} {v:.2f}" for k, v in stages.seconds.items()))
    if edited == 0:
        stages.print(f"warning: no face found in {video}; the video was re-encoded with the new audio unchanged")
    stages.print(result.summary())
    if result.licence_notice:
        stages.print(result.licence_notice)
    return result


def check_commercial(cfg: DubConfig) -> None:
    """With cfg.commercial, refuse to start a run that would use a model not cleared for commercial use (before
    anything is loaded), naming each; the user's own checkpoint is theirs to judge."""
    if not cfg.commercial:
        return
    detector = () if cfg.faces.box is not None else \
        faces.detector_weights(cfg.faces.detector, _detector_device(cfg.device), commercial=True)
    flagged = weights.uncleared([*weights.model_entries(cfg.model), *detector])
    if flagged:
        raise UsageError(f"--commercial: this run would use models not cleared for commercial use: {', '.join(flagged)}"
                         " (a commercial run: --model musetalk or your own checkpoint, --detector auto or mediapipe, "
                         "or a fixed --box)")


def face_note(track, cfg: DubConfig) -> str:
    """Which face was dubbed: its index as --face takes it (when chosen by detection) and its mean box."""
    found = track.found
    if not found.any():
        return ""
    box = " ".join(f"{v:.0f}" for v in track.boxes[found].mean(axis=0))
    if cfg.faces.box is not None:
        return f"face: --box, box {box}"
    index = getattr(track, "face_index", None)
    label = f"face {index}" if index is not None else "face"
    chosen = "" if cfg.faces.face.isdigit() else f" (--face {cfg.faces.face})"
    return f"{label}{chosen}, mean box {box}"


def fit_note(info, plan, cfg: DubConfig) -> str:
    """How the video was fitted to the audio: looped (a shorter video) or trimmed (a longer one)."""
    if info.is_image:
        return ""
    used, have = len(plan), info.n_frames
    fps = float(info.fps)
    window = f" from {info.first_frame / fps:.2f} s" if info.first_frame else ""
    if used > have:
        return f"video{window} looped ({cfg.loop}): {have / fps:.2f} s of video for {used / fps:.2f} s of audio"
    if used < have:
        return f"video{window} trimmed to the audio: {used / fps:.2f} s of {have / fps:.2f} s used"
    return f"video{window}: {used / fps:.2f} s" if window else ""


def chunk_size(frames: int, shape: tuple[int, int, int], budget: int = 256 << 20) -> int:
    """Frames per chunk: cfg.chunk_frames, fewer for huge frames so a chunk stays within ~256 MB."""
    return max(1, min(frames, budget // int(np.prod(shape))))


def output_path(video: Path, audio: Path, out: Optional[Path], force: bool) -> Path:
    """The output file: default `<stem>_dubbed.mp4` next to VIDEO; refuses to clobber inputs or existing files."""
    out = Path(out) if out is not None else video.with_name(f"{video.stem}_dubbed.mp4")
    if out.suffix.lower() not in OUTPUT_CONTAINERS:
        raise UsageError(f"output {out.name}: the dub is H.264 + AAC, written as {', '.join(OUTPUT_CONTAINERS)}; "
                         f"pass e.g. -o {out.with_suffix('.mp4').name}")
    for src in (video, audio):
        if src.exists() and out.exists() and out.resolve() == src.resolve():
            raise UsageError(f"output {out} is also an input; choose another output path")
    if out.is_dir():
        raise UsageError(f"output {out} is a folder; pass a file name such as {out / (video.stem + '_dubbed.mp4')}")
    if out.exists() and not force:
        raise UsageError(f"{out} already exists (pass --force to overwrite)")
    if not out.parent.exists():
        raise InputError(f"output folder {out.parent} does not exist (create it first)")
    return out


def check_speech(speech: np.ndarray, path: Path) -> None:
    if len(speech) == 0:
        raise InputError(f"audio in {path} is empty (zero length); pass a file with speech")
    if float(np.abs(speech).max()) < SILENCE_PEAK:
        raise InputError(f"audio in {path} is silent; pass a file with speech")


def _load_generator(cfg: DubConfig):
    return load_for(cfg)


def _decode(video: Path, info):
    """Source frames, (H, W, 3) uint8 RGB, upright; a still image is one frame."""
    if info.is_image:
        return iter([media.read_image(video)])
    return media.iter_frames(video, info)


def find_faces(video: Path, info, n_used: int, cfg: DubConfig, detector, stages):
    """Pass 1: the tracked face of every used source frame (boxes + landmarks only, never the frames), and the
    detector that found them (None with a fixed --box)."""
    if cfg.faces.box is not None:
        return tracking.box_track(cfg.faces.box, n_used, (info.height, info.width), cfg.faces), None
    with stages.time("load"):
        detector = detector or faces.get_detector(cfg.faces.detector, device=_detector_device(cfg.device),
                                                  commercial=cfg.commercial)
    log.debug("faces: detector %s", detector.name)
    if cfg.face_cache is None:
        return detect_faces(video, info, n_used, cfg, detector, stages), detector
    # Cached tracks cover the whole video, so rows of one video with speech of any length share one detection.
    key = face_cache.track_key(video, detector.name, cfg.faces, span=(cfg.start, cfg.duration))
    track, _ = face_cache.cached_track(Path(cfg.face_cache), key,
                                       lambda: detect_faces(video, info, max(n_used, info.n_frames), cfg, detector,
                                                            stages))
    return tracking.FaceTrack(track.boxes[:n_used], track.landmarks[:n_used]), detector


def detect_faces(video: Path, info, n_used: int, cfg: DubConfig, detector, stages):
    """The tracked face of the first n_used source frames (the "detect" stage: absent when a cached track is used)."""
    stages.bar("detect", n_used)
    frames = _limit(_decode(video, info), n_used)
    with stages.time("detect"):
        start = stages.seconds["detect"]
        track = tracking.detect_track(frames, detector, cfg.faces, (info.height, info.width),
                                      progress=lambda n: stages.advance("detect", n),
                                      fps=None if info.is_image else float(info.fps))
    took = max(stages.seconds["detect"] - start, 1e-9)
    log.debug("faces: %d of %d frames have the face; %.1f frames/s detected", int(track.found.sum()), len(track),
              len(track) / took)
    return track


def _limit(frames, n: int):
    for i, frame in zip(range(n), frames):
        yield frame
    close = getattr(frames, "close", None)
    if close is not None:
        close()


def _detector_device(device: str) -> str:
    return pick_device(device)


def track_edit_weights(track, cfg: DubConfig) -> np.ndarray:
    """(N,) float32 in [0, 1]: how much of the generated mouth each source frame gets (0 = untouched)."""
    return tracking.edit_weights(track, cfg.faces.crossfade_frames)


def frame_crops(video: Path, info, track, picks, crop_fn) -> np.ndarray:
    """crop_fn(frame, box) of the source frames `picks` (one decode up to the last), (R, S, S, 3) uint8 RGB."""
    wanted = set(int(i) for i in picks)
    crops = {}
    for i, frame in zip(range(int(max(picks)) + 1), _decode(video, info)):
        if i in wanted:
            crops[i] = crop_fn(frame, track.boxes[i])
    return np.stack([crops[int(i)] for i in picks])


def edit_frames(frames, track, rows, weights, mels, generator, stages) -> list:
    """Generate the mouth for frames that have a face and paste it back inside a feathered lower-face mask."""
    todo = [j for j, w in enumerate(weights) if w > 0]
    if not todo:
        return frames
    with stages.time("crop"):
        crops = np.stack([generator.crop_at(frames[j], track, rows[j]) for j in todo])
    with stages.time("generate"):
        generated, masks = generator(mels[todo], crops, sources=np.asarray(rows)[todo])
    with stages.time("blend"):
        for n, j in enumerate(todo):
            mask = None if masks is None else masks[n]
            frames[j] = generator.paste_back(frames[j], generated[n], mask, track, rows[j], weights[j])
    return frames
