"""Training data: `lipsync preprocess` (preprocess.py, clip.py, sources.py), datasets and the synthetic set."""
