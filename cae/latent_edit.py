"""Editing a latent code by hand: from a painted canvas to grid cells, strokes, undo, colours.

The latent editor shows one channel of a code (h, w, c) as an upscaled heatmap on a drawing canvas.
A stroke comes back as an RGBA image of the canvas (``stroke_mask_from_image_data`` turns it into
a painted-pixel mask); ``cells_from_mask`` maps the mask onto the (h, w) grid; ``apply_stroke``
changes exactly those cells of the chosen channel (``set`` a value, ``add`` a delta, or ``erase``
back to the source code). Coverage rule: a cell counts as covered when at least
``COVER_THRESHOLD`` (15 %) of its pixels are painted, so a stroke through a cell's middle takes
it, while an anti-aliased edge or a stroke that only clips a corner does not; a stroke that
covers no cell that much changes the one cell it covers most (``stroke_cells``).

``LatentEdit`` is the editor's whole state (the code, its source and where it came from, the
undo list with its bound, the channel shown): each user action (a stroke, a cell, a pasted table,
undo, reset, another source) is a method that returns the new state and says what changed.

Pure numpy (and PIL only where an image is asked for); no Streamlit, no TensorFlow. Codes kept
in a session are plain nested lists (``to_plain`` / ``from_plain``, ``LatentEdit.to_dict``);
undo is a plain list of them.

How an input image of any channel count is shown lives here too (``channel_options``,
``image_view``, ``upscale``), the lowest module that draws images; ``cae.plots`` reads it. The rule:
one channel is grayscale, three are RGB (or one of them alone), any other count (2, 4, 5 to 64)
one channel at a time. Four channels are not shown as RGBA: alpha would hide the fourth channel's
values (on a dark page a low alpha is just dark), and four channels are as often RGB plus
near-infrared as they are RGBA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from cae.colours import colormap
from cae.pixels import as_float

MODES = ("set", "add", "erase")
COVER_THRESHOLD = 0.15  # fraction of a cell's pixels that must be painted for it to count
MIN_ALPHA = 64  # with a transparent background: alpha at or above this is paint
UNDO_LIMIT = 100
SHELF_LIMIT = 8  # the other sources whose edit (code and undo) waits for a switch back


def _grid_shape(grid_shape: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = (int(n) for n in grid_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"grid_shape must be two positive integers (rows, cols). Received: grid_shape={grid_shape!r}"
        ) from None
    if h < 1 or w < 1:
        raise ValueError(
            f"grid_shape must be two positive integers (rows, cols). Received: grid_shape={grid_shape!r}"
        )
    return h, w


def _edges(pixels: int, cells: int) -> np.ndarray:
    """Cell boundaries along one axis: ``cells + 1`` integers from 0 to ``pixels``."""
    return np.round(np.linspace(0, pixels, cells + 1)).astype(int)


def cell_coverage(mask: np.ndarray, grid_shape: Sequence[int]) -> np.ndarray:
    """The fraction (0..1) of each grid cell's pixels that are painted, shape (h, w) float."""
    m = np.asarray(mask)
    h, w = _grid_shape(grid_shape)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (H_px, W_px). Received: mask.shape={m.shape}")
    if m.shape[0] < h or m.shape[1] < w:
        raise ValueError(
            "mask must have at least one pixel per cell. "
            f"Received: mask.shape={m.shape}, grid_shape={(h, w)}"
        )
    rows, cols = _edges(m.shape[0], h), _edges(m.shape[1], w)
    painted = m.astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(painted, rows[:-1], axis=0), cols[:-1], axis=1)
    areas = np.outer(np.diff(rows), np.diff(cols))
    return sums / areas


def cells_from_mask(
    mask: np.ndarray, grid_shape: Sequence[int], threshold: float = COVER_THRESHOLD
) -> np.ndarray:
    """Cells (h, w) bool covered by a painted-pixel mask (H_px, W_px): a cell counts when at
    least ``threshold`` of its pixels are painted (pixels split as evenly as the sizes allow)."""
    if isinstance(threshold, bool) or not 0 < float(threshold) <= 1:
        raise ValueError(f"threshold must be in (0, 1]. Received: threshold={threshold!r}")
    return cell_coverage(mask, grid_shape) >= float(threshold) - 1e-12


