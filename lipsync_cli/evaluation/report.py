"""The evaluate report on screen (rich tables) or as strict JSON."""

from __future__ import annotations

import json
import math

from lipsync_cli.evaluation.expert_sync import EXPERT_FPS

OFFSET_SIGN = "+ = audio early, as syncnet_python"  # the one sign convention of every offset in the report


def to_json(report: dict) -> str:
    """The report as strict JSON: inf (identical images' PSNR) becomes "inf", NaN becomes null."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        if isinstance(x, float) and not math.isfinite(x):
            return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
        return x

    return json.dumps(clean(report), indent=2, allow_nan=False)


def fmt(x, digits: int = 3) -> str:
    """One table cell: "-" for a figure not measured (None, NaN)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, float):
        return "inf" if math.isinf(x) else f"{x:.{digits}f}"
    return str(x)


def print_report(report: dict) -> None:
    """Rich tables on stdout: whole-video sync, sync per second, and reconstruction if measured."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if report.get("resampled"):
        console.print(f"frames resampled {report['resampled']} for the sync judges")
    if report.get("expert"):
        print_expert(console, report)
    if "syncnet" in report:
        print_lse(console, report["syncnet"])
    if "silence" in report:
        q = report["silence"]
        console.print(f"mouth opening (ours, not a published metric): {fmt(q['mouth_opening_silent'])} in "
                      f"{q['silent_seconds']:.1f} s of silence vs {fmt(q['mouth_opening_speaking'])} in "
                      f"{q['speaking_seconds']:.1f} s of speech (ratio {fmt(q['silent_to_speaking_ratio'])})")
    if "reconstruction" in report:
        rec = Table(title=f"reconstruction against {report['reconstruction']['reference']}")
        rec.add_column("metric")
        rec.add_column("value", justify="right")
        for key, value in report["reconstruction"].items():
            if key != "reference":
                rec.add_row(key.replace("_", " "), fmt(value, 4))
        console.print(rec)


def print_expert(console, report: dict) -> None:
    """Our expert's figures: whole video, then per second."""
    from rich.table import Table

    sync = report["sync"]
    console.print(f"expert: {report['expert']}  (our lip-sync expert: not the paper LSE-D/LSE-C SyncNet)")
    summary = Table(title=f"sync of {report['video']} with {report['audio']} (offset: {OFFSET_SIGN})")
    for key in ("expert_sync_distance", "expert_sync_confidence", "offset_frames", "offset_ms",
                "expert_sync_loss", "windows"):
        summary.add_column(key.replace("_", " "), justify="right")
    summary.add_row(*(fmt(sync[k]) for k in ("expert_sync_distance", "expert_sync_confidence",
                                              "offset_frames", "offset_ms", "expert_sync_loss", "windows")))
    console.print(summary)
    seconds = Table(title=f"per second (offsets in {EXPERT_FPS} fps frames and ms; {OFFSET_SIGN})")
    for key in ("second", "distance", "confidence", "offset frames", "offset ms", "windows"):
        seconds.add_column(key, justify="right")
    for row in report["per_second"]:
        seconds.add_row(*(fmt(row[k]) for k in ("second", "expert_sync_distance", "expert_sync_confidence",
                                                 "offset_frames", "offset_ms", "windows")))
    console.print(seconds)


def print_lse(console, lse: dict) -> None:
    """The papers' figures (original SyncNet): whole span, then per second."""
    from rich.table import Table

    if lse.get("weights") is None:  # skipped: on purpose, or said once by the warning on stderr
        return
    steps = f"face crop {lse['face_crop']}, JPEG round trip {'on' if lse['jpeg'] else 'off'}"
    console.print(f"SyncNet: {lse['weights']}  (the papers' LSE-D/LSE-C; {steps})")
    table = Table(title=f"LSE (frames {lse['first_frame']}..{lse['first_frame'] + lse['frames'] - 1} at 25 fps; "
                        f"offsets in frames and ms; {OFFSET_SIGN})")
    for key in ("LSE-D", "LSE-C", "AV offset frames", "AV offset ms", "windows"):
        table.add_column(key, justify="right")
    table.add_row(*(fmt(lse[k]) for k in ("lse_d", "lse_c", "av_offset_frames", "av_offset_ms", "windows")))
    console.print(table)
    seconds = Table(title="LSE per second (confidence = LSE-C of the windows starting in that second)")
    for key in ("second", "LSE-C", "LSE-D", "AV offset frames", "windows"):
        seconds.add_column(key, justify="right")
    for row in lse["per_second"]:
        seconds.add_row(*(fmt(row[k]) for k in ("second", "lse_c", "lse_d", "av_offset_frames", "windows")))
    console.print(seconds)
