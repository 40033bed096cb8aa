"""LSE-D and LSE-C: the papers' lip-sync scores, computed with the original SyncNet exactly as
syncnet_python's `SyncNetInstance.evaluate()` computes them.

Not our expert (lipsync_cli/models/lipsync_expert.py, reported as expert_sync_*): this module loads the public
`syncnet_v2.model` (joonson/syncnet_python, MIT) unchanged and reproduces upstream's arithmetic; the
specification, with conformance vectors, is ../shared/reference/syncnet/README.md (§2 is this file).

    load(path)                  syncnet_v2.model -> network in eval mode (strict; weights_only)
    score(frames, audio, model) face crops + speech -> lse_d, lse_c, offset, mdist, framewise conf

Inputs are upstream's, unnormalised on purpose (the network was trained on them): frames (N, 224, 224, 3)
uint8 BGR 0-255 at 25 fps, audio (M,) int16 at 16 kHz. Preparing them from any video (25 fps, face
crop, JPEG round trip) is lipsync_cli/evaluation/lse.py. Importing this module imports neither torch nor scipy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

from lipsync_cli.device import release_freed_memory
from lipsync_cli.errors import InputError
from lipsync_cli.models.checkpoint import read_checkpoint
from lipsync_cli.timing import RecentParts

WEIGHTS = "syncnet_v2"  # the weights.toml entry of the public syncnet_v2.model
SAMPLE_RATE = 16000  # Hz: upstream extracts the audio at this rate
FPS = 25  # video frames per second every SyncNet input assumes
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: min_length counts whole frames of audio
MFCC_HOP = 160  # samples: python_speech_features' default winstep (10 ms)
MFCC_PER_FRAME = SAMPLES_PER_FRAME // MFCC_HOP  # 4 MFCC columns per video frame
MFCC_LENGTH = 400  # samples per MFCC column: python_speech_features' default winlen (25 ms)
PREEMPHASIS = 0.97  # python_speech_features.mfcc's default pre-emphasis coefficient
MFCC_CHUNK = 1000  # MFCC columns (10 s) computed at a time: memory does not grow with the audio's length
WINDOW = 5  # video frames per lip window
MFCC_WINDOW = WINDOW * MFCC_PER_FRAME  # 20 MFCC columns per audio window
VSHIFT = 15  # offsets searched: -15..+15 frames (upstream's default vshift)
SIZE = 224  # the lip trunk only fits 224x224 frames
BATCH = 20  # upstream's batch_size: windows per forward pass (no effect on the result in eval mode)
FRAMEWISE_MEDFILT = 9  # kernel of the median filter upstream applies to the framewise confidence

# the 14 BatchNorm counters that a file saved before torch 0.4.1 cannot contain; they only matter in training
OPTIONAL_KEY_SUFFIX = "num_batches_tracked"


# ---- the weights ---------------------------------------------------------------------------------


def load(path, device: str = "cpu"):
    """A `syncnet_v2.model` file -> lipsync_cli.evaluation.upstream_syncnet_network.SyncNetV2 in eval mode on `device`.

    Upstream copies every tensor of the file into the entry of the same name and silently keeps initial
    values for names the file lacks. We refuse that: every entry must be present, with its shape,
    except the num_batches_tracked counters. InputError (exit 1) for any other file.
    """
    from lipsync_cli.evaluation.upstream_syncnet_network import SyncNetV2

    path = Path(path)
    _check_container(path)
    state = read_checkpoint(path, "cpu")  # weights_only=True; legacy and zip serialisations both load
    net = SyncNetV2()
    _check_state(path, state, net.state_dict())
    net.load_state_dict(state, strict=False)  # strictness enforced above, num_batches_tracked aside
    return net.to(device).eval()


def _check_container(path: Path) -> None:
    """torch files start with a zip header (torch >= 1.6) or a pickle protocol byte (the legacy format);
    anything else would reach the unpickler and be misreported as a file carrying code."""
    if path.is_file():
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head != b"PK" and head[:1] != b"\x80":
            raise InputError(f"{path.name} is not a readable checkpoint (not a torch file): pass the public "
                             "syncnet_v2.model (download or copy it again if it is truncated)")


def _check_state(path: Path, state: dict, own: dict) -> None:
    """One-line InputError unless `state` is a plain {name: tensor} mapping of SyncNetV2's entries."""
    import torch

    if "state_dict" in state or "arch" in state:
        raise InputError(f"{path.name} is a Wav2Lip/lipsync-cli checkpoint, not syncnet_python's syncnet_v2.model: "
                         "pass that file to --syncnet (a lip-sync expert goes to --expert)")
    unknown = [k for k in state if k not in own]
    missing = [k for k in own if k not in state and not k.endswith(OPTIONAL_KEY_SUFFIX)]
    not_tensor = [k for k in state if k in own and not isinstance(state[k], torch.Tensor)]
    wrong = [k for k in state if k in own and k not in not_tensor and tuple(state[k].shape) != tuple(own[k].shape)]
    if unknown or missing or not_tensor or wrong:
        example = (f"{wrong[0]} is {list(state[wrong[0]].shape)}, expected {list(own[wrong[0]].shape)}" if wrong
                   else f"e.g. {(unknown or missing or not_tensor)[0]!r}")
        raise InputError(f"{path.name} is not syncnet_python's syncnet_v2.model ({len(unknown)} unknown, "
                         f"{len(missing)} missing, {len(wrong)} mis-shaped, {len(not_tensor)} non-tensor entries; "
                         f"{example}): pass the public syncnet_v2.model")


