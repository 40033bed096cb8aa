"""The MuseTalk 1.5 generator family (issue 11): 256 px lip sync by one-step latent inpainting.

MuseTalk (TMElyralab/MuseTalk, code MIT, models usable for any purpose) redraws the masked lower half
of a 256×256 face crop in one UNet step in the Stable Diffusion VAE's latent space, conditioned on
whisper-tiny encoder features and a reference image. The networks are the libraries' own (diffusers'
UNet2DConditionModel and AutoencoderKL, transformers' Whisper encoder and feature extractor); these
modules are the wiring, one per stage, as specified by ../shared/reference/musetalk/README.md:

  files.py           the three parts on disk (a user's models/ folder or our cache) → loaded networks
  whisper_audio.py   speech → whisper hidden states → one (50, 384) context per video frame, by timestamp
  crop_rule.py       68 landmarks → MuseTalk's v1.5 face box; Lanczos crop to 256
  reference_plan.py  `--reference kmeans`: K reference frames and which one each frame uses
  generator.py       crops + contexts → VAE latents → UNet → decoded crops, batched (generators.base.Generator;
                     claims() and load() for the registry)
"""
