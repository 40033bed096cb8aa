"""Schedules as pure functions of the step (and of validation results), so that a resumed run,
which restores only the step and a few flags, follows exactly the schedule of an unbroken run."""

from __future__ import annotations


def due(step: int, every: int) -> bool:
    """True on every `every`-th step (step counts from 1 after the first update)."""
    return every > 0 and step % every == 0


def constant_lr(step: int, max_steps: int) -> float:
    """LR multiplier 1.0 throughout: the Wav2Lip paper trains both networks at a fixed Adam LR."""
    return 1.0


def linear_anneal(step: int, start: int, end: int) -> float:
    """LR multiplier 1.0 until `start`, then falling linearly to 0 at `end` (for tasks that anneal)."""
    if step <= start or end <= start:
        return 1.0 if step <= start else 0.0
    return max(0.0, 1.0 - (step - start) / (end - start))


def sync_loss_enabled(enabled: bool, val_sync_loss: float, threshold: float) -> bool:
    """Wav2Lip's switch: the expert's sync loss joins the generator objective once the validation
    sync loss falls below `threshold`, and then stays on (a latch, so it cannot flap)."""
    return enabled or val_sync_loss < threshold


def generator_weights(sync_on: bool, sync_weight: float, gan: bool, disc_weight: float) -> dict[str, float]:
    """Weights of the generator's losses: sync and adversarial take their share of a total of 1,
    L1 the rest (Wav2Lip's convex combination), so turning the sync loss on does not inflate the LR."""
    sync = sync_weight if sync_on else 0.0
    adv = disc_weight if gan else 0.0
    return {"l1": 1.0 - sync - adv, "sync": sync, "adv": adv}
