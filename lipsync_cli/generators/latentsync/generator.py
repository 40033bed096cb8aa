"""LatentSync inference behind generators.base.Generator's interface: aligned faces + audio contexts → new faces.

Per clip: whisper contexts at each frame's timestamp, one similarity transform per source frame
(face_track), a CPU generator seeded with cfg.seed and the one initial noise. Per window of up to
16 consecutive frames (a window never spans a faceless frame or a jump in the source frames): VAE
posterior draws of the masked and unmasked faces → DDIM with guidance → decode → the surrounding
pixels pasted over the decode. Per frame: the inverse warp into the full-resolution frame.
Out of memory halves the window (16 → 8 → … → 1); a single frame that does not fit is a one-line error.
A window whose decode is not finite (NaN/Inf: fp16 overflow) is computed again in fp32 (device.finite_or_fp32).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from lipsync_cli.config import LatentSyncConfig
from lipsync_cli.errors import InputError, LipsyncError
from lipsync_cli.generators.latentsync import align, files, paste, sampler, unet
from lipsync_cli.generators.latentsync import audio as ls_audio
from lipsync_cli.device import autocast, empty_cache, finite_or_fp32, is_oom, pick_precision
from lipsync_cli.faces.track import FaceTrack
from lipsync_cli.generators.base import Generator

log = logging.getLogger(__name__)


class OutOfMemory(LipsyncError):
    """Even one frame per UNet call does not fit on the device."""

    exit_code = 4


class LatentSyncModel:
    """What base.Generator reads from `.model`: the arch name, a config, the networks."""

    arch = "latentsync"

    def __init__(self, networks):
        self.networks = networks
        self.config = {"size": networks.resolution}


@dataclass
class LatentSyncGenerator(Generator):
    cfg: LatentSyncConfig = field(default_factory=LatentSyncConfig)
    matrices: Optional[np.ndarray] = None  # (N_src, 2, 3) float32 frame → crop transforms of this clip (NaN: no face)
    rng: Optional[object] = None  # torch.Generator (CPU) of this clip: noise, then posterior draws window by window
    noise: Optional[object] = None  # (1, 4, 1, R/8, R/8) float32: the clip's one initial noise
    mask: Optional[np.ndarray] = None  # (R, R) float64 in [0, 1], 1 = keep

    @property
    def nets(self):
        return self.model.networks

    @property
    def resolution(self) -> int:
        return self.nets.resolution

    # ------------------------------------------------------------ per-clip preparation (pipeline hooks)

    def audio_windows(self, speech: np.ndarray, timestamps: np.ndarray):
        """(n,) float32 16 kHz → (N, 50, 384) float32 whisper contexts, one per frame at its timestamp, cut
        when indexed (audio.FrameContexts)."""
        return ls_audio.contexts(speech, timestamps, self.nets.encoder)

    def face_track(self, track, frame_shape):
        """The clip's transforms from the tracked landmarks; frames without landmarks count as faceless.
        Also starts the clip's random numbers, so each clip's output depends only on its input and the seed."""
        import torch

        has_marks = np.isfinite(track.landmarks).all(axis=(1, 2))
        if track.found.any() and not has_marks.any():
            raise InputError("LatentSync aligns faces by their landmarks and --box gives none: let the detector "
                             "find the face (leave out --box)")
        self.matrices = align.track_matrices(track.landmarks, self.resolution)
        self.rng = torch.Generator().manual_seed(int(self.cfg.seed))
        self.noise = sampler.initial_noise(self.rng, self.resolution // paste.LATENT_SCALE)
        boxes = np.where(has_marks[:, None], track.boxes, np.nan).astype(np.float32)
        return FaceTrack(boxes, track.landmarks)

    def crop_at(self, frame: np.ndarray, track, row: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB → (R, R, 3) uint8 RGB aligned face of source frame `row`."""
        return align.crop(frame, self.matrices[row], self.resolution)

    def paste_back(self, frame: np.ndarray, generated: np.ndarray, mask, track, row: int, weight: float) -> np.ndarray:
        """generated (R, R, 3) float32 in [-1, 1] → the frame with it warped back (weight < 1: partly)."""
        import torch

        face = paste.crop_face(torch.from_numpy(np.ascontiguousarray(generated.transpose(2, 0, 1))), self.resolution)
        out = paste.restore(frame, face, self.matrices[row])
        if weight >= 1:
            return out
        return (frame + weight * (out.astype(np.float32) - frame)).astype(np.uint8)

    # ------------------------------------------------------------ windows

    def __call__(self, contexts: np.ndarray, crops: np.ndarray,
                 sources: Optional[np.ndarray] = None) -> tuple[np.ndarray, None]:
        """contexts (N, 50, 384) float32, crops (N, R, R, 3) uint8 RGB aligned faces, sources (N,) their source
        frames → ((N, R, R, 3) float32 new faces in [-1, 1], None)."""
        sources = np.arange(len(crops)) if sources is None else np.asarray(sources)
        out = []
        for run in runs(sources):
            start = run.start
            while start < run.stop:
                end = min(start + self.batch_size, run.stop)
                state = self.rng.get_state()
                try:
                    out.append(self.window(contexts[start:end], crops[start:end]))
                except RuntimeError as err:
                    if not is_oom(err):
                        raise
                    self.rng.set_state(state)  # the retry draws the same numbers
                    self._halve()
                    continue
                start = end
        return np.concatenate(out), None

    def _halve(self) -> None:
        empty_cache(self.device)
        if self.batch_size == 1:
            raise OutOfMemory(f"out of memory on {self.device} even with one frame per UNet call at "
                              f"{self.resolution} px: use --model latentsync-1.5 (256 px), --precision fp16, or a "
                              "GPU with more memory") from None
        self.batch_size //= 2
        log.warning("out of memory: LatentSync window lowered to %d frames", self.batch_size)

    def window(self, contexts: np.ndarray, crops: np.ndarray) -> np.ndarray:
        """One UNet window of F consecutive frames → (F, R, R, 3) float32 new faces in [-1, 1]."""
        import torch

        n, dev = len(crops), self.device
        h = self.resolution // paste.LATENT_SCALE
        pix = paste.pixels(crops)  # (F, 3, R, R) float32
        masked = paste.masked_pixels(pix, self.mask).float()
        eps_masked = sampler.draw_eps(self.rng, n, h)  # drawn once: an fp32 retry reuses the same numbers
        eps_ref = sampler.draw_eps(self.rng, n, h)

        def forward(precision: str):
            with torch.inference_mode(), autocast(dev, precision):
                lat_masked = self._encode(masked, eps_masked)
                lat_ref = self._encode(pix, eps_ref)
                mask = torch.from_numpy(paste.latent_mask(self.mask)).to(dev)[None, None, None].expand(1, 1, n, h, h)
                cond = sampler.Conditioning(mask, _frames_last(lat_masked), _frames_last(lat_ref),
                                            torch.from_numpy(np.ascontiguousarray(contexts)).to(dev))
                latents = self.noise.to(dev).expand(1, -1, n, -1, -1)
                latents = sampler.denoise(self.nets.unet, sampler.scheduler(self.cfg.steps), latents, cond,
                                          self.cfg.guidance, self.cfg.deepcache)
                return sampler.decode(self.nets.vae, latents, self.cfg.vae_frames)

        # fp16 overflow in the VAE or the UNet: this window again in fp32, never NaN pasted into the frames
        decoded = finite_or_fp32(forward, dev, self.precision, "the LatentSync UNet or VAE")
        with torch.inference_mode():
            faces = paste.surround(decoded, pix.to(dev), self.mask)
        return faces.permute(0, 2, 3, 1).float().cpu().numpy()

    def _encode(self, pixels, eps):
        import torch

        k = self.cfg.vae_frames
        return torch.cat([sampler.posterior_latents(self.nets.vae, pixels[i:i + k].to(self.device), eps[i:i + k])
                          for i in range(0, len(pixels), k)])


