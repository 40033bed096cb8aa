"""One 16-frame window through LatentSync: VAE posterior draws → DDIM loop with classifier-free guidance
→ VAE decode. Reference README steps 9–13.

Every random number comes from a CPU torch.Generator the caller seeds once per clip (upstream seeds
its global generator with 1247): the noise first, then per window the masked-image and reference
posterior draws. Drawing on the CPU and moving to the device makes a run give the same output on
any device (upstream's CUDA draws differ from its CPU ones).
"""

from __future__ import annotations

from dataclasses import dataclass

from lipsync_cli.generators.latentsync.deepcache import DeepCacheUNet

LATENT_CHANNELS = 4
SCALE = 0.18215  # the VAE's latent scale (upstream sets it; shift 0)
# configs/scheduler_config.json of upstream, verbatim
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 clip_sample=False, set_alpha_to_one=False, steps_offset=1, timestep_spacing="leading",
                 prediction_type="epsilon")


def scheduler(steps: int):
    """diffusers' DDIMScheduler with upstream's config, set to `steps` (20: 951, 901, …, 1)."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**SCHEDULER)
    sched.set_timesteps(steps)
    return sched


def initial_noise(rng, latent_size: int):
    """(1, 4, 1, h, w) float32: the one draw every frame of the clip starts from (upstream's quirk)."""
    import torch

    return torch.randn((1, LATENT_CHANNELS, 1, latent_size, latent_size), generator=rng, dtype=torch.float32)


def posterior_latents(vae, pixels, eps):
    """(B, 3, R, R) in [-1, 1], eps (B, 4, h, w) standard normal → (B, 4, h, w) float32 scaled posterior
    samples (upstream samples, not the mean)."""
    dist = vae.encode(pixels.to(next(vae.parameters()).dtype)).latent_dist
    return (dist.mean.float() + dist.std.float() * eps.to(dist.mean.device)) * SCALE


def draw_eps(rng, n: int, latent_size: int):
    import torch

    return torch.randn((n, LATENT_CHANNELS, latent_size, latent_size), generator=rng, dtype=torch.float32)


@dataclass
class Conditioning:
    """What the UNet sees besides the noisy latents, for one window of F frames (torch, on the device)."""

    mask: object  # (1, 1, F, h, w) float32: the mouth mask at latent size
    masked: object  # (1, 4, F, h, w) float32: latents of the masked faces
    reference: object  # (1, 4, F, h, w) float32: latents of the unmasked faces (each frame is its own reference)
    context: object  # (F, 50, 384) float32 whisper contexts

    def unet_input(self, latents):
        """(B, 4, F, h, w) latents → (B, 13, F, h, w); B = 2 with guidance (both halves share everything)."""
        import torch

        b = latents.shape[0]
        cond = [t.expand(b, *t.shape[1:]) for t in (self.mask, self.masked, self.reference)]
        return torch.cat([latents, *cond], dim=1)

    def contexts(self, guided: bool):
        """(B·F, 50, 384): the zero-audio half first when guided, batch-major."""
        import torch

        return torch.cat([torch.zeros_like(self.context), self.context]) if guided else self.context


def predict_noise(unet, latents, t, cond: Conditioning, guidance: float, forward=None):
    """The guided noise prediction for (1, 4, F, h, w) latents at timestep t: both halves in one batch.
    `forward(x, t, context)` replaces the plain UNet call (DeepCache)."""
    import torch

    guided = guidance > 1
    x = torch.cat([latents, latents]) if guided else latents
    x = cond.unet_input(x).to(next(unet.parameters()).dtype)
    ctx = cond.contexts(guided).to(x.dtype)
    noise = (forward(x, t, ctx) if forward else unet(x, t, encoder_hidden_states=ctx).sample).float()
    if not guided:
        return noise
    uncond, audio = noise.chunk(2)
    return uncond + guidance * (audio - uncond)


def denoise(unet, sched, latents, cond: Conditioning, guidance: float, deepcache: bool = False):
    """DDIM from `latents` (1, 4, F, h, w) float32 through every timestep of `sched`, eta 0; with `deepcache`
    the UNet runs whole only every third step (deepcache.py)."""
    cache = DeepCacheUNet(unet) if deepcache else None
    try:
        for i, t in enumerate(sched.timesteps):
            forward = (lambda x, t_, ctx, i=i: cache(x, t_, ctx, i)) if cache else None
            noise = predict_noise(unet, latents, t, cond, guidance, forward)
            latents = sched.step(noise, t, latents, eta=0.0).prev_sample
    finally:
        if cache:
            cache.close()
    return latents


def decode(vae, latents, slice_frames: int):
    """(1, 4, F, h, w) → (F, 3, R, R) float32 in about [-1, 1], unclamped; `slice_frames` at a time."""
    import torch

    frames = latents[0].transpose(0, 1) / SCALE  # (F, 4, h, w)
    dtype = next(vae.parameters()).dtype
    return torch.cat([vae.decode(frames[i:i + slice_frames].to(dtype)).sample.float()
                      for i in range(0, len(frames), slice_frames)])
