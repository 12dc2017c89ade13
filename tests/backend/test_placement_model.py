"""Placement against a reference model (Hypothesis state machine).

The machine drives a real ``MultiRuntime`` over in-memory children (start, stop, a target
lost and back) and a plain model that says, by brute force, which targets may take each
new session; after every step the runtime's bookkeeping must equal the model's.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    rule,
)

from backend.errors import StartError
from backend.models import WorkloadHandle
from backend.placement import TargetView, choose
from backend.runtime.base import WorkloadSpec
from backend.runtime.memory import MemoryRuntime
from backend.runtime.multi import MultiRuntime, Target, TargetState
from backend.templates import Template

NAMES = ("a", "b", "c")
USERS = ("u1", "u2", "u3", "u4")
ZONES = ("east", "west")


def expected_choices(
    targets: dict[str, dict[str, object]],
    placed: dict[str, tuple[str, str]],
    user: str,
    zone: str | None,
) -> set[str]:
    """Every target the rules allow for this start (ties included); empty: none may."""
    used = {n: sum(1 for t, _ in placed.values() if t == n) for n in targets}
    mine = {n: sum(1 for t, u in placed.values() if t == n and u == user) for n in targets}
    eligible = [
        n
        for n, t in targets.items()
        if not t["lost"] and used[n] < int(str(t["capacity"])) and zone in (None, t["zone"])
    ]
    if not eligible:
        return set()
    with_user = [n for n in eligible if mine[n] > 0]
    if with_user:
        top = max(mine[n] for n in with_user)
        eligible = [n for n in with_user if mine[n] == top]

    def score(n: str) -> float:
        return float(str(targets[n]["weight"])) * (int(str(targets[n]["capacity"])) - used[n])

    best = max(score(n) for n in eligible)
    return {n for n in eligible if score(n) == best}


class PlacementMachine(RuleBasedStateMachine):
    sessions = Bundle("sessions")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.model: dict[str, dict[str, object]] = {}
        self.placed: dict[str, tuple[str, str]] = {}
        self.handles: dict[str, WorkloadHandle] = {}
        self.children: dict[str, MemoryRuntime] = {}
        self.count = 0
        self.runtime: MultiRuntime | None = None

    @initialize(
        shape=st.lists(
            st.tuples(
                st.integers(1, 4),
                st.sampled_from([0.5, 1.0, 2.0, 3.0]),
                st.sampled_from(ZONES),
            ),
            min_size=1,
            max_size=3,
        )
    )
    def make_targets(self, shape: list[tuple[int, float, str]]) -> None:
        targets = []
        for name, (capacity, weight, zone) in zip(NAMES, shape, strict=False):
            self.children[name] = MemoryRuntime()
            targets.append(Target(name, self.children[name], capacity, weight, {"zone": zone}))
            self.model[name] = {"capacity": capacity, "weight": weight, "zone": zone, "lost": False}
        self.runtime = MultiRuntime(targets)
        self.runtime.room_wait = 0.0  # a refused start is refused at once here

    @rule(target=sessions, user=st.sampled_from(USERS), zone=st.sampled_from((None, *ZONES)))
    def start(self, user: str, zone: str | None) -> str:
        assert self.runtime is not None
        self.count += 1
        sid = f"{user}-demo-{self.count:08x}"
        spec = WorkloadSpec(
            sid,
            user,
            Template(name="demo", command=["true"]),
            Path("/nonexistent"),
            requires={"zone": zone} if zone else {},
        )
        allowed = expected_choices(self.model, self.placed, user, zone)
        try:
            handle = self.loop.run_until_complete(self.runtime.start(spec, lambda _: None))
        except StartError:
            assert not allowed, f"refused, but {allowed} could take it"
            return ""
        where = handle.extra["target"]
        assert where in allowed, f"placed on {where}, the model allows {allowed}"
        assert min(allowed) == where, "ties go to the first name"
        self.placed[sid] = (where, user)
        self.handles[sid] = handle
        return sid

    @rule(sid=consumes(sessions))
    def stop(self, sid: str) -> None:
        assert self.runtime is not None
        if not sid:
            return
        self.loop.run_until_complete(self.runtime.stop(self.handles.pop(sid), 0.0))
        del self.placed[sid]

    @rule(name=st.sampled_from(NAMES), lost=st.booleans())
    def lose_or_restore(self, name: str, lost: bool) -> None:
        assert self.runtime is not None
        if name not in self.model:
            return
        self.model[name]["lost"] = lost
        self.runtime.targets[name].state = TargetState.LOST if lost else TargetState.HEALTHY

    @invariant()
    def bookkeeping_matches_the_model(self) -> None:
        if self.runtime is None:
            return
        for name, target in self.runtime.targets.items():
            mine = {sid for sid, (t, _) in self.placed.items() if t == name}
            assert set(target.sessions) == mine
            assert set(self.children[name].workloads) == mine
            assert len(target.sessions) <= target.capacity
        lost = sum(int(str(m["capacity"])) for m in self.model.values() if m["lost"])
        total = sum(int(str(m["capacity"])) for m in self.model.values())
        assert self.runtime.available_capacity == total - lost

    def teardown(self) -> None:
        self.loop.close()


PlacementMachine.TestCase.settings = hyp_settings(max_examples=60, stateful_step_count=30)
test_placement_matches_the_model = PlacementMachine.TestCase


def test_choose_is_deterministic_and_prefers_the_users_target() -> None:
    east = TargetView("east", 10, used=1, users={"ada": 1})
    west = TargetView("west", 10)
    assert choose([east, west], "ada") == "east"
    assert choose([east, west], "bob") == "west"
    assert choose([east, TargetView("west", 10, used=1)], "bob") == "east"
    assert choose([TargetView("east", 1, used=1, users={"ada": 1}), west], "ada") == "west"
    assert choose([TargetView("east", 1, available=False)], "ada") is None