def stroke_cells(
    mask: np.ndarray, grid_shape: Sequence[int], threshold: float = COVER_THRESHOLD
) -> np.ndarray:
    """The cells (h, w) bool a stroke changes: those at least ``threshold`` covered, else (a
    click or a stroke along the grid's outer edge or corner that covers no cell that much) the
    one cell it covers most, so that any paint on the grid changes a cell. No paint: none.

    Measured in Chromium: a click in a corner of a 40 px cell with the editor's 24 px brush
    covers 7 % of it, below the 15 % rule, and used to be dropped as "too small".
    """
    coverage = cell_coverage(mask, grid_shape)
    cells = cells_from_mask(mask, grid_shape, threshold)
    if cells.any() or not (coverage > 0).any():
        return cells
    best = np.zeros(coverage.shape, dtype=bool)
    best[np.unravel_index(int(np.argmax(coverage)), coverage.shape)] = True
    return best


def parse_colour(colour: str | Sequence[int]) -> tuple[int, int, int]:
    """An RGB triple from ``"#rrggbb"``, ``"#rgb"`` or a sequence of three 0..255 integers."""
    if isinstance(colour, str):
        text = colour.strip().lstrip("#")
        if len(text) == 3:
            text = "".join(ch * 2 for ch in text)
        if len(text) == 6:
            try:
                return tuple(int(text[i : i + 2], 16) for i in (0, 2, 4))  # type: ignore[return-value]
            except ValueError:
                pass
        raise ValueError(f"colour must be '#rrggbb' or '#rgb'. Received: colour={colour!r}")
    values = tuple(int(v) for v in colour)
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"colour must be three integers 0..255. Received: colour={colour!r}")
    return values  # type: ignore[return-value]


def stroke_mask_from_image_data(
    image_data: np.ndarray,
    background: str | Sequence[int] | None = None,
    *,
    min_alpha: int = MIN_ALPHA,
    tolerance: int = 8,
) -> np.ndarray:
    """Painted pixels (H, W) bool of a canvas's RGBA ``image_data``.

    With ``background=None`` (a transparent canvas, e.g. one with a background image, whose
    ``image_data`` holds the strokes alone) a pixel is painted when its alpha >= ``min_alpha``.
    With a background colour (alpha is then 255 everywhere) a pixel is painted when its RGB
    differs from that colour by more than ``tolerance`` in any channel.
    """
    data = np.asarray(image_data)
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise ValueError(
            f"image_data must be (H, W, 4) RGBA or (H, W, 3) RGB. Received: shape={data.shape}"
        )
    if background is None:
        if data.shape[-1] != 4:
            raise ValueError(
                "Without a background colour the alpha channel marks the paint, so image_data "
                f"must be RGBA. Received: shape={data.shape}"
            )
        return data[..., 3].astype(np.int32) >= int(min_alpha)
    rgb = np.asarray(parse_colour(background), dtype=np.int32)
    return np.any(np.abs(data[..., :3].astype(np.int32) - rgb) > int(tolerance), axis=-1)


def _check_code(code: np.ndarray, what: str) -> np.ndarray:
    z = np.array(code, dtype=np.float32)
    if z.ndim != 3:
        raise ValueError(
            f"{what} must be a latent code (h, w, c). Received: {what}.shape={z.shape}"
        )
    return z


def _check_channel(channel: int, channels: int) -> None:
    """Raise unless ``channel`` is an integer from 0 to ``channels - 1``."""
    if (
        isinstance(channel, bool)
        or not isinstance(channel, (int, np.integer))
        or not 0 <= channel < channels
    ):
        raise ValueError(
            f"channel must be an integer from 0 to {channels - 1}. Received: channel={channel!r}"
        )


