"""`lipsync evaluate`: how well a video's lips follow its speech, and (with a reference) image quality.

    evaluate.py                   the chain for one video: judges → face track → expert sync → LSE → silence
                                  → reconstruction → report (measure()), and evaluate() for the CLI
    many.py                       a folder or list of videos: each one's report and the per-video mean
    report.py                     the report as rich tables or strict JSON
    expert_sync.py                sync scored by OUR lip-sync expert (models/lipsync_expert.py):
                                  expert_sync_distance / expert_sync_confidence, never called LSE
    lse.py                        LSE-D / LSE-C, the papers' scores: upstream's input preparation (25 fps,
                                  face crop, JPEG round trip) from any video; the figures come from
    upstream_syncnet.py           the original SyncNet's arithmetic (syncnet_python's evaluate()), with
    upstream_syncnet_network.py   its network (loads the public syncnet_v2.model unchanged) and
    lse_crop.py                   its face crop (run_pipeline.py's crop_video)
    reconstruction.py             PSNR, SSIM, LMD, sharpness against a ground-truth video
    metrics.py                    the pure metric functions the two above share
    silence.py                    OUR measure of the mouth staying closed through pauses

LSE-D / LSE-C are computed in lse.py (input) and upstream_syncnet.py (score); importing this package imports
nothing (the modules import torch inside the functions that need it).
"""
