"""Are we online? Offline switches first, then a TCP probe of the host a download would contact.

The probe must answer within NETWORK_CHECK_SECONDS even when DNS hangs, so that an offline run fails in under
2 s with a message naming the file instead of waiting for a download library's own timeouts.
"""

from __future__ import annotations

import os
import threading
from typing import Optional
from urllib.parse import urlparse

from lipsync_cli.weights.env import env_flag
from lipsync_cli.weights.manifest import WeightSpec

NETWORK_CHECK_SECONDS = 1.5  # the whole reachability probe, DNS included: offline must fail in < 2 s


def _download_host(spec: WeightSpec) -> str:
    # HF_ENDPOINT points huggingface_hub at a mirror; probe the host it will really contact
    if spec.repo_id:
        return urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    return urlparse(spec.url).hostname or ""


def _reachable(host: str, port: int = 443) -> bool:
    """Can we open a TCP connection within NETWORK_CHECK_SECONDS? (DNS can hang: probe in a daemon thread.)"""
    import socket

    ok = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=NETWORK_CHECK_SECONDS).close()
            ok.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(NETWORK_CHECK_SECONDS)
    return bool(ok)


def offline_reason(spec: WeightSpec) -> Optional[str]:
    """Why `spec` cannot be downloaded now ("LIPSYNC_OFFLINE=1", "cannot reach huggingface.co"), or None."""
    for var in ("LIPSYNC_OFFLINE", "HF_HUB_OFFLINE"):
        if env_flag(var):
            return f"{var}=1"
    host = _download_host(spec)
    return None if _reachable(host) else f"cannot reach {host}"
