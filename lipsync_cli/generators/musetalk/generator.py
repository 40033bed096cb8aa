"""MuseTalk inference behind generators.base.Generator's interface: crops + audio contexts → generated crops.

One batch: VAE-encode the masked crops (and the references, unless encoded once per clip) → concat
masked ‖ reference latents (8 channels) → one UNet call at timestep 0 with the position-encoded whisper
context → VAE-decode. Precision and the OOM back-off are the shared ones (device.autocast, base.Generator's
batch halving).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from lipsync_cli.config import MuseTalkConfig
from lipsync_cli.device import autocast, finite_or_fp32, pick_precision
from lipsync_cli.faces.track import FaceTrack
from lipsync_cli.generators.base import Generator
from lipsync_cli.generators.musetalk import crop_rule, files, whisper_audio
from lipsync_cli.generators.musetalk.reference_plan import reference_plan

log = logging.getLogger(__name__)

MAX_BATCH = 8  # crops per VAE/UNet call: the 256 px VAE's activations cost ~0.5 GB per crop in fp32 on CPU
# bf16 autocast may replace fp32 only while the generated crops stay this close to fp32's (uint8 levels of 255);
# measured with the reference's tiny networks on its astronaut crops (2-core AMD EPYC with AVX-512-BF16, 2026-12-02)
BF16_MAX_LEVELS, BF16_MEAN_LEVELS = 32, 2.0  # measured: max 22, mean 1.17


class MuseTalkModel:
    """What base.Generator reads from `.model`: the arch name, a config, the networks."""

    arch = "musetalk"

    def __init__(self, networks, cfg: MuseTalkConfig):
        self.networks = networks
        self.config = {"size": crop_rule.SIZE, "n_refs": cfg.n_refs}


@dataclass
class MuseTalkGenerator(Generator):
    cfg: MuseTalkConfig = field(default_factory=MuseTalkConfig)
    ref_latents: Optional[object] = None  # (R, 4, 32, 32) float32 torch: the clip's references, encoded once
    ref_of_source: Optional[np.ndarray] = None  # (N_src,) int64: which reference each source frame uses
    fp32_decode: bool = False  # set once fp16 decoding gave non-finite pixels: decode in fp32 from then on

    @property
    def nets(self):
        return self.model.networks

    # ------------------------------------------------------------ per-clip preparation (pipeline hooks)

    def audio_windows(self, speech: np.ndarray, timestamps: np.ndarray) -> whisper_audio.FrameContexts:
        """(n,) float32 16 kHz → the (N, 50, 384) float32 whisper contexts, one per frame at its timestamp, made
        when a chunk of frames asks for them (`windows[part]`), so memory does not grow with the video."""
        return whisper_audio.FrameContexts(speech, timestamps, self.nets.extractor, self.nets.encoder)

    def face_track(self, track, frame_shape):
        """The tracked face with MuseTalk's v1.5 landmark boxes (tracked box where the rule fails)."""
        boxes = crop_rule.musetalk_boxes(track.landmarks, track.boxes, frame_shape[0], self.cfg.extra_margin)
        return FaceTrack(boxes, track.landmarks)

    def crop(self, frame: np.ndarray, box: np.ndarray) -> np.ndarray:
        return crop_rule.crop(frame, box, self.size)

    def reference_plan(self, track):
        """(picks, assign) for `--reference kmeans` (each source frame uses its cluster's reference), None for
        `same` (each frame is its own reference)."""
        if self.cfg.reference != "kmeans":
            return None

        return reference_plan(track.landmarks, track.boxes, k=self.cfg.n_refs)

    def set_references(self, crops: np.ndarray, assign: Optional[np.ndarray] = None) -> None:
        """crops (R, 256, 256, 3) uint8 RGB, encoded once per clip; assign (N_src,) reference per source frame."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.precision):
            self.ref_latents = torch.cat([self._encode(self._pixels(crops[i:i + self.batch_size]))
                                          for i in range(0, len(crops), self.batch_size)])
        self.ref_of_source = np.zeros(1, dtype=np.int64) if assign is None else np.asarray(assign, dtype=np.int64)

    # ------------------------------------------------------------ one batch

    def _run(self, contexts: np.ndarray, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        """contexts (B, 50, 384) float32, crops (B, 256, 256, 3) uint8 RGB, sources (B,) source frame
        indices → ((B, 256, 256, 3) uint8 RGB, None)."""
        import torch

        def forward(precision: str):
            with torch.inference_mode(), autocast(self.device, precision):
                latents = self.latents(crops, sources)
                return self.unet(latents, torch.from_numpy(np.ascontiguousarray(contexts)).to(self.device))

        # fp16 overflow in the VAE encoder or the UNet: this batch again in fp32, never NaN latents decoded as pixels
        out = finite_or_fp32(forward, self.device, self.precision, "the MuseTalk UNet")
        with torch.inference_mode(), autocast(self.device, self.precision):
            return self.decode(out), None

    def latents(self, crops: np.ndarray, sources: Optional[np.ndarray] = None):
        """(B, 8, 32, 32) float32: masked-crop latents, then the reference's (the crop itself for `same`)."""
        import torch

        full = self._pixels(crops)
        masked = full.clone()
        masked[:, :, full.shape[2] // 2:] = -1.0  # the lower half, zeroed before upstream's normalisation
        if self.ref_latents is not None and sources is not None:
            refs = self.ref_latents[torch.from_numpy(self.ref_of_source[np.asarray(sources) % len(self.ref_of_source)])]
            return torch.cat([self._encode(masked), refs.to(self.device)], dim=1)
        both = self._encode(torch.cat([masked, full]))  # one VAE call for masked and reference halves
        return torch.cat([both[:len(crops)], both[len(crops):]], dim=1)

    def unet(self, latents, contexts):
        """latents (B, 8, 32, 32), contexts (B, 50, 384) whisper chunks → (B, 4, 32, 32) float32."""
        import torch

        table = whisper_audio.positional_encoding(contexts.shape[1], contexts.shape[2]).to(contexts.device)
        timestep = torch.zeros(1, dtype=torch.long, device=latents.device)  # one step, no noise, no sampler
        return self.nets.unet(latents, timestep, encoder_hidden_states=contexts + table).sample.float()

    def decode(self, latents) -> np.ndarray:
        """(B, 4, 32, 32) latents → (B, 256, 256, 3) uint8 RGB, rounded half to even as upstream."""
        import torch

        image = None
        if not self.fp32_decode:
            image = self._decode(latents)
            if self.precision == "fp16" and not torch.isfinite(image).all():
                log.warning("fp16 VAE decode gave non-finite pixels: decoding in fp32 from now on")
                self.fp32_decode, image = True, None
        if image is None:
            with torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu", enabled=False):
                image = self._decode(latents.float())
        image = (image.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return (image * 255).round().astype(np.uint8)

    def _decode(self, latents):
        return self.nets.vae.decode((1 / self.nets.scaling_factor) * latents).sample

    def _pixels(self, crops: np.ndarray):
        """(B, 256, 256, 3) uint8 RGB → (B, 3, 256, 256) float32 in [-1, 1] on the device."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device).permute(0, 3, 1, 2).float() / 255
        return (x - 0.5) / 0.5

    def _encode(self, pixels):
        """(B, 3, 256, 256) in [-1, 1] → (B, 4, 32, 32) float32 scaled posterior mean (upstream samples,
        unseeded: the mean makes two runs identical)."""
        return self.nets.vae.encode(pixels).latent_dist.mean.float() * self.nets.scaling_factor


def claims(name_or_path: str) -> bool:
    """`--model musetalk` or a MuseTalk models/ folder."""
    return files.is_musetalk(name_or_path)


def load(name_or_path: str, device: str, precision: str, batch_size: int,
         cfg: Optional[MuseTalkConfig] = None) -> MuseTalkGenerator:
    cfg = cfg or MuseTalkConfig()
    networks = files.load(files.locate(name_or_path), device=device)
    return MuseTalkGenerator(model=MuseTalkModel(networks, cfg), device=device,
                             precision=pick_precision(precision, device), batch_size=min(batch_size, MAX_BATCH),
                             cfg=cfg)
