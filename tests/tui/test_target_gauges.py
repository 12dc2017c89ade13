"""Per-target capacity gauges: a multi-target pool shows one gauge per target."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.capacity import CapacityGauges


class Gauges(App[None]):
    def compose(self) -> ComposeResult:
        yield CapacityGauges()


async def test_each_target_has_a_gauge_and_a_lost_one_says_so() -> None:
    app = Gauges()
    async with app.run_test(size=(100, 6)) as pilot:
        gauges = app.query_one(CapacityGauges)
        gauges.max_sessions, gauges.active = 40, 7
        assert "Sites" not in gauges.render().plain and gauges.size.height == 2
        gauges.targets = (("east", "lost", 5, 20), ("west", "healthy", 2, 20))
        await pilot.pause()
        lines = gauges.render().plain.splitlines()
        assert gauges.size.height == 3
        assert lines[2].startswith("Sites east ")
        assert "5/20 lost" in lines[2] and "west" in lines[2] and "2/20" in lines[2]
        assert "healthy" not in lines[2], "only trouble is spelled out"
