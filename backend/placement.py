"""Placement: which target a new session goes to, as a pure function of what each holds.

Kept apart from ``MultiRuntime`` so the rules can be read, and tested against a reference
model, without any runtime:

1. Only a target that is available (not lost), has room (``used < capacity``), carries
   every required label, is allowed by the template, and is not excluded (it just refused
   this very start) may take the session.
2. A user's further sessions go where the user already has one, while that target has
   room (the one holding the most of them; ties as in 3).
3. Otherwise the target with the most weighted free capacity, ``weight * (capacity -
   used)``; ties go to the first name. Under a burst this spreads sessions in proportion
   to the weights, and fills every target to its capacity in the end.

Placement counts a start from the moment it is chosen, so a hundred concurrent creates
see each other's choices.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from backend.errors import InvalidRequest
from backend.templates import Template

__all__ = ["TargetView", "check_labels", "choose", "is_target_fault", "missing_label"]


@dataclass(frozen=True)
class TargetView:
    """What placement needs to know of one target."""

    name: str
    capacity: int
    weight: float = 1.0
    used: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    users: Mapping[str, int] = field(default_factory=dict)
    """Live sessions per user on this target."""
    available: bool = True
    """False while the target is lost: nothing new goes there."""

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.used)

    @property
    def score(self) -> float:
        return self.weight * self.free

    def carries(self, requires: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in requires.items())


def missing_label(targets: Sequence[TargetView], requires: Mapping[str, str]) -> str | None:
    """The first required ``key=value`` that no target carries at all (health and room
    aside); None when every requirement is met by some target."""
    for key, value in sorted(requires.items()):
        if not any(t.labels.get(key) == value for t in targets):
            return f"{key}={value}"
    return None


def check_labels(
    targets: Sequence[TargetView], template: Template, requires: Mapping[str, str]
) -> None:
    """Raise ``InvalidRequest`` (422) naming the first label, of the request
    (``requires.KEY``) or of the template, that no target the template may use carries."""
    allowed = set(template.targets)
    views = [v for v in targets if not allowed or v.name in allowed]
    for source, labels in (("requires", requires), ("template", template.requires)):
        missing = missing_label(views, labels)
        if missing is None:
            continue
        key, value = missing.split("=", 1)
        have = "; ".join(
            f"{v.name}: " + (", ".join(f"{k}={x}" for k, x in sorted(v.labels.items())) or "-")
            for v in views
        )
        if source == "requires":
            raise InvalidRequest(
                f"requires.{key}", f"no target has the label {key}={value}; targets: {have}"
            )
        raise InvalidRequest(
            "template",
            f"no target has the label {key}={value} (required by template "
            f"{template.name!r}); targets: {have}",
        )


def choose(
    targets: Sequence[TargetView],
    user: str,
    *,
    requires: Mapping[str, str] | None = None,
    allowed: Collection[str] = (),
    exclude: Collection[str] = (),
) -> str | None:
    """The name of the target a new session of ``user`` should start on; None when no
    target may take it (all lost, full, lacking a label, or excluded)."""
    wanted = requires or {}
    eligible = [
        t
        for t in targets
        if t.available
        and t.used < t.capacity
        and t.carries(wanted)
        and (not allowed or t.name in allowed)
        and t.name not in exclude
    ]
    if not eligible:
        return None
    mine = [t for t in eligible if t.users.get(user, 0) > 0]
    if mine:
        best = min(mine, key=lambda t: (-t.users.get(user, 0), -t.score, t.name))
        return best.name
    return min(eligible, key=lambda t: (-t.score, t.name)).name


TARGET_FAULTS = (
    "unschedulable",
    "exceeded quota",
    "exceeds quota",
    "forbidden",
    "replicafailure",
    "insufficient",
    "cannot create the objects",
)
"""Words in a start's failure that blame the target (its quota, its nodes, its API), not
the template: such a start is worth one more try on another target."""


def is_target_fault(reason: str) -> bool:
    """True when a start failed because of the target it ran on (see ``TARGET_FAULTS``)."""
    lowered = reason.lower()
    return any(word in lowered for word in TARGET_FAULTS)
