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