def _frames_last(latents):
    """(F, 4, h, w) → (1, 4, F, h, w)."""
    return latents.transpose(0, 1)[None]


def runs(sources: np.ndarray) -> list[range]:
    """Positions of `sources` (source frame per output frame, faceless frames left out) split where the video
    jumps: consecutive frames differ by at most 1 (a ping-pong turn repeats its end frame)."""
    cuts = np.flatnonzero(np.abs(np.diff(sources.astype(np.int64))) > 1) + 1
    edges = [0, *cuts.tolist(), len(sources)]
    return [range(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def claims(name_or_path: str) -> bool:
    """`--model latentsync` / `latentsync-1.5`, a LatentSync checkpoints folder or its latentsync_unet.pt."""
    return files.is_latentsync(name_or_path)


def load(name_or_path: str, device: str, precision: str, batch_size: int,
         cfg: Optional[LatentSyncConfig] = None) -> LatentSyncGenerator:
    cfg = cfg or LatentSyncConfig()
    networks = files.load(files.locate(name_or_path), device=device)
    window = min(batch_size, cfg.window, unet.MAX_FRAMES)
    return LatentSyncGenerator(model=LatentSyncModel(networks), device=device,
                               precision=pick_precision(precision, device), batch_size=window, cfg=cfg,
                               mask=paste.model_mask(networks.mask, networks.resolution))
