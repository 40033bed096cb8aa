"""The refs family (ours, 96 px): the Wav2Lip-style generator with attention over K reference crops.

    network.py             the network (RefsGenerator; also trained by `lipsync train generator --arch refs`)
    kmeans_references.py   its reference choice: K frames per clip by KMeans over lip shapes (dubbing and
                           training; MuseTalk's `--reference kmeans` reuses it)
    generator.py           inference behind generators.base.Generator: references encoded once per clip,
                           a predicted blend mask per crop
Its crop rule is the base's square crop of the tracked box.
"""
