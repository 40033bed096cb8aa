"""Fetch a weights file into the cache (Hugging Face hub or https), verified before it takes its final name.

Offline (by switch or unreachable host) fails before anything is fetched, with a message saying where to get
the file by hand; a non-commercial file's licence is accepted first.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from lipsync_cli.errors import WeightsError
from lipsync_cli.media.atomic import atomic_output
from lipsync_cli.weights.cache import cache_dir
from lipsync_cli.weights.licences import require_licence
from lipsync_cli.weights.manifest import WeightSpec
from lipsync_cli.weights.network import offline_reason
from lipsync_cli.weights.verify import check


def _offline_message(spec: WeightSpec, why: str) -> str:
    return (f"weights {spec.name!r} ({spec.filename}) not found locally and offline ({why}); download it "
            f"elsewhere from {spec.source} and put it in $LIPSYNC_WEIGHTS_DIR, or pass a path")


def download(spec: WeightSpec, accept_licence: bool) -> Path:
    """Fetch into the cache through a temporary file; verify before it takes the final name."""
    reason = offline_reason(spec)
    if reason:
        raise WeightsError(_offline_message(spec, reason))
    require_licence(spec, accept_licence)
    dest = cache_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(dest) as part:  # verified before it takes the final name; removed on any failure
        _fetch_hub(spec, part) if spec.repo_id else _fetch_url(spec, part)
        problem = check(spec, part, downloaded=True)
        if problem:
            raise WeightsError(f"downloaded {spec.filename} from {spec.source} failed verification ({problem}); "
                               "nothing was kept: try again later or fetch it by hand into $LIPSYNC_WEIGHTS_DIR")
    return dest


def _fetch_hub(spec: WeightSpec, part: Path) -> None:
    """hf_hub_download (pinned revision, its own progress bar) into a staging folder, then moved to `part`."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    staging = part.parent / f".staging-{spec.name}-{os.getpid()}"
    try:
        got = hf_hub_download(repo_id=spec.repo_id, filename=spec.repo_file, revision=spec.revision,
                              local_dir=staging)
        shutil.move(got, part)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:  # the hub's own "offline" verdicts
        raise WeightsError(_offline_message(spec, type(err).__name__)) from err
    except Exception as err:
        raise WeightsError(f"download of {spec.filename} from {spec.source} failed ({type(err).__name__}: "
                           f"{err}); try again, or fetch it by hand into $LIPSYNC_WEIGHTS_DIR") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_url(spec: WeightSpec, part: Path) -> None:
    """torch.hub's streaming download (its own temp file and progress bar) into `part`. No hash_prefix: the
    caller verifies size and the full SHA-256 with the same message for every source."""
    from torch.hub import download_url_to_file

    try:
        download_url_to_file(spec.url, str(part), hash_prefix=None, progress=sys.stderr.isatty())
    except OSError as err:  # URLError, HTTPError, timeouts, disk full
        raise WeightsError(f"download of {spec.filename} from {spec.url} failed ({err}); try again, or fetch it "
                           "by hand into $LIPSYNC_WEIGHTS_DIR") from err