def apply_stroke(
    code: np.ndarray,
    cells: np.ndarray,
    channel: int,
    mode: str,
    value: float = 0.0,
    source_code: np.ndarray | None = None,
    ranges: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """A new code (h, w, c) float32 with the ``cells`` (h, w) bool of ``channel`` changed:
    ``set`` to ``value``, ``add`` ``value``, or ``erase`` back to ``source_code``; all else kept.
    With ``ranges`` (each cell's low and high, (h, w, c)) a painted value is held to its cell's
    range: ``set`` clipped into it, ``add`` never carried past it (a value already outside it,
    as a test image's code may be, is not pulled in); ``erase`` restores the source as it was."""
    z = _check_code(code, "code")
    h, w, c = z.shape
    mask = np.asarray(cells)
    if mask.shape != (h, w):
        raise ValueError(
            f"cells must be a (h, w) mask of the code's grid {(h, w)}. Received: cells.shape={mask.shape}"
        )
    mask = mask.astype(bool)
    _check_channel(channel, c)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode!r}")
    plane = z[..., int(channel)]
    if mode == "erase":
        if source_code is None:
            raise ValueError(
                "erase needs the source code to go back to. Received: source_code=None"
            )
        source = _check_code(source_code, "source_code")
        if source.shape != z.shape:
            raise ValueError(
                "source_code must have the code's shape. "
                f"Received: code.shape={z.shape}, source_code.shape={source.shape}"
            )
        plane[mask] = source[..., int(channel)][mask]
        return z
    if not np.isfinite(value):
        raise ValueError(f"value must be a finite number. Received: value={value!r}")
    old = plane.copy()
    if mode == "set":
        plane[mask] = np.float32(value)
    else:
        plane[mask] += np.float32(value)
    if ranges is not None:
        low, high = (_cell_bounds(bound, z.shape, channel) for bound in ranges)
        if mode == "add":
            low, high = np.minimum(low, old), np.maximum(high, old)
        plane[mask] = np.clip(plane[mask], low[mask], high[mask])
    return z


def _cell_bounds(bound: np.ndarray, shape: tuple[int, ...], channel: int) -> np.ndarray:
    """One channel's plane (h, w) of a cell range (h, w, c) float32, checked against the code's
    shape."""
    array = np.asarray(bound, dtype=np.float32)
    if array.shape != tuple(shape):
        raise ValueError(
            f"A cell range must have the code's shape. Received: range shape={array.shape}, "
            f"code shape={tuple(shape)}"
        )
    return array[..., int(channel)]


def clipped_cells(
    cells: np.ndarray, channel: int, value: float, ranges: tuple[np.ndarray, np.ndarray]
) -> int:
    """How many of the ``cells`` (h, w) bool a ``set`` of ``value`` in ``channel`` holds to
    their range (``ranges``: each cell's low and high, (h, w, c)) rather than setting it."""
    low, high = (np.asarray(bound, dtype=np.float32)[..., int(channel)] for bound in ranges)
    mask = np.asarray(cells, dtype=bool)
    v = np.float32(value)
    return int((mask & ((v < low) | (v > high))).sum())


def set_cell(code: np.ndarray, row: int, col: int, channel: int, value: float) -> np.ndarray:
    """A new code with one cell of one channel set to ``value``."""
    z = _check_code(code, "code")
    h, w, _ = z.shape
    if not (0 <= int(row) < h and 0 <= int(col) < w):
        raise ValueError(
            f"The cell must lie in the {h}x{w} grid. Received: row={row!r}, col={col!r}"
        )
    cells = np.zeros((h, w), dtype=bool)
    cells[int(row), int(col)] = True
    return apply_stroke(z, cells, channel, "set", value)


