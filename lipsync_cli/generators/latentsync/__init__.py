"""The LatentSync 1.6 / 1.5 generator family (issue 22): 512 / 256 px lip sync by latent diffusion.

LatentSync (ByteDance/LatentSync, code Apache-2.0, UNet weights CreativeML OpenRAIL++-M) redraws the mouth
of an aligned face crop with a UNet conditioned on whisper-tiny features, 16 frames per call, 20 DDIM
steps with classifier-free guidance, then warps the crop back into the frame. The networks are the
libraries' own (diffusers' UNetMotionModel, AutoencoderKL and DDIMScheduler; transformers' Whisper
encoder); these modules are the wiring, one per stage, as ../shared/reference/latentsync/README.md specifies:

  files.py       the checkpoints folder (or the weights.toml entries) → loaded networks, strictly
  unet.py        upstream's UNet config and names → UNetMotionModel, with upstream's GroupNorm statistics
  audio.py       speech → log-mel → whisper states (before the final LayerNorm) → one context per frame
  align.py       68 landmarks → similarity transform to upstream's template → 3:4 crop stretched to R×R
  sampler.py     VAE posterior draws, DDIM with guidance, sliced decode (seeded)
  deepcache.py   `--deepcache`: the whole UNet every third step, upstream's launcher default
  paste.py       the mouth mask, the surrounding pixels, the inverse warp into the frame
  generator.py   windows of 16 frames behind generators.base.Generator; claims() and load() for the registry
"""
