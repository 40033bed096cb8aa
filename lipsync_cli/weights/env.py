"""Yes/no environment switches (LIPSYNC_OFFLINE, HF_HUB_OFFLINE, LIPSYNC_ACCEPT_LICENCES): one reading of "yes"."""

from __future__ import annotations

import os

TRUE_VALUES = ("1", "true", "yes", "on")


def env_flag(var: str) -> bool:
    return os.environ.get(var, "").lower() in TRUE_VALUES