def changed_cells(
    before: np.ndarray, after: np.ndarray, channel: int | None = None
) -> list[tuple[int, int]]:
    """The (row, col) cells whose value differs between two codes (in ``channel``, or in any)."""
    a, b = _check_code(before, "before"), _check_code(after, "after")
    if a.shape != b.shape:
        raise ValueError(f"The codes differ in shape. Received: {a.shape} and {b.shape}")
    diff = a != b
    plane = diff.any(axis=-1) if channel is None else diff[..., int(channel)]
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(plane))]


# ---------------------------------------------------------------------------------- plain data


def to_plain(code: np.ndarray) -> list[Any]:
    """A code as nested lists of floats (for st.session_state)."""
    return np.asarray(code, dtype=np.float32).tolist()


def from_plain(data: Any) -> np.ndarray:
    """A code back from nested lists, float32 (h, w, c)."""
    return _check_code(np.asarray(data, dtype=np.float32), "code")


def push_undo(
    history: list[Any], code: np.ndarray | list[Any], limit: int = UNDO_LIMIT
) -> list[Any]:
    """The undo list with ``code`` (the state before an edit) appended, oldest dropped past ``limit``."""
    plain = code if isinstance(code, list) else to_plain(code)
    return [*history, plain][-int(limit) :]


def pop_undo(history: list[Any]) -> tuple[list[Any], np.ndarray | None]:
    """(the undo list without its last entry, that code) — or (history, None) when empty."""
    if not history:
        return history, None
    return history[:-1], from_plain(history[-1])


# ------------------------------------------------------------------------------- edit state


def _cell_words(value: float) -> str:
    """A latent value, short, as the status line shows it."""
    return f"{value:.3g}"


def _frozen(code: np.ndarray | list[Any], what: str) -> np.ndarray:
    """A read-only float32 copy of a code (h, w, c), so that a state is never changed in place."""
    z = _check_code(code, what)
    z.setflags(write=False)
    return z


