"""The Wav2Lip family (96 px): network.py is the public generator's network (also trained by `lipsync train
generator --arch wav2lip`), generator.py runs it behind generators.base.Generator. Its crop rule is the
base's square crop of the tracked box; it takes no references (the frame itself is the reference)."""
