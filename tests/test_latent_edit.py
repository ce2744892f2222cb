"""The latent editor's pure logic: canvas pixels to grid cells, strokes, undo, colours."""

from __future__ import annotations

import numpy as np
import pytest

from cae import latent_edit as le


def rect_mask(shape_px, top, left, height, width):
    mask = np.zeros(shape_px, dtype=bool)
    mask[top : top + height, left : left + width] = True
    return mask


def stroke_over(cells, grid, cell_px, band=0.6):
    """A mask painting a centred band (``band`` of a cell wide) through each listed cell."""
    h, w = grid
    mask = np.zeros((h * cell_px, w * cell_px), dtype=bool)
    margin = int(cell_px * (1 - band) / 2)
    for r, c in cells:
        mask[r * cell_px + margin : (r + 1) * cell_px - margin, c * cell_px : (c + 1) * cell_px] = (
            True
        )
    return mask


@pytest.mark.parametrize("grid", [(7, 7), (4, 4), (7, 5), (1, 3)])
def test_a_stroke_covers_exactly_the_cells_it_goes_through(grid):
    cell_px = 40
    cells = [(0, 0), (grid[0] - 1, grid[1] - 1), (grid[0] // 2, grid[1] // 2)]
    covered = le.cells_from_mask(stroke_over(cells, grid, cell_px), grid)
    expected = np.zeros(grid, dtype=bool)
    for r, c in cells:
        expected[r, c] = True
    assert covered.shape == grid
    assert np.array_equal(covered, expected)


def test_coverage_threshold_and_uneven_pixel_sizes():
    # 100x70 pixels onto 7x5 cells: rows 14 or 15 px, columns 14 px
    mask = np.zeros((100, 70), dtype=bool)
    mask[0:3, 0:14] = True  # 3/14 of cell (0, 0): above 15 %
    mask[50, 28:42] = True  # one pixel row of a cell in the middle: below
    coverage = le.cell_coverage(mask, (7, 5))
    assert coverage[0, 0] == pytest.approx(3 / 14)
    cells = le.cells_from_mask(mask, (7, 5))
    assert cells.sum() == 1 and cells[0, 0]
    assert le.cells_from_mask(mask, (7, 5), threshold=0.01).sum() == 2
    assert le.cells_from_mask(np.ones((28, 28), bool), (7, 7)).all()
    assert not le.cells_from_mask(np.zeros((28, 28), bool), (7, 7)).any()


def test_a_corner_clip_does_not_count_but_a_dot_in_the_middle_does():
    mask = rect_mask((280, 280), 35, 35, 10, 10)  # the corner where 4 cells meet: 25 px each
    assert not le.cells_from_mask(mask, (7, 7)).any()
    dot = rect_mask((280, 280), 45, 45, 24, 24)  # inside cell (1, 1): 36 % of it
    cells = le.cells_from_mask(dot, (7, 7))
    assert np.argwhere(cells).tolist() == [[1, 1]]


def test_bad_arguments_name_what_was_received():
    with pytest.raises(ValueError, match=r"Received: mask.shape=\(3,\)"):
        le.cells_from_mask(np.zeros(3, bool), (7, 7))
    with pytest.raises(ValueError, match="grid_shape"):
        le.cells_from_mask(np.zeros((28, 28), bool), (0, 7))
    with pytest.raises(ValueError, match="threshold=0"):
        le.cells_from_mask(np.zeros((28, 28), bool), (7, 7), threshold=0)
    with pytest.raises(ValueError, match="mode='paint'"):
        le.apply_stroke(np.zeros((7, 7, 1)), np.zeros((7, 7), bool), 0, "paint", 1.0)
    with pytest.raises(ValueError, match="channel=2"):
        le.apply_stroke(np.zeros((7, 7, 2)), np.zeros((7, 7), bool), 2, "set", 1.0)
    with pytest.raises(ValueError, match=r"cells.shape=\(4, 4\)"):
        le.apply_stroke(np.zeros((7, 7, 1)), np.zeros((4, 4), bool), 0, "set", 1.0)
    with pytest.raises(ValueError, match="source_code=None"):
        le.apply_stroke(np.zeros((7, 7, 1)), np.zeros((7, 7), bool), 0, "erase")


@pytest.mark.parametrize("latent", [(7, 7, 1), (4, 4, 3), (7, 5, 2)])
def test_each_mode_changes_exactly_the_painted_cells_of_the_chosen_channel(latent):
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 2, latent).astype(np.float32)
    h, w, c = latent
    cells_list = [(0, 1), (h - 1, 0), (1, w - 1)]
    cells = le.cells_from_mask(stroke_over(cells_list, (h, w), 20), (h, w))
    channel = c - 1
    edited = source.copy()
    edited[2, 2, channel] = 9.0  # an earlier edit that erase must not touch

    set_ = le.apply_stroke(edited, cells, channel, "set", 5.0, source)
    add = le.apply_stroke(edited, cells, channel, "add", 0.5, source)
    painted = le.apply_stroke(set_, cells, channel, "set", 7.0)
    erased = le.apply_stroke(painted, cells, channel, "erase", source_code=source)
    for r, col in cells_list:
        assert set_[r, col, channel] == 5.0
        assert add[r, col, channel] == pytest.approx(edited[r, col, channel] + 0.5)
        assert erased[r, col, channel] == source[r, col, channel]
    for result in (set_, add, painted):
        assert sorted(le.changed_cells(edited, result)) == sorted(cells_list)
        assert le.changed_cells(edited, result, channel) == le.changed_cells(edited, result)
        unchanged = ~cells
        assert np.array_equal(result[unchanged], edited[unchanged])  # other cells, all channels
        others = [k for k in range(c) if k != channel]
        assert np.array_equal(result[..., others], edited[..., others])  # other channels
    assert np.array_equal(erased, edited)  # erase went back to the source under the stroke only
    assert erased[2, 2, channel] == 9.0
    assert edited[0, 1, channel] == source[0, 1, channel]  # inputs are not modified in place


def test_set_cell_and_undo_history_are_plain_data():
    code = np.zeros((7, 7, 1), np.float32)
    history: list = []
    history = le.push_undo(history, code)
    code2 = le.set_cell(code, 3, 4, 0, 2.5)
    assert le.changed_cells(code, code2) == [(3, 4)]
    history = le.push_undo(history, code2)
    code3 = le.set_cell(code2, 0, 0, 0, 1.0)
    assert isinstance(history[0], list) and isinstance(history[0][0][0][0], float)
    history, back = le.pop_undo(history)
    assert np.array_equal(back, code2) and code3[0, 0, 0] == 1.0
    history, back = le.pop_undo(history)
    assert np.array_equal(back, code)
    assert le.pop_undo(history) == ([], None)
    long = []
    for i in range(10):
        long = le.push_undo(long, np.full((2, 2, 1), i), limit=3)
    assert [row[0][0][0] for row in long] == [7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="row=7"):
        le.set_cell(code, 7, 0, 0, 1.0)
    assert np.array_equal(le.from_plain(le.to_plain(code2)), code2)


def test_stroke_mask_from_image_data_with_and_without_a_background_colour():
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[10:20, 5:15] = [255, 0, 0, 255]
    rgba[30, 30] = [255, 0, 0, 20]  # faint anti-aliased edge: not paint
    mask = le.stroke_mask_from_image_data(rgba)
    assert mask.sum() == 100 and mask[15, 10] and not mask[30, 30]
    on_black = np.zeros((40, 40, 4), np.uint8)
    on_black[..., 3] = 255
    on_black[0:4, 0:5, :3] = 255
    assert le.stroke_mask_from_image_data(on_black, "#000000").sum() == 20
    assert le.stroke_mask_from_image_data(on_black, (255, 255, 255)).sum() == 1600 - 20
    with pytest.raises(ValueError, match="shape=\\(40, 40\\)"):
        le.stroke_mask_from_image_data(np.zeros((40, 40)))
    with pytest.raises(ValueError, match="colour='blue'"):
        le.stroke_mask_from_image_data(on_black, "blue")


def test_images_grid_colours_and_colour_bar():
    grid = np.array([[0.0, 1.0], [0.5, 2.0]])
    image = le.render_grid_image(grid, 0.0, 1.0, 10, lines=False)
    assert image.shape == (20, 20, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [68, 1, 84]  # viridis low end
    assert image[5, 15].tolist() == [253, 231, 37]  # high end
    assert image[15, 15].tolist() == [253, 231, 37]  # clipped above vmax
    assert image[15, 5].tolist() == [33, 144, 141]  # the middle
    assert len({tuple(p) for p in image[:10, :10].reshape(-1, 3)}) == 1  # a cell is flat
    lined = le.render_grid_image(grid, 0.0, 1.0, 10)
    assert (lined[10, 5] < image[10, 5]).all()  # a dark line between cells
    bar = le.render_colorbar(0.0, 1.0, 100, 8, marker=0.5)
    assert bar.shape == (8, 100, 3)
    assert bar[0, 49:52].tolist() == [[0, 0, 0], [255, 255, 255], [0, 0, 0]]  # the marker
    assert le.colour_hex(0.0, 0.0, 1.0) == "#440154"
    assert le.render_grid_image(np.zeros((3, 3)), 1.0, 1.0, 4).shape == (12, 12, 3)  # flat range


def test_drawing_to_image_averages_blocks():
    drawing = np.zeros((280, 280, 4), np.uint8)
    drawing[..., 3] = 255
    drawing[0:10, 0:10, :3] = 255  # one full input pixel
    drawing[270:280, 270:275, :3] = 255  # half of the last one
    image = le.drawing_to_image(drawing, (28, 28, 1))
    assert image.shape == (28, 28, 1)
    assert image[0, 0, 0] == pytest.approx(1.0)
    assert image[27, 27, 0] == pytest.approx(0.5)
    assert image.sum() == pytest.approx(1.5)
    assert le.drawing_to_image(drawing, (14, 14, 3)).shape == (14, 14, 3)


def test_a_stroke_changes_at_least_the_cell_it_covers_most():
    """Issue 13: a click in a grid corner (the editor's 24 px brush on 40 px cells covers 7 %
    of the corner cell) was dropped as "too small"; any paint now changes a cell."""
    yy, xx = np.mgrid[0:280, 0:280]
    corner_dot = (yy - 279) ** 2 + (xx - 0) ** 2 <= 12**2
    assert not le.cells_from_mask(corner_dot, (7, 7)).any()
    cells = le.stroke_cells(corner_dot, (7, 7))
    assert np.argwhere(cells).tolist() == [[6, 0]]
    # a stroke that passes the threshold changes exactly the threshold's cells
    band = rect_mask((280, 280), 128, 40, 24, 200)
    assert np.array_equal(le.stroke_cells(band, (7, 7)), le.cells_from_mask(band, (7, 7)))
    assert not le.stroke_cells(np.zeros((280, 280), bool), (7, 7)).any()


# ------------------------------------------------------------------------- LatentEdit: the state


def stroke_image(cells, grid=(7, 7), cell_px=40):
    """The RGBA image a transparent canvas sends for a stroke through the middles of ``cells``."""
    image = np.zeros((grid[0] * cell_px, grid[1] * cell_px, 4), np.uint8)
    image[..., :3] = 255
    image[..., 3] = stroke_over(cells, grid, cell_px).astype(np.uint8) * 255
    return image


def started(shape=(7, 7, 2), **kwargs):
    source = np.arange(np.prod(shape), dtype=np.float32).reshape(shape) / 10
    return le.LatentEdit.start(source, "run-1|t0|test:3", **kwargs), source


def test_a_stroke_paints_the_cells_under_it_and_says_what_changed():
    edit, source = started()
    row3 = [(3, c) for c in range(1, 6)]
    painted = edit.paint_stroke(stroke_image(row3), "set", 1.5)
    assert list(painted.changed) == row3 and painted.last == "set 5 cell(s) (1.5)"
    assert np.all(painted.code[3, 1:6, 0] == 1.5)
    assert np.array_equal(
        np.delete(painted.code, range(1, 6), axis=1), np.delete(source, range(1, 6), axis=1)
    )
    assert np.array_equal(painted.code[..., 1], source[..., 1])  # only the channel shown
    assert len(painted.undo) == 1 and np.array_equal(painted.undo[0], source)
    assert (painted.canvas_version, painted.table_version) == (1, 1)  # fresh canvas and table
    assert np.array_equal(edit.code, source) and not edit.undo  # the old state is untouched
    with pytest.raises(ValueError, match="read-only"):
        painted.code[0, 0, 0] = 9.0

    added = painted.paint_stroke(stroke_image([(3, 1)]), "add", 0.25)
    assert added.code[3, 1, 0] == pytest.approx(1.75) and added.last == "add 1 cell(s) (0.25)"
    erased = added.paint_stroke(stroke_image([(3, 1), (3, 2)]), "erase")
    assert list(erased.changed) == [(3, 1), (3, 2)] and erased.last == "erase 2 cell(s)"
    assert np.array_equal(erased.code[3, 1:3], source[3, 1:3])
    assert erased.code[3, 3, 0] == 1.5 and len(erased.undo) == 3


def test_a_stroke_holds_each_cell_to_its_own_range():
    """Each cell's brush range (issue 28): ``set`` is clipped into the cell's range, ``add``
    never carries a value past it (nor pulls in one already outside), ``erase`` restores the
    source; the words say how many cells a ``set`` held."""
    edit, source = started()
    low = np.zeros(source.shape, np.float32)
    high = np.full(source.shape, 10.0, np.float32)
    low[3, 1, 0], high[3, 1, 0] = 4.0, 4.5  # a narrow cell (its source: 4.4)
    high[3, 2, 0] = 0.1  # a cell whose source (4.6) already lies above its range
    ranges = (low, high)
    row = [(3, 1), (3, 2), (3, 3)]
    painted = edit.paint_stroke(stroke_image(row), "set", 5.0, ranges)
    assert painted.code[3, 1, 0] == 4.5 and painted.code[3, 2, 0] == pytest.approx(0.1)
    assert painted.code[3, 3, 0] == 5.0
    assert painted.last == "set 3 cell(s) (5; 2 held to their cell's range)"
    added = edit.paint_stroke(stroke_image(row), "add", 0.5, ranges)
    assert added.code[3, 1, 0] == 4.5  # 4.4 + 0.5 held at the narrow cell's top
    assert added.code[3, 2, 0] == pytest.approx(source[3, 2, 0])  # not pushed further out
    assert added.code[3, 3, 0] == pytest.approx(source[3, 3, 0] + 0.5)
    lowered = edit.paint_stroke(stroke_image(row), "add", -1.0, ranges)
    assert lowered.code[3, 2, 0] == pytest.approx(source[3, 2, 0] - 1.0)  # back towards it
    erased = painted.paint_stroke(stroke_image(row), "erase", 0.0, ranges)
    assert np.array_equal(erased.code, source)
    with pytest.raises(ValueError, match=r"code's shape\. Received: range shape=\(7, 7\)"):
        edit.paint_stroke(stroke_image(row), "set", 1.0, (low[..., 0], high[..., 0]))


def test_a_stroke_that_paints_nothing_only_clears_the_canvas():
    edit, _ = started()
    edit = edit.set_cell(0, 0, 5.0)
    blank = edit.paint_stroke(np.zeros((280, 280, 4), np.uint8), "set", 1.0)
    assert np.array_equal(blank.code, edit.code) and blank.undo == edit.undo
    assert (blank.changed, blank.last) == (edit.changed, edit.last)  # the last edit stays on show
    assert blank.canvas_version == edit.canvas_version + 1
    assert blank.table_version == edit.table_version


def test_set_cell_paste_table_undo_and_reset():
    edit, source = started()
    one = edit.set_cell(3, 4, 2.5)
    assert list(one.changed) == [(3, 4)] and one.last == "cell (3, 4) = 2.5"
    assert one.code[3, 4, 0] == 2.5 and one.code[3, 4, 1] == source[3, 4, 1]

    typed = one.paste_table({2: {"3": 9.0, "4": None, "5": "x"}, "6": {"0": float("nan")}})
    assert list(typed.changed) == [(2, 3)] and typed.last == "typed 1 value(s)"
    assert typed.code[2, 3, 0] == 9.0 and typed.code[6, 0, 0] == source[6, 0, 0]
    assert typed.table_version == one.table_version  # the table shows its own edit already
    assert typed.canvas_version == one.canvas_version + 1
    assert typed.paste_table({2: {"3": 9.0}}) is typed  # sent again when redrawn: no news

    reset = typed.reset()
    assert np.array_equal(reset.code, source) and reset.last == "reset to the source"
    assert sorted(reset.changed) == [(2, 3), (3, 4)] and len(reset.undo) == 3

    back = reset.undo_last()
    assert np.array_equal(back.code, typed.code) and back.last == "undo"
    assert sorted(back.changed) == [(2, 3), (3, 4)] and len(back.undo) == 2
    assert back.table_version == reset.table_version + 1  # the table shows the old values
    back = back.undo_last().undo_last()
    assert np.array_equal(back.code, source) and not back.undo
    assert back.undo_last() is back  # nothing left to undo
    assert back.reset().undo == ()  # a reset that changes nothing is not an edit


def test_undo_keeps_at_most_its_bound_the_oldest_dropped():
    edit, source = started(undo_limit=3)
    for i in range(10):
        edit = edit.set_cell(0, 0, float(i + 1))
    assert len(edit.undo) == 3
    assert [entry[0][0][0] for entry in edit.undo] == [7.0, 8.0, 9.0]
    for expected in (9.0, 8.0, 7.0):
        edit = edit.undo_last()
        assert edit.code[0, 0, 0] == expected
    assert edit.undo_last() is edit
    assert le.LatentEdit.start(source, "x").undo_limit == le.UNDO_LIMIT == 100
    with pytest.raises(ValueError, match="undo_limit=0"):
        le.LatentEdit.start(source, "x", undo_limit=0)


def test_the_channel_shown_is_the_one_painted():
    edit, source = started()
    second = edit.show_channel(1)
    assert second.show_channel(1) is second
    painted = second.set_cell(1, 1, -4.0)
    assert painted.code[1, 1, 1] == -4.0 and painted.code[1, 1, 0] == source[1, 1, 0]
    assert list(painted.changed) == [(1, 1)]
    with pytest.raises(ValueError, match="channel=2"):
        edit.show_channel(2)


def test_another_source_starts_afresh_and_resume_keeps_an_edit_of_the_same_origin():
    edit, source = started()
    edit = edit.show_channel(1).set_cell(0, 0, 3.0).count_decode().count_decode()
    other = np.zeros((7, 7, 2), np.float32)
    fresh = edit.change_source(other, "run-1|t0|mean")
    assert fresh.origin == "run-1|t0|mean" and np.array_equal(fresh.code, other)
    assert np.array_equal(fresh.source, other) and not fresh.undo
    assert (fresh.changed, fresh.last) == ((), "")
    assert fresh.channel == 1 and fresh.decodes == 2  # carried on
    assert fresh.canvas_version > edit.canvas_version and fresh.table_version > edit.table_version
    assert edit.change_source(np.zeros((4, 4, 1)), "other").channel == 0  # no channel 1 there

    saved = edit.to_dict()
    kept = le.LatentEdit.resume(saved, other, edit.origin)
    assert np.array_equal(kept.code, edit.code) and len(kept.undo) == 1
    moved = le.LatentEdit.resume(saved, other, "run-1|t0|mean")
    assert np.array_equal(moved.code, other) and moved.decodes == 2
    for nothing in (None, {}, {"signature": "old", "code": [], "undo": []}):
        first = le.LatentEdit.resume(nothing, source, "a")
        assert first.origin == "a" and np.array_equal(first.code, source) and first.decodes == 0


def test_the_state_is_plain_data_both_ways():
    import json

    edit, source = started()
    edit = edit.show_channel(1).set_cell(2, 3, 1.25).paste_table({0: {"0": 7.0}}).count_decode()
    data = edit.to_dict()
    back = le.LatentEdit.from_dict(json.loads(json.dumps(data)))  # nothing but plain data
    assert back.to_dict() == data
    assert np.array_equal(back.code, edit.code) and np.array_equal(back.source, source)
    assert back.code.dtype == np.float32 and back.channel == 1 and back.decodes == 1
    assert data["changed"] == [[0, 0]] and isinstance(data["code"][0][0][0], float)
    assert np.array_equal(back.undo_last().undo_last().code, source)
    with pytest.raises(ValueError, match=r"Received: keys=\['code'\]"):
        le.LatentEdit.from_dict({"code": data["code"]})
    with pytest.raises(ValueError, match=r"source.shape=\(7, 7, 1\)"):
        le.LatentEdit(origin="x", source=np.zeros((7, 7, 1)), code=np.zeros((7, 7, 2)))


def test_switching_sources_keeps_each_sources_edit_and_undo():
    """Issue 28: switching the source (a test image, the mean code...) and back lost the edits
    and the undo history of the first. Each source left keeps them, through the page's plain
    data too, up to SHELF_LIMIT sources; a source whose code changed starts afresh."""
    import json

    edit, source = started()
    edit = edit.set_cell(0, 0, 3.0).set_cell(1, 1, 2.0)  # two edits of test image 3
    mean = np.full((7, 7, 2), 0.5, np.float32)
    on_mean = edit.change_source(mean, "run-1|t0|mean").set_cell(2, 2, -1.0)
    assert not np.array_equal(on_mean.code, edit.code) and len(on_mean.undo) == 1
    # back to the first source, through the plain data the page keeps (resume)
    saved = json.loads(json.dumps(on_mean.to_dict()))
    back = le.LatentEdit.resume(saved, source, edit.origin)
    assert np.array_equal(back.code, edit.code) and len(back.undo) == 2
    assert "undo kept" in back.last
    assert np.array_equal(back.undo_last().undo_last().code, source)
    again = back.change_source(mean, "run-1|t0|mean")  # and the mean's edit is still there
    assert np.array_equal(again.code, on_mean.code) and len(again.undo) == 1
    assert np.array_equal(again.undo_last().code, mean)
    # a source whose code is not the one edited before (another run under that name): afresh
    changed = again.change_source(source + 1, edit.origin)
    assert np.array_equal(changed.code, source + 1) and not changed.undo
    # bounded: the oldest sources left go first
    many = edit
    for k in range(le.SHELF_LIMIT + 2):
        many = many.change_source(source + k, f"other:{k}").set_cell(0, 0, 100.0 + k)
    assert len(many.shelf) == le.SHELF_LIMIT
    assert not many.change_source(source, edit.origin).undo  # test image 3 left too long ago
    resumed = many.change_source(source + 3, "other:3")
    assert resumed.code[0, 0, 0] == 103.0 and len(resumed.undo) == 1