@dataclass(frozen=True, eq=False)
class LatentEdit:
    """The latent editor's state: the code being edited, where it came from, its undo list, and
    the edits of the sources left for it (a switch back resumes them).

    Every user action is a method that returns the new state (this one is never changed); the new
    state's ``changed`` and ``last`` say what the action changed. ``to_dict``/``from_dict`` turn it
    into plain data and back, so that ``st.session_state`` holds no objects of this module.
    """

    origin: (
        str  # where the code came from: "<run id>|<created>|test:3", "...|mean", "...|incoming:2"
    )
    source: np.ndarray  # (h, w, c) float32, the code it started from: erase and reset go back to it
    code: np.ndarray  # (h, w, c) float32, the code being edited
    # The codes before each edit, oldest first, as nested lists: an edit converts one code, never
    # the whole list (to_dict copies the list, not the codes).
    undo: tuple[list[Any], ...] = ()
    channel: int = 0  # the channel of the code that is painted and shown
    changed: tuple[tuple[int, int], ...] = ()  # the (row, col) cells of the last action, in channel
    last: str = ""  # the last action in words: "set 5 cell(s) (1.2)", "undo", "typed 1 value(s)"
    canvas_version: int = 0  # bumped when the canvas must start empty (a new widget key)
    table_version: int = 0  # bumped when the number table must show new values (a new widget key)
    decodes: int = 0  # how many times this session decoded a code (the status line counts them)
    undo_limit: int = UNDO_LIMIT  # undo keeps this many codes; the oldest go first
    # The edits of the sources left for this one, oldest first, at most SHELF_LIMIT: (origin,
    # {"source", "code", "undo"} as plain data); a switch back to one of them resumes it.
    shelf: tuple[tuple[str, dict[str, Any]], ...] = ()

    def __post_init__(self) -> None:
        """Check that the code, its source and the channel fit together."""
        source, code = _frozen(self.source, "source"), _frozen(self.code, "code")
        if source.shape != code.shape:
            raise ValueError(
                "The code and its source must have the same shape. "
                f"Received: code.shape={code.shape}, source.shape={source.shape}"
            )
        _check_channel(self.channel, code.shape[-1])
        if isinstance(self.undo_limit, bool) or int(self.undo_limit) < 1:
            raise ValueError(
                f"undo_limit must be a positive integer. Received: undo_limit={self.undo_limit!r}"
            )
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "code", code)
        object.__setattr__(self, "undo", tuple(self.undo)[-int(self.undo_limit) :])
        object.__setattr__(self, "changed", tuple((int(r), int(c)) for r, c in self.changed))
        object.__setattr__(
            self, "shelf", tuple((str(o), dict(e)) for o, e in self.shelf)[-SHELF_LIMIT:]
        )

    # ------------------------------------------------------------------ starting points

    @classmethod
    def start(
        cls,
        code: np.ndarray | list[Any],
        origin: str,
        channel: int = 0,
        undo_limit: int = UNDO_LIMIT,
    ) -> LatentEdit:
        """A fresh edit of ``code`` (which becomes its source), nothing to undo."""
        return cls(str(origin), code, code, channel=channel, undo_limit=undo_limit)

    @classmethod
    def resume(
        cls, saved: Mapping[str, Any] | None, code: np.ndarray | list[Any], origin: str
    ) -> LatentEdit:
        """The ``saved`` edit (:meth:`to_dict`'s plain data) while it is still of ``origin``;
        else a fresh edit of ``code`` from there (:meth:`change_source`, counters carried on),
        or :meth:`start` when nothing usable was saved."""
        try:
            previous = cls.from_dict(saved) if saved else None
        except (ValueError, TypeError):  # saved by an older version of the editor
            previous = None
        if previous is None:
            return cls.start(code, origin)
        return previous if previous.origin == origin else previous.change_source(code, origin)

    def change_source(self, code: np.ndarray | list[Any], origin: str) -> LatentEdit:
        """Another source: its own edit, code and undo, where this session edited it before
        (the last ``SHELF_LIMIT`` sources left are kept, this one among them from now on), else a
        fresh edit of ``code``; the canvas and table start anew, the channel and the decode count
        carry on (a channel the new code lacks falls back to 0)."""
        new_source = _check_code(code, "code")
        channels = new_source.shape[-1]
        origin = str(origin)
        shelf = [(o, e) for o, e in self.shelf if o != origin]
        if origin != self.origin:
            left = {"source": to_plain(self.source), "code": to_plain(self.code)}
            shelf.append((self.origin, {**left, "undo": list(self.undo)}))
        found = dict(self.shelf).get(origin)
        resumed = None
        if found is not None:
            try:
                kept_source = _check_code(from_plain(found["source"]), "source")
                kept_code = _check_code(from_plain(found["code"]), "code")
            except (KeyError, TypeError, ValueError):
                kept_source = kept_code = None
            if (
                kept_source is not None
                and kept_source.shape == new_source.shape
                and np.allclose(kept_source, new_source)  # the same code: the edit still holds
            ):
                resumed = (kept_code, tuple(found.get("undo", ())))
        code_now, undo = resumed if resumed is not None else (code, ())
        return replace(
            self,
            origin=origin,
            source=code,
            code=code_now,
            undo=undo,
            channel=self.channel if self.channel < channels else 0,
            changed=(),
            last="back to this code: its edits and undo kept" if resumed and undo else "",
            canvas_version=self.canvas_version + 1,
            table_version=self.table_version + 1,
            shelf=tuple(shelf),
        )

    # ------------------------------------------------------------------ user actions

    def paint(
        self,
        cells: np.ndarray,
        mode: str,
        value: float = 0.0,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LatentEdit:
        """The cells (h, w) bool of the shown channel painted with the brush: ``set`` to
        ``value``, ``add`` ``value``, or ``erase`` back to the source, each cell held to its own
        range where ``ranges`` are given (:func:`apply_stroke`; the words say how many a ``set``
        held). No cells: only a fresh canvas, nothing changed."""
        mask = np.asarray(cells, dtype=bool)
        new = apply_stroke(self.code, mask, self.channel, mode, value, self.source, ranges)
        if not mask.any():
            return replace(self, canvas_version=self.canvas_version + 1)
        words = f"{mode} {int(mask.sum())} cell(s)"
        if mode == "erase":
            return self._commit(new, words)
        held = clipped_cells(mask, self.channel, value, ranges) if ranges and mode == "set" else 0
        note = f"; {held} held to their cell's range" if held else ""
        return self._commit(new, f"{words} ({_cell_words(value)}{note})")

    def paint_stroke(
        self,
        image_data: np.ndarray,
        mode: str,
        value: float = 0.0,
        ranges: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> LatentEdit:
        """A stroke on the transparent canvas over the grid (RGBA ``image_data``, the strokes
        alone) painted onto the cells it covers (:func:`stroke_cells`), each held to its range
        where ``ranges`` are given."""
        cells = stroke_cells(stroke_mask_from_image_data(image_data), self.code.shape[:2])
        return self.paint(cells, mode, value, ranges)

    def set_cell(self, row: int, col: int, value: float) -> LatentEdit:
        """One cell of the shown channel set to ``value``."""
        new = set_cell(self.code, row, col, self.channel, value)
        return self._commit(new, f"cell ({int(row)}, {int(col)}) = {_cell_words(value)}")

    def paste_table(self, edited_rows: Mapping[Any, Mapping[Any, Any]]) -> LatentEdit:
        """Values typed or pasted into the number table of the shown channel, as
        ``st.data_editor`` reports them (``{row: {"col": value}}``); values that are not finite
        numbers are skipped. Nothing new (the table sends its edits again when it is redrawn):
        this same state, so that the last edit's changed cells stay on show."""
        new = self.code
        for row, columns in edited_rows.items():
            for column, value in columns.items():
                try:
                    if value is not None and np.isfinite(float(value)):
                        new = set_cell(new, int(row), int(str(column)), self.channel, float(value))
                except (TypeError, ValueError):
                    continue
        if np.array_equal(new, self.code):
            return self
        typed = len(changed_cells(self.code, new, self.channel))
        return self._commit(new, f"typed {typed} value(s)", new_table=False)

    def reset(self) -> LatentEdit:
        """Back to the source code (undoable)."""
        return self._commit(self.source, "reset to the source")

    def undo_last(self) -> LatentEdit:
        """The code before the last edit; nothing to undo: this same state."""
        rest, code = pop_undo(list(self.undo))
        if code is None:
            return self
        return replace(
            self,
            code=code,
            undo=tuple(rest),
            changed=tuple(changed_cells(self.code, code, self.channel)),
            last="undo",
            canvas_version=self.canvas_version + 1,
            table_version=self.table_version + 1,
        )

    def show_channel(self, channel: int) -> LatentEdit:
        """The same code with another channel painted and shown."""
        _check_channel(channel, self.code.shape[-1])
        return self if int(channel) == self.channel else replace(self, channel=int(channel))

    def count_decode(self) -> LatentEdit:
        """The same edit with one more decode counted."""
        return replace(self, decodes=self.decodes + 1)

    def _commit(self, new: np.ndarray, what: str, *, new_table: bool = True) -> LatentEdit:
        """``new`` as the edited code, the old one on the undo list (when they differ), a fresh
        canvas, and a fresh table unless the table made the edit (it shows it already)."""
        edited = not np.array_equal(self.code, new)
        return replace(
            self,
            code=new if edited else self.code,
            undo=tuple(push_undo(list(self.undo), self.code, self.undo_limit))
            if edited
            else self.undo,
            changed=tuple(changed_cells(self.code, new, self.channel)),
            last=what,
            canvas_version=self.canvas_version + 1,
            table_version=self.table_version + (1 if new_table else 0),
        )

    # ------------------------------------------------------------------ plain data

    def to_dict(self) -> dict[str, Any]:
        """The state as plain data (nested lists, numbers, strings) for ``st.session_state``."""
        return {
            "origin": self.origin,
            "source": to_plain(self.source),
            "code": to_plain(self.code),
            "undo": list(self.undo),
            "channel": self.channel,
            "changed": [list(cell) for cell in self.changed],
            "last": self.last,
            "canvas_version": self.canvas_version,
            "table_version": self.table_version,
            "decodes": self.decodes,
            "undo_limit": self.undo_limit,
            "shelf": [[origin, dict(edit)] for origin, edit in self.shelf],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatentEdit:
        """The state back from :meth:`to_dict`'s plain data."""
        if not {"origin", "source", "code"} <= set(data):
            raise ValueError(
                f"A latent edit needs origin, source and code. Received: keys={sorted(data)}"
            )
        return cls(
            origin=str(data["origin"]),
            source=data["source"],
            code=data["code"],
            undo=tuple(data.get("undo", ())),
            channel=int(data.get("channel", 0)),
            changed=tuple(tuple(cell) for cell in data.get("changed", ())),
            last=str(data.get("last", "")),
            canvas_version=int(data.get("canvas_version", 0)),
            table_version=int(data.get("table_version", 0)),
            decodes=int(data.get("decodes", 0)),
            undo_limit=int(data.get("undo_limit", UNDO_LIMIT)),
            shelf=tuple(
                (str(entry[0]), dict(entry[1]))
                for entry in data.get("shelf", ())
                if isinstance(entry, (list, tuple))
                and len(entry) == 2
                and isinstance(entry[1], Mapping)
            ),
        )


# -------------------------------------------------------------------------------------- colours


def colour_hex(value: float, vmin: float, vmax: float) -> str:
    """The colour of one value on the shared sequential scale as ``"#rrggbb"``."""
    r, g, b = (int(n) for n in colormap(np.array(value), vmin, vmax))
    return f"#{r:02x}{g:02x}{b:02x}"


def render_grid_image(
    grid: np.ndarray, vmin: float, vmax: float, cell_px: int, *, lines: bool = True
) -> np.ndarray:
    """A 2-D grid (h, w) as an RGB uint8 image (h*cell_px, w*cell_px, 3), viridis, each cell a
    square of ``cell_px`` pixels, with thin dark lines between cells when ``lines``."""
    g = np.asarray(grid, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"grid must be 2-D (h, w). Received: grid.shape={g.shape}")
    if isinstance(cell_px, bool) or not isinstance(cell_px, (int, np.integer)) or cell_px < 1:
        raise ValueError(f"cell_px must be a positive integer. Received: cell_px={cell_px!r}")
    rgb = colormap(g, vmin, vmax)
    image = np.repeat(np.repeat(rgb, cell_px, axis=0), cell_px, axis=1)
    if lines and cell_px >= 8:
        darker = (image.astype(np.int32) * 3 // 4).astype(np.uint8)
        image[::cell_px, :] = darker[::cell_px, :]
        image[:, ::cell_px] = darker[:, ::cell_px]
    return image


def render_colorbar(
    vmin: float, vmax: float, width: int, height: int = 18, marker: float | None = None
) -> np.ndarray:
    """A horizontal viridis colour bar (height, width, 3) uint8 from vmin (left) to vmax (right),
    with a white-and-black tick where ``marker`` falls."""
    values = np.linspace(float(vmin), float(vmax), int(width))
    bar = np.repeat(colormap(values, vmin, vmax)[None], int(height), axis=0)
    if marker is not None and np.isfinite(marker) and vmax > vmin:
        x = int(round((float(marker) - vmin) / (vmax - vmin) * (width - 1)))
        x = min(max(x, 1), width - 2)
        bar[:, x - 1 : x + 2] = 0
        bar[:, x] = 255
    return bar


# ------------------------------------------------------------------------------- input images


def channel_options(channels: int) -> list[int | None]:
    """The ways to show images of ``channels`` channels: ``None`` (the picture: grayscale for 1
    channel, RGB for 3) where there is one, then each channel alone when there are several."""
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
        raise ValueError(f"channels must be a positive integer. Received: channels={channels!r}")
    if channels == 1:
        return [None]
    alone: list[int | None] = list(range(int(channels)))
    return [None, *alone] if channels == 3 else alone


def channel_label(option: int | None, channels: int) -> str:
    """How a channel option reads in a picker: ``"grayscale"``, ``"RGB"`` or ``"channel 4"``."""
    if option is None:
        return "grayscale" if channels == 1 else "RGB" if channels == 3 else "channel 0"
    return f"channel {option}"


def image_view(image: np.ndarray, channel: int | None = None) -> np.ndarray:
    """One image (H, W) or (H, W, C) in [0, 1] as shown, float32 clipped to [0, 1]: (H, W, 3)
    for three channels with ``channel=None``, else (H, W) grayscale: the one channel, or channel
    ``channel`` alone (``None`` with 2, 4 or more channels shows channel 0, never an error)."""
    x = as_float(image)  # a uint8 image (as test splits hold them) counts as k/255
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] < 1:
        raise ValueError(f"An image is (H, W) or (H, W, C). Received: shape={np.shape(image)}")
    count = x.shape[-1]
    if channel is not None and (
        isinstance(channel, bool)
        or not isinstance(channel, (int, np.integer))
        or not 0 <= channel < count
    ):
        raise ValueError(
            f"channel must be None or an integer from 0 to {count - 1}. "
            f"Received: channel={channel!r}, shape={x.shape}"
        )
    view = x if channel is None and count == 3 else x[..., 0 if channel is None else int(channel)]
    return np.clip(np.nan_to_num(view, nan=0.0), 0.0, 1.0)


def upscale(image: np.ndarray, factor: int, channel: int | None = None) -> np.ndarray:
    """An image (H, W[, C]) in [0, 1] as shown (:func:`image_view`), uint8 (H*f, W*f) grayscale
    or (H*f, W*f, 3) RGB, with nearest-neighbour pixels."""
    pixels = np.round(image_view(image, channel) * 255).astype(np.uint8)
    return np.repeat(np.repeat(pixels, int(factor), axis=0), int(factor), axis=1)


def drawing_to_image(
    image_data: np.ndarray,
    image_shape: Sequence[int],
    background: str | Sequence[int] = "#000000",
    channel: int | None = None,
) -> np.ndarray:
    """A drawing (RGBA canvas, light strokes on a dark background) as an input image
    ``image_shape`` (H, W, C) in [0, 1], each pixel the mean brightness of its block of canvas:
    in every channel (``channel=None``), or in ``channel`` alone with the others 0."""
    data = np.asarray(image_data)
    if data.ndim != 3 or data.shape[-1] not in (3, 4):
        raise ValueError(f"image_data must be (H, W, 4) RGBA. Received: shape={data.shape}")
    h, w, c = (int(n) for n in image_shape)
    if channel is not None and not 0 <= int(channel) < c:
        raise ValueError(
            f"channel must be None or an integer from 0 to {c - 1}. Received: channel={channel!r}"
        )
    bg = np.asarray(parse_colour(background), dtype=np.float64)
    rgb = data[..., :3].astype(np.float64)
    if data.shape[-1] == 4 and not np.all(data[..., 3] == 255):  # transparent canvas
        alpha = data[..., 3:4].astype(np.float64) / 255.0
        rgb = rgb * alpha + bg * (1 - alpha)
    grey = rgb.mean(axis=-1) / 255.0
    rows, cols = _edges(grey.shape[0], h), _edges(grey.shape[1], w)
    sums = np.add.reduceat(np.add.reduceat(grey, rows[:-1], axis=0), cols[:-1], axis=1)
    small = (sums / np.outer(np.diff(rows), np.diff(cols))).astype(np.float32)
    if channel is None:
        return np.repeat(small[..., None], c, axis=-1)
    image = np.zeros((h, w, c), np.float32)
    image[..., int(channel)] = small
    return image
