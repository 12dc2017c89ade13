"""CPU and memory in the console: the CPU/MEM column, the detail pane and the header gauge.

The pool is the deterministic memory one (``tests.tui.harness``), whose runtime is told
what figures to report; one sampler round takes them, as the background loop would.
"""

from __future__ import annotations

from typing import Any

from tests.tui.harness import Pool, settle
from tui.app import PodwardenApp
from tui.format import size, usage_text


def main_of(app: PodwardenApp) -> Any:
    assert app.main is not None
    return app.main


def shown_keys(app: PodwardenApp) -> list[str]:
    return [c.key for c in main_of(app).table.columns_shown]


async def with_figures(pilot: Any, pool: Pool, scope: str = "host") -> dict[str, str]:
    await settle(pilot)
    ids = await pool.mixed()
    await pool.resources(ids, scope)
    pilot.app.request_sync(full=True)
    await settle(pilot)
    return ids


def test_cells_say_measured_or_requested() -> None:
    live = {"state": "ready", "cpu_percent": 3.2, "memory_bytes": 120 << 20}
    assert usage_text({**live, "resources_source": "measured"}).plain == "3% 120M"
    requested = usage_text({**live, "cpu_percent": 25.0, "resources_source": "requested"})
    assert requested.plain == "r 25% 120M" and "italic" in str(requested.style)
    assert usage_text({**live, "resources_source": None}).plain == "-"
    assert usage_text({**live, "state": "terminated", "resources_source": "measured"}).plain == "-"
    assert [size(n) for n in (0, 999, 4096, 1300 << 20, 32 << 30)] == [
        "0B",
        "999B",
        "4.0K",
        "1.3G",
        "32G",
    ]


class TestResources:
    async def test_the_column_shows_from_100_columns_and_the_detail_pane_always(
        self, pool: Pool
    ) -> None:
        app = pool.app()
        async with app.run_test(size=(120, 40)) as pilot:
            ids = await with_figures(pilot, pool)
            table = main_of(app).table
            assert "res" in shown_keys(app)
            assert table.get_cell(ids["alice"], "res").plain == "3% 120M"
            assert table.get_cell(ids["carol"], "res").plain == "57% 1.3G"
            assert table.get_cell(ids["dave"], "res").plain == "-"  # failed: none
            detail = main_of(app).detail._last.plain
            assert "cpu/mem 3.2% of a core · 120M (measured)" in detail

            await pilot.resize_terminal(99, 30)
            await settle(pilot)
            assert "res" not in shown_keys(app)
            await pilot.resize_terminal(100, 30)
            await settle(pilot)
            assert "res" in shown_keys(app)
            await pilot.resize_terminal(80, 24)
            await settle(pilot)
            assert "res" not in shown_keys(app)  # it would squeeze the session id
            assert "cpu/mem 3.2% of a core" in main_of(app).detail._last.plain

    async def test_the_header_gauge_shows_the_host_at_80_and_120_columns(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(120, 40)) as pilot:
            await with_figures(pilot, pool)
            gauges = main_of(app).gauges
            pool_line = gauges.render().plain.splitlines()[0]
            assert pool_line.rstrip().endswith("Host CPU █░░░░ 23%  MEM ██░░░ 3.2G/8.0G")
            await pilot.resize_terminal(80, 24)
            await settle(pilot)
            pool_line = gauges.render().plain.splitlines()[0]
            assert len(pool_line) <= 78 and pool_line.rstrip().endswith("Host CPU 23% MEM 40%")

    async def test_requests_on_a_cluster_without_metrics_are_marked(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(120, 40)) as pilot:
            ids = await with_figures(pilot, pool, "cluster")
            table = main_of(app).table
            assert table.get_cell(ids["alice"], "res").plain == "r 25% 512M"
            detail = main_of(app).detail._last.plain
            assert "(requested by its pod, not measured)" in detail
            line = main_of(app).gauges.render().plain.splitlines()[0]
            assert line.rstrip().endswith("Cluster requests CPU █░░░░ 1.75/8  MEM █░░░░ 3.5G/32G")

    async def test_no_column_when_the_runtime_cannot_tell(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(pilot)
            await pool.mixed()
            app.request_sync(full=True)
            await settle(pilot)
            assert "res" not in shown_keys(app)  # the memory runtime reports nothing
            assert "CPU" not in main_of(app).gauges.render().plain

    async def test_s_sorts_by_cpu(self, pool: Pool) -> None:
        app = pool.app()
        async with app.run_test(size=(120, 40)) as pilot:
            ids = await with_figures(pilot, pool)
            table = main_of(app).table
            while table.sort_by != "res":
                await pilot.press("s")
            order = [
                table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)
            ]
            assert order == [ids[u] for u in ("dave", "bob", "alice", "carol", "erin")]
