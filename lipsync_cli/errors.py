"""The few exceptions users see. The CLI maps each class to an exit code (see STYLE.md):
0 ok, 1 user input problem, 2 usage, 3 missing weights, >3 internal."""


class LipsyncError(Exception):
    """A problem we can explain in one line; the message says what went wrong and what to do."""

    exit_code = 1


class InputError(LipsyncError):
    """A bad, missing or unreadable input file (video, audio, checkpoint, dataset)."""

    exit_code = 1


class UsageError(LipsyncError):
    """Options that contradict each other or an output path we refuse to write."""

    exit_code = 2


class WeightsError(LipsyncError):
    """Weights missing, not downloadable (offline) or failing their checksum."""

    exit_code = 3


class InternalError(LipsyncError):
    """A failure of ours or of a tool we call (ffmpeg crashed, disk full)."""

    exit_code = 5
