"""The sessions table: one row per session, keyed by session id and updated in place.

Why a DataTable used this way: rows are added once and then changed cell by cell, only
where the text differs, so the cursor and the scroll position survive every update and
a refresh of a thousand rows costs a thousand dictionary compares, not a rebuild.
Columns have fixed widths (no per-update measuring, which is O(rows) per cell in
Textual) and are declared before any row. As the terminal narrows columns give way
(``tui.columns.LAYOUTS``): below 127 the tunnel drops its host, below 118 the template
goes, below 107 pid/pod and the tunnel's target, below 86 uses (so at 80 the CULL
column fits), then idle, age and cull. When the backend reports resource figures the
CPU/MEM column joins from 100 columns up (``RESOURCE_LAYOUTS``), taking the room of USES
and the tunnel's host and target first.

While the link is down (``stale``) every row is dimmed, no live session claims a state
(``? unknown``) and no tunnel a ✓: what the table last heard may no longer be true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.reactive import reactive
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from tui.columns import (
    CHROME,
    COLUMNS,
    ID_FIT,
    ID_MAX,
    ID_MIN,
    LAYOUTS,
    RESOURCE_LAYOUTS,
    RESOURCES_MIN_WIDTH,
    Column,
    IdCell,
)
from tui.format import stale_cell
from tui.model import DEFAULT_SORT, Filter, PoolView, sort_key

__all__ = ["SessionsTable"]


class SessionsTable(DataTable[Text]):
    """Sessions, one row each; filter, sort and column fit are the app's to set."""

    BINDINGS = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "First", show=False),
        Binding("G", "scroll_bottom", "Last", show=False),
    ]
    DEFAULT_CSS = """
    SessionsTable {
        height: 1fr;
        scrollbar-size-vertical: 1;
    }
    """

    wide: reactive[bool] = reactive(False)
    """Showing the columns that give way first (template and more)."""
    sort_by: reactive[str] = reactive(DEFAULT_SORT[0])
    """The column sorted by (see ``tui.model.SORTS``)."""
    sort_reverse: reactive[bool] = reactive(DEFAULT_SORT[1])
    """Sort descending."""
    stale: reactive[bool] = reactive(False)
    """The link is down: rows dimmed, live states ``? unknown``, tunnels without ✓."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=1, **kwargs)
        self._columns: tuple[Column, ...] = ()
        self._widths: dict[str, int] = {}
        self._cells: dict[str, dict[str, Text]] = {}
        self._fitted_for = -1
        self._resources = False
        self.filter = Filter()
        self._offscreen: set[str] = set()
        self._docs: dict[str, dict[str, Any]] = {}
        self._view: PoolView | None = None
        self._now = 0.0
        self.on_select: Callable[[str | None], None] | None = None
        """Called with the new session id when the cursor changes rows."""

    # ---------------------------------------------------------------- layout

    @property
    def columns_shown(self) -> tuple[Column, ...]:
        """The columns of the current layout, left to right."""
        return self._columns

    def with_resources(self, shown: bool) -> bool:
        """Offer the CPU/MEM column (the backend reports resource figures) or not; True
        when that changed, so the caller fits and rebuilds the table again."""
        if shown == self._resources:
            return False
        self._resources = shown
        self._fitted_for = -1
        return True

    def fit(self, width: int) -> bool:
        """Choose columns for a table ``width`` cells wide; True when they changed."""
        if width == self._fitted_for:
            return False
        self._fitted_for = width
        layouts = RESOURCE_LAYOUTS if self._resources else LAYOUTS
        for keys, tunnel in layouts:
            if "res" in keys and width < RESOURCES_MIN_WIDTH:
                continue
            widths = {k: (tunnel if k == "tunnel" else COLUMNS[k].width) for k in keys}
            widths["id"] = width - CHROME - sum(widths.values()) - 2 * len(keys)
            if widths["id"] >= ID_FIT:
                break
        widths["id"] = max(ID_MIN, min(ID_MAX, widths["id"]))
        cols = tuple(COLUMNS[k] for k in keys)
        if cols == self._columns and widths == self._widths:
            return False
        self._columns, self._widths = cols, widths
        self.wide = "template" in widths
        return True

    def rebuild(self, view: PoolView, now: float) -> None:
        """Declare the columns, then add every matching row (after fit, filter or sort)."""
        self._view, self._now = view, now
        self._offscreen.clear()
        keep = self.selected_id
        self.clear(columns=True)
        self._cells.clear()
        self._docs.clear()
        for col in self._columns:
            self.add_column(self._label(col), width=self._widths[col.key], key=col.key)
        for sid in view.ordered(self.sort_by, self.sort_reverse, self.filter):
            self._add(sid, view.sessions[sid], now)
        self._select(keep)

    def watch_stale(self, stale: bool) -> None:
        if self._view is not None:
            self.rebuild(self._view, self._now)

    def _cell(self, col: Column, session: dict[str, Any], now: float) -> Text:
        cell = col.render(session, now, self._widths[col.key])
        return stale_cell(col.key, session, cell, self._widths[col.key]) if self.stale else cell

    def _label(self, col: Column) -> Text:
        if col.key == self.sort_by:
            return Text(f"{col.label}{'▼' if self.sort_reverse else '▲'}", style="bold")
        return Text(col.label)

    # ---------------------------------------------------------------- rows

    def _cells_for(
        self, session: dict[str, Any], now: float, only_ticking: bool
    ) -> dict[str, Text]:
        # Of the clock-driven cells, the state cell only ticks while a session starts.
        starting = session.get("state") == "starting"
        return {
            c.key: self._cell(c, session, now)
            for c in self._columns
            if not only_ticking or (c.ticking and (starting or c.key != "state"))
        }

    def _changed_cells(
        self, old: dict[str, Any], new: dict[str, Any], now: float
    ) -> dict[str, Text]:
        """Cells of the columns whose source fields differ between two documents."""
        return {
            c.key: self._cell(c, new, now)
            for c in self._columns
            if any(old.get(f) != new.get(f) for f in c.fields)
        }

    def _add(self, sid: str, session: dict[str, Any], now: float) -> None:
        cells = self._cells_for(session, now, False)
        self._cells[sid] = cells
        self._docs[sid] = session
        self.add_row(*(cells[c.key] for c in self._columns), key=sid)

    def _diff(self, sid: str, cells: dict[str, Text], out: list[tuple[str, str, Text]]) -> None:
        """Collect the cells of row ``sid`` whose text or style differ from what is shown."""
        old = self._cells[sid]
        for key, cell in cells.items():
            previous = old[key]
            if previous.plain != cell.plain or previous.style != cell.style:
                old[key] = cell
                out.append((sid, key, cell))

    def _visible_ids(self) -> set[str]:
        """Session ids of the rows on screen now (the header takes one line)."""
        first = int(self.scroll_y)
        last = min(self.row_count, first + max(1, self.size.height))
        return {
            str(self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)
            for row in range(first, last)
        }

    def _write(self, updates: list[tuple[str, str, Text]]) -> None:
        """Put changed cells into the table and repaint just their rows, if on screen.

        ``update_cell`` refreshes the widget on every call, and any change through it
        makes Textual re-render every visible line (its render caches are keyed by a
        table-wide update count): some 30 ms for a screenful of rows, for one changed
        cell. So cells are stored directly (``_data``, what ``update_cell`` sets), and
        a changed row on screen has its own cache entries dropped and its region
        refreshed (``_repaint_rows``); the other lines stay cached. Changed rows off
        screen are remembered and redrawn when scrolled into view (``watch_scroll_y``).
        Falls back to ``update_cell`` / a full redraw should a Textual release rename
        those attributes.
        """
        if not updates:
            return
        data = getattr(self, "_data", None)
        if data is None or not hasattr(self, "_update_count"):
            for sid, key, cell in updates:
                self.update_cell(sid, key, cell)
            return
        for sid, key, cell in updates:
            data[RowKey(sid)][ColumnKey(key)] = cell
        changed = {sid for sid, _, _ in updates}
        visible = changed & self._visible_ids()
        self._offscreen |= changed - visible
        if visible and not self._repaint_rows(visible):
            self._redraw()

    def _repaint_rows(self, sids: set[str]) -> bool:
        """Drop the render caches of rows ``sids`` (on screen) and refresh their lines.

        Textual's DataTable keys its caches (8.x): cells and row lines by row key
        first, screen lines by virtual line first, row renderables by (update count,
        row index). False, and nothing done, when they are not there as expected.
        """
        try:
            by_row: tuple[Any, ...] = (self._cell_render_cache, self._row_render_cache)
            lines: Any = self._line_cache
            renderables: Any = self._row_renderable_cache
        except AttributeError:
            return False
        keys = {RowKey(sid) for sid in sids}
        indexes = [self.get_row_index(sid) for sid in sids]
        header = self.header_height if self.show_header else 0
        ys = {index + header for index in indexes}  # every row is one line high
        for cache in by_row:
            for row_key in [k for k in cache.keys() if k[0] in keys]:
                cache.discard(row_key)
        for line_key in [k for k in lines.keys() if k[0] in ys]:
            lines.discard(line_key)
        for index in indexes:
            renderables.discard((self._update_count, index))
            self.refresh_row(index)
        return True

    def _redraw(self) -> None:
        self._offscreen.clear()
        self._update_count += 1
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if round(old_value) != round(new_value) and self._view is not None:
            self._reveal()

    def _reveal(self) -> None:
        """Rows scrolled into view: bring their clock-driven cells up to date."""
        assert self._view is not None
        visible = self._visible_ids()
        updates: list[tuple[str, str, Text]] = []
        sessions = self._view.sessions
        for sid in visible:
            session = sessions.get(sid)
            if session is not None and sid in self._cells:
                self._diff(sid, self._cells_for(session, self._now, True), updates)
        if updates or (self._offscreen & visible):
            data = self._data
            for sid, key, cell in updates:
                data[RowKey(sid)][ColumnKey(key)] = cell
            self._redraw()

    def apply(self, view: PoolView, changed: set[str], removed: set[str], now: float) -> None:
        """Show what changed: update rows in place, add new ones, drop gone ones."""
        self._view, self._now = view, now
        keep = self.selected_id
        gone = [sid for sid in removed if sid in self._cells]
        leaving = [
            sid
            for sid in changed
            if sid in self._cells and not self.filter.matches(view.sessions[sid])
        ]
        if len(gone) + len(leaving) > 50:
            self.rebuild(view, now)
            return
        for sid in gone + leaving:
            self.remove_row(sid)
            del self._cells[sid]
            self._docs.pop(sid, None)
        new: list[str] = []
        updates: list[tuple[str, str, Text]] = []
        moved = False
        for sid in changed:
            session = view.sessions[sid]
            if sid in self._cells:
                old = self._docs.get(sid)
                cells = (
                    self._cells_for(session, now, False)
                    if old is None
                    else self._changed_cells(old, session, now)
                )
                self._docs[sid] = session
                self._diff(sid, cells, updates)
                if old is not None and not moved:
                    moved = sort_key(self.sort_by, old) != sort_key(self.sort_by, session)
            elif self.filter.matches(session):
                new.append(sid)
        self._write(updates)
        reverse = self.sort_reverse
        new.sort(key=lambda sid: sort_key(self.sort_by, view.sessions[sid]), reverse=reverse)
        last = self._last_key(view)
        for sid in new:
            self._add(sid, view.sessions[sid], now)
        added = bool(new)
        if new and last is not None and not moved:
            # New rows were appended in order; sort only when they belong further up.
            first = sort_key(self.sort_by, view.sessions[new[0]])
            moved = (first > last) if reverse else (first < last)
        if moved:
            self._sort(view)
        if gone or leaving or added or moved:
            self._select(keep)

    def _last_key(self, view: PoolView) -> Any:
        """The sort key of the last row (None when empty): new rows after it need no sort."""
        if not self.row_count:
            return None
        row_key = self.coordinate_to_cell_key(Coordinate(self.row_count - 1, 0)).row_key
        session = view.sessions.get(str(row_key.value))
        return sort_key(self.sort_by, session) if session is not None else None

    def tick(self, view: PoolView, now: float) -> None:
        """Redraw the clock-driven cells (ages, elapsed starts) of the rows on screen;
        the others catch up when they are scrolled into view."""
        self._view, self._now = view, now
        updates: list[tuple[str, str, Text]] = []
        sessions = view.sessions
        for sid in self._visible_ids():
            if sid in self._cells:
                self._diff(sid, self._cells_for(sessions[sid], now, True), updates)
        self._write(updates)

    def _sort(self, view: PoolView) -> None:
        def by(cell: IdCell) -> Any:
            return sort_key(self.sort_by, view.sessions[cell.session_id])

        self.sort("id", key=by, reverse=self.sort_reverse)

    # ---------------------------------------------------------------- selection

    def watch_cursor_coordinate(self, old: Coordinate, new: Coordinate) -> None:
        super().watch_cursor_coordinate(old, new)
        # Tell the screen now, not by a message a loop turn later: the detail pane then
        # changes in the same frame as the cursor row (one frame per key, not two).
        if old.row != new.row and self.on_select is not None:
            self.on_select(self.selected_id)

    @property
    def selected_id(self) -> str | None:
        """The session id of the row under the cursor."""
        if not self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    def _select(self, session_id: str | None) -> None:
        if session_id is None or session_id not in self._cells:
            return
        index = self.get_row_index(session_id)
        if index != self.cursor_row:
            self.move_cursor(row=index, animate=False)

    def action_scroll_top(self) -> None:
        self.move_cursor(row=0)

    def action_scroll_bottom(self) -> None:
        self.move_cursor(row=max(0, self.row_count - 1))
