"""lipsync-cli: lip-sync dubbing of talking-head videos."""

__version__ = "0.1.0"
