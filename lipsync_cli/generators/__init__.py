"""Generator families behind one interface: base.Generator, chosen by registry.load_generator.

    base.py        the Generator interface (hooks with defaults, batching, OOM back-off); imports no family
    registry.py    `--model` value → family module (imported lazily), checkpoint architecture → family
    wav2lip/       Wav2Lip (96 px): network.py, generator.py
    refs/          ours, reference attention (96 px): network.py, kmeans_references.py (its reference
                   choice, also used by training), generator.py
    musetalk/      MuseTalk 1.5 (256 px): files.py, whisper_audio.py, crop_rule.py, reference_plan.py,
                   generator.py
    latentsync/    LatentSync 1.6 / 1.5 (512 / 256 px): files.py, unet.py, audio.py, align.py, sampler.py,
                   deepcache.py, paste.py, generator.py

Adding a family: a package `generators/<name>/` whose `generator.py` subclasses base.Generator (implement
`_run`, override the hooks that differ: audio_windows, face_track, crop/crop_at, paste_back, reference_plan,
set_references)
and defines `claims()`, `load()` and/or `from_checkpoint()` (see registry.py); one line in
registry.FAMILIES; its weights in weights.toml; its conformance tests. pipeline, batch, Ray and the CLI
do not change. Only a family's own package may branch on its architecture name.
"""