# ---- the two embeddings --------------------------------------------------------------------------


class MfccColumns:
    """Upstream's MFCCs of (M,) int16 audio at 16 kHz: python_speech_features.mfcc's defaults fed the raw int16
    values (not scaled to [-1, 1]), (13, T) float64 with T = n_cols = 1 + ceil((M - 400) / 160).

    Made MFCC_CHUNK columns (10 s) at a time when a slice asks for them (`columns[a:b]`, (13, b - a); `columns[:]`
    all of them), keeping only the parts the last slice reached: memory does not grow with the audio's length
    (framing the whole signal at once took ~2 MB of temporary arrays per second of audio, the result 6 MB a minute).

    Equal to one call on the whole signal: a column depends only on its own 400 samples once pre-emphasised, and the
    pre-emphasis only on the sample before. The last part takes the remainder (MFCC_CHUNK to 2 MFCC_CHUNK - 1
    columns): numpy's dot products on a few rows round differently from those on many, and with parts this size the
    result is bit-identical."""

    def __init__(self, audio: np.ndarray):
        self.audio = np.asarray(audio)
        n = len(self.audio)
        self.n_cols = 1 if n <= MFCC_LENGTH else 1 + -(-(n - MFCC_LENGTH) // MFCC_HOP)  # framesig's count
        self.bounds = [*range(0, self.n_cols - MFCC_CHUNK, MFCC_CHUNK), self.n_cols] if self.n_cols > MFCC_CHUNK \
            else [0, self.n_cols]
        self.parts = RecentParts(self._make)  # part index -> (13, its columns) float64

    def __getitem__(self, part: slice) -> np.ndarray:
        first, stop, _ = part.indices(self.n_cols)
        wanted = [k for k, (a, b) in enumerate(zip(self.bounds, self.bounds[1:])) if a < stop and b > first]
        parts = self.parts.reach(wanted)
        if not wanted:
            return np.zeros((13, 0))
        offset = self.bounds[wanted[0]]
        joined = np.concatenate(list(parts.values()), axis=1) if len(wanted) > 1 else parts[wanted[0]]
        return joined[:, first - offset:stop - offset]

    def _make(self, k: int) -> np.ndarray:
        import python_speech_features
        from python_speech_features import sigproc

        first, last = self.bounds[k], self.bounds[k + 1]
        start, stop = MFCC_HOP * first, MFCC_HOP * (last - 1) + MFCC_LENGTH
        # the same pre-emphasis arithmetic as on the whole signal, from the sample before the part
        emphasised = sigproc.preemphasis(self.audio[max(start - 1, 0):stop], PREEMPHASIS)[1 if start else 0:]
        return python_speech_features.mfcc(emphasised, SAMPLE_RATE, preemph=0).T  # the last part zero-padded


def n_windows(n_frames: int, n_samples: int) -> int:
    """Upstream scores min_length - 5 windows, one fewer than the frames would allow (its range stops
    at min_length - 6); min_length counts frames that have both a picture and 640 audio samples."""
    return max(0, min(n_frames, n_samples // SAMPLES_PER_FRAME) - WINDOW)


def embed_batches(frames: Iterable[np.ndarray], audio: np.ndarray, model, sink: Callable,
                  batch_size: int = BATCH) -> int:
    """Hands each batch of windows' embeddings, in order, to sink(lip (B, 1024), aud (B, 1024)) float32 tensors;
    returns how many frames were read. audio (M,) int16; frames (224, 224, 3) uint8 BGR, an array (N, 224, 224,
    3) or any iterable (a stream of crops, media.upstream.JpegFrames), read once, front to back: a batch of
    windows is embedded as soon as its frames are in, so only ~batch_size + 5 frames are ever held and memory
    does not grow with the video (a 224² crop is 150 KB). The batches are those of range(0, W, batch_size)
    whatever the input, so the result does not depend on how the frames arrive."""
    import torch

    device = next(model.parameters()).device
    audio_frames = len(audio) // SAMPLES_PER_FRAME
    # upstream's cct, (13, T) float32, made a batch's columns at a time; audio too short for one window is refused
    # below, after the frames
    coeffs = MfccColumns(audio)
    held, first, start, seen = [], 0, 0, 0  # held: frames first..seen-1; windows before `start` are done

    def run(stop: int) -> None:
        nonlocal held, first, start
        clip = np.stack(held[start - first:stop + WINDOW - 1 - first])  # frames start..stop+3
        lip = model.forward_lip(_lip_batch(clip, 0, stop - start).to(device)).float().cpu()
        # this batch's columns: window v reads columns 4v .. 4v + 19
        cols = torch.from_numpy(coeffs[MFCC_PER_FRAME * start:MFCC_PER_FRAME * (stop - 1) + MFCC_WINDOW]
                                .astype(np.float32))
        cc = torch.stack([cols[:, MFCC_PER_FRAME * w:MFCC_PER_FRAME * w + MFCC_WINDOW] for w in range(stop - start)])
        sink(lip, model.forward_aud(cc.unsqueeze(1).to(device)).float().cpu())  # cc: (B, 1, 13, 20)
        held, first, start = held[stop - first:], stop, stop
        release_freed_memory()  # else frames read between batches fragment the heap: RSS grew ~2.5 MB a second

    with torch.inference_mode():
        for frame in frames:
            held.append(_check_frame(frame))
            seen += 1
            # a full batch is certain once n_windows(seen, len(audio)) reaches its end: upstream scores window v
            # only when frame v + 5 exists (and the audio reaches that far)
            if start + batch_size <= min(seen, audio_frames) - WINDOW:
                run(start + batch_size)
        n_win = n_windows(seen, len(audio))
        if n_win < 1:
            raise InputError(f"SyncNet needs at least {WINDOW + 1} frames ({(WINDOW + 1) / FPS:.2f} s) of video with "
                             f"audio; got {seen} frames and {len(audio) / SAMPLE_RATE:.2f} s of audio")
        while start < n_win:
            run(min(start + batch_size, n_win))
    return seen


def _check_frame(frame: np.ndarray) -> np.ndarray:
    """One (224, 224, 3) uint8 frame, or a one-line InputError naming what came instead."""
    frame = np.asarray(frame)
    if frame.shape != (SIZE, SIZE, 3) or frame.dtype != np.uint8:
        raise InputError(f"SyncNet takes (N, {SIZE}, {SIZE}, 3) uint8 BGR face crops, got frames of shape "
                         f"{frame.shape} {frame.dtype}")
    return frame


def _lip_batch(frames: np.ndarray, start: int, stop: int):
    """(stop - start, 3, 5, 224, 224) float32 raw 0-255 BGR windows; only these frames become float,
    not the whole video as upstream does (a minute of video would be 900 MB)."""
    import torch

    clip = torch.from_numpy(np.ascontiguousarray(frames[start:stop + WINDOW - 1])).float()  # (T, H, W, 3)
    clip = clip.permute(3, 0, 1, 2)  # (3, T, H, W): channels, then time
    return torch.stack([clip[:, v:v + WINDOW] for v in range(stop - start)])


# ---- distances and scores ------------------------------------------------------------------------


def distances(im_feat: np.ndarray, cc_feat: np.ndarray, vshift: int = VSHIFT) -> np.ndarray:
    """(W, 2*vshift+1) float32: d[i, k] = ||im_feat[i] - cc_feat[i + k - vshift] + 1e-6|| (upstream's
    calc_pdist). Audio windows outside 0..W-1 are zero vectors and stay in every average."""
    import torch

    rows = DistanceRows(vshift)
    rows.add(*(torch.from_numpy(np.asarray(f, np.float32)) for f in (im_feat, cc_feat)))
    return rows.finish()


class DistanceRows:
    """Upstream's calc_pdist row by row as the embeddings arrive (add() per batch, then finish()): row i is
    pairwise_distance(im_feat[i] repeated, cc_feat[i - vshift .. i + vshift]) (which adds its eps 1e-6 to every
    component), so only those audio windows and the lip windows still waiting for them are held, never both
    embeddings of the whole video (8 KB a frame: 12 MB per minute). How the windows arrive changes nothing."""

    def __init__(self, vshift: int = VSHIFT):
        self.vshift, self.rows, self.lips, self.auds = vshift, [], [], None  # auds[0] is row lips[0]'s first shift

    def add(self, lip, aud) -> None:
        import torch

        if self.auds is None:  # the zero vectors before audio window 0
            self.auds = aud.new_zeros(self.vshift, aud.shape[1])
        self.lips.extend(lip)
        self.auds = torch.cat([self.auds, aud])
        self._rows_ready()

    def finish(self) -> np.ndarray:
        """(W, 2*vshift+1) float32, as distances()."""
        import torch

        if self.auds is not None:  # the zero vectors after the last audio window
            self.auds = torch.cat([self.auds, self.auds.new_zeros(self.vshift, self.auds.shape[1])])
            self._rows_ready()
        return np.concatenate(self.rows) if self.rows else np.zeros((0, 2 * self.vshift + 1), np.float32)

    def _rows_ready(self) -> None:
        import torch.nn.functional as F

        width, done, ready = 2 * self.vshift + 1, 0, []
        while done < len(self.lips) and done + width <= len(self.auds):
            lip = self.lips[done]
            ready.append(F.pairwise_distance(lip[None].repeat(width, 1), self.auds[done:done + width]).numpy())
            done += 1
        if ready:  # one array per batch: a tensor and an array per row cost ~1 KB a window in objects
            self.rows.append(np.stack(ready))
        self.lips, self.auds = self.lips[done:], self.auds[done:]
        self._pack()

    def _pack(self) -> None:
        """Join the per-batch blocks of rows once there are many (a few objects, whatever the video's length)."""
        if len(self.rows) >= 64:
            self.rows = [np.concatenate(self.rows)]


def summarise(dists: np.ndarray, vshift: int = VSHIFT) -> dict:
    """Upstream's scores from (W, 2*vshift+1) distances.

    lse_d = min over shifts of the mean distance; lse_c = median - min, with torch.median's lower middle;
    offset = vshift - argmin (first index at the minimum): a positive offset means the matching audio comes
    that many frames earlier in the track. Framewise: fdist[i] = d[i, argmin], fconf = median - fdist,
    fconfm = scipy.signal.medfilt(fconf, 9), which zero-pads both ends (what upstream prints).
    """
    import torch
    from scipy import signal

    d = torch.from_numpy(np.asarray(dists, np.float32))
    mdist = torch.mean(d.T.contiguous(), 1)  # upstream: torch.mean(torch.stack(dists, 1), 1)
    minval, minidx = torch.min(mdist, 0)
    median = torch.median(mdist)
    fdist = d[:, int(minidx)].numpy()
    fconf = median.numpy() - fdist
    return {"lse_d": float(minval), "lse_c": float(median - minval), "offset": int(vshift - minidx),
            "minidx": int(minidx), "median": float(median), "mdist": mdist.numpy(), "windows": int(len(d)),
            "fdist": fdist, "fconf": fconf, "fconfm": signal.medfilt(fconf, kernel_size=FRAMEWISE_MEDFILT)}


def score(frames: Iterable[np.ndarray], audio: np.ndarray, model, batch_size: int = BATCH,
          features: bool = False) -> dict:
    """LSE-D / LSE-C of face crops already in upstream's input form.

    frames: (N, 224, 224, 3) uint8 BGR 0-255 at 25 fps, an array or a stream of frames (see embed_batches);
    audio: (M,) int16 at 16 kHz, starting with frame 0. Returns summarise()'s dict (lse_d, lse_c, offset in frames,
    minidx, median, mdist (31,) = the mean distance per shift, fdist/fconf/fconfm per window) plus dists (W, 31)
    and frames (how many frames were read). The distances are computed as the embeddings arrive (DistanceRows):
    memory does not grow with the video. features=True also returns the two embeddings, im_feat and cc_feat
    (W, 1024) each, kept whole (conformance checks)."""
    import torch

    rows, kept = DistanceRows(), ([], [])

    def sink(lip, aud) -> None:
        rows.add(lip, aud)
        if features:
            kept[0].append(lip)
            kept[1].append(aud)

    n_frames = embed_batches(frames, audio, model, sink, batch_size)
    dists = rows.finish()
    result = {**summarise(dists), "dists": dists, "frames": n_frames}
    if features:
        result.update(im_feat=torch.cat(kept[0]).numpy(), cc_feat=torch.cat(kept[1]).numpy())
    return result


def per_second(dists: np.ndarray, first_frame: int = 0) -> list[dict]:
    """The same scores over the windows that start in each second (where sync breaks down): one row per
    second of video, numbered from the video's start (the scored span begins at `first_frame`)."""
    rows = []
    starts = first_frame + np.arange(len(dists))
    for second in range(int(starts[0]) // FPS, int(starts[-1]) // FPS + 1):
        block = dists[starts // FPS == second]
        if len(block):
            s = summarise(block)
            rows.append({"second": second, "lse_d": s["lse_d"], "lse_c": s["lse_c"],
                         "av_offset_frames": s["offset"], "windows": s["windows"]})
    return rows


def offset_ms(frames: Optional[int]) -> Optional[int]:
    """An offset in 25 fps frames as milliseconds (40 ms per frame)."""
    return None if frames is None else int(round(1000 * frames / FPS))
