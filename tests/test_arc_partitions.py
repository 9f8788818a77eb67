"""The partition family: grids cut into equal cells by lines (or into blocks), answered from the cells."""

from __future__ import annotations

import numpy as np

from inferscale.arc.partitions import Partition, learn_colour_order, partition_candidates, split
from inferscale.arc.solvers import as_array
from tests.test_arc_families import g
from tests.test_arc_serving import solved_alone

# Two 3x3 cells side by side, cut by a column of 5: the output is 2 where both cells are filled.
BOTH = [
    (g([[1, 1, 0, 5, 1, 0, 0], [0, 1, 0, 5, 0, 1, 1], [1, 0, 0, 5, 1, 0, 1]]), g([[2, 0, 0], [0, 2, 0], [2, 0, 0]])),
    (g([[0, 1, 1, 5, 0, 1, 0], [1, 0, 1, 5, 1, 1, 1], [0, 0, 0, 5, 1, 1, 0]]), g([[0, 2, 0], [2, 0, 2], [0, 0, 0]])),
]
BOTH_TEST = g([[1, 1, 1, 5, 1, 0, 1], [0, 0, 1, 5, 0, 0, 1], [1, 0, 0, 5, 0, 1, 1]])
BOTH_ANSWER = g([[2, 0, 2], [0, 0, 2], [0, 0, 0]])


def test_split_finds_the_cells_between_full_lines_of_one_colour() -> None:
    grid = as_array(g([[1, 0, 8, 0, 2], [8, 8, 8, 8, 8], [0, 3, 8, 4, 0]]))
    p = split(grid)
    assert isinstance(p, Partition) and (p.rows, p.cols, p.line, p.background) == (2, 2, 8, 0)
    assert [c.tolist() for c in p.cells] == [[[1, 0]], [[0, 2]], [[0, 3]], [[4, 0]]]
    assert p.corners == ((0, 0), (0, 3), (2, 0), (2, 3))


def test_split_refuses_grids_without_lines_or_with_cells_of_different_sizes() -> None:
    assert split(as_array(g([[1, 0, 2], [0, 3, 0]]))) is None
    # A column of 5 that leaves cells two and three wide apart.
    assert split(as_array(g([[1, 0, 5, 2, 0, 1], [0, 1, 5, 0, 2, 0]]))) is None


def test_the_cells_filled_positions_are_combined() -> None:
    top = partition_candidates(BOTH, BOTH_TEST)[0]
    assert (top.grid, top.score) == (BOTH_ANSWER, 1.0) and top.rule.startswith("the positions filled in all of the cells")


def test_the_cells_are_laid_over_one_another_in_the_order_learned() -> None:
    # The right cell's 4 lies over the left cell's 3 wherever both are filled.
    train = [
        (g([[3, 3, 0, 1, 4, 0, 0], [0, 3, 0, 1, 0, 4, 4]]), g([[4, 3, 0], [0, 4, 4]])),
        (g([[3, 0, 3, 1, 0, 4, 4], [3, 3, 0, 1, 4, 0, 0]]), g([[3, 4, 4], [4, 3, 0]])),
    ]
    top = partition_candidates(train, g([[3, 3, 3, 1, 4, 0, 4], [0, 0, 3, 1, 0, 4, 0]]))[0]
    assert (top.grid, top.score) == (g([[4, 3, 4], [0, 4, 3]]), 1.0)
    assert "laid over one another" in top.rule and "(1, 0)" in top.rule


def test_an_order_of_colours_is_learned_from_where_they_meet() -> None:
    cells = (np.array([[3, 0], [3, 7]], np.int8), np.array([[4, 4], [0, 4]], np.int8))
    p = Partition(cells, ((0, 0), (0, 3)), 1, 2, 5, 0)
    # 4 over 3, and 7 over 4: the order is 7, 4, 3.
    assert learn_colour_order([(p, np.array([[4, 4], [3, 7]], np.int8), 0)]) == [7, 4, 3]
    # An output that shows a colour none of the cells holds there: no order explains it.
    assert learn_colour_order([(p, np.array([[4, 4], [3, 9]], np.int8), 0)]) is None


def test_the_one_cell_unlike_the_others_is_cut_out() -> None:
    train = [
        (g([[1, 0, 5, 1, 0, 5, 0, 1], [0, 1, 5, 0, 1, 5, 1, 0]]), g([[0, 1], [1, 0]])),
        (g([[2, 2, 5, 0, 2, 5, 2, 2], [0, 0, 5, 2, 0, 5, 0, 0]]), g([[0, 2], [2, 0]])),
    ]
    top = partition_candidates(train, g([[3, 0, 5, 3, 0, 5, 3, 3], [3, 0, 5, 3, 0, 5, 0, 0]]))[0]
    assert (top.grid, top.score) == (g([[3, 3], [0, 0]]), 1.0) and "sharing its pattern" in top.rule


def test_each_cell_becomes_one_output_cell_by_its_count_of_filled_positions() -> None:
    # A cell with two filled positions becomes 1, any other 0.
    train = [
        (g([[6, 6, 8, 6, 0], [0, 0, 8, 0, 0]]), g([[1, 0]])),
        (g([[6, 0, 8, 6, 6], [0, 0, 8, 0, 0]]), g([[0, 1]])),
        (g([[0, 0, 8, 6, 6], [0, 6, 8, 6, 0]]), g([[0, 0]])),
    ]
    top = partition_candidates(train, g([[6, 0, 8, 0, 0], [0, 6, 8, 0, 6]]))[0]
    assert (top.grid, top.score) == (g([[1, 0]]), 1.0) and top.rule.startswith("each cell's filled positions")


def test_the_fullest_cell_is_filled_and_the_others_emptied() -> None:
    train = [
        (g([[1, 0, 5, 1, 1], [0, 0, 5, 1, 0]]), g([[0, 0, 5, 1, 1], [0, 0, 5, 1, 1]])),
        (g([[2, 2, 5, 0, 2], [0, 0, 5, 0, 0]]), g([[2, 2, 5, 0, 0], [2, 2, 5, 0, 0]])),
    ]
    top = partition_candidates(train, g([[0, 3, 5, 3, 3], [0, 0, 5, 0, 3]]))[0]
    assert (top.grid, top.score) == (g([[0, 0, 5, 3, 3], [0, 0, 5, 3, 3]]), 1.0)
    assert "filled positions are the largest: fill, empty the others" in top.rule


def test_each_cell_is_copied_from_the_fullest_by_a_symmetry_learned_per_position() -> None:
    # The left cell is kept; the right one becomes the left one turned upside down.
    train = [
        (g([[1, 2, 5, 0, 0], [0, 3, 5, 0, 0]]), g([[1, 2, 5, 0, 3], [0, 3, 5, 1, 2]])),
        (g([[4, 0, 5, 0, 0], [4, 4, 5, 0, 0]]), g([[4, 0, 5, 4, 4], [4, 4, 5, 4, 0]])),
    ]
    top = partition_candidates(train, g([[6, 6, 5, 0, 0], [7, 0, 5, 0, 0]]))[0]
    assert (top.grid, top.score) == (g([[6, 6, 5, 7, 0], [7, 0, 5, 6, 6]]), 1.0)
    assert top.rule.startswith("each cell copied from the fullest cell: kept, flip rows")


def test_every_cell_becomes_the_fullest_whatever_the_layout() -> None:
    # Two cells in one pair, three in the other: no per-position choice could be learned.
    train = [
        (g([[1, 2, 5, 0, 0], [0, 3, 5, 0, 0]]), g([[1, 2, 5, 1, 2], [0, 3, 5, 0, 3]])),
        (g([[0, 0, 5, 4, 0, 5, 0, 0], [0, 0, 5, 4, 4, 5, 0, 0]]), g([[4, 0, 5, 4, 0, 5, 4, 0], [4, 4, 5, 4, 4, 5, 4, 4]])),
    ]
    top = partition_candidates(train, g([[0, 0], [5, 5], [6, 7], [5, 5], [0, 0]]))[0]
    assert (top.grid, top.score) == (g([[6, 7], [5, 5], [6, 7], [5, 5], [6, 7]]), 1.0)
    assert top.rule == "every cell becomes the fullest cell"


def test_the_cells_colours_are_answered_as_a_mirrored_picture() -> None:
    # Four cells, each of one colour: the output is their colours, left and right swapped.
    train = [
        (g([[1, 1, 8, 2, 0], [8, 8, 8, 8, 8], [0, 3, 8, 4, 4]]), g([[2, 1], [4, 3]])),
        (g([[6, 0, 8, 0, 0], [8, 8, 8, 8, 8], [0, 0, 8, 7, 0]]), g([[0, 6], [7, 0]])),
    ]
    top = partition_candidates(train, g([[9, 0, 8, 0, 0], [8, 8, 8, 8, 8], [2, 2, 8, 0, 1]]))[0]
    assert (top.grid, top.score) == (g([[0, 9], [1, 2]]), 1.0) and top.rule == "each cell's colour, flip columns"


def test_a_grid_without_lines_is_cut_into_blocks_of_the_outputs_size() -> None:
    # The input repeats one block three times across: the answer is the block.
    train = [
        (g([[1, 2, 1, 2, 1, 2], [3, 3, 3, 3, 3, 3]]), g([[1, 2], [3, 3]])),
        (g([[4, 0, 4, 0, 4, 0], [0, 4, 0, 4, 0, 4]]), g([[4, 0], [0, 4]])),
    ]
    top = partition_candidates(train, g([[7, 8, 7, 8, 7, 8], [8, 8, 8, 8, 8, 8]]))[0]
    assert (top.grid, top.score) == (g([[7, 8], [8, 8]]), 1.0)


def test_a_grid_that_repeats_a_block_is_cut_into_its_copies_whichever_way_it_repeats() -> None:
    # Repeated across in one pair, down in the other: no one layout of blocks fits both.
    train = [
        (g([[1, 2, 1, 2], [3, 1, 3, 1]]), g([[1, 2], [3, 1]])),
        (g([[4, 4, 5], [6, 0, 6], [4, 4, 5], [6, 0, 6]]), g([[4, 4, 5], [6, 0, 6]])),
    ]
    top = partition_candidates(train, g([[7], [8], [7], [8], [7], [8]]))[0]
    assert (top.grid, top.score) == (g([[7], [8]]), 1.0)


def test_the_one_cell_without_a_mirror_symmetry_is_cut_out() -> None:
    train = [
        (g([[1, 0, 1], [0, 0, 0], [5, 5, 5], [1, 1, 0], [0, 1, 0]]), g([[1, 1, 0], [0, 1, 0]])),
        (g([[2, 2, 0, 5, 2, 0, 2], [0, 2, 0, 5, 0, 2, 0], [0, 2, 0, 5, 2, 0, 2]]), g([[2, 2, 0], [0, 2, 0], [0, 2, 0]])),
    ]
    top = partition_candidates(train, g([[3, 0, 0, 5, 3, 3, 3], [0, 0, 3, 5, 0, 3, 0], [0, 0, 3, 5, 0, 3, 0]]))[0]
    assert (top.grid, top.score) == (g([[3, 0, 0], [0, 0, 3], [0, 0, 3]]), 1.0) and "mirror symmetries" in top.rule


def test_a_task_whose_inputs_are_not_partitioned_gets_no_candidates() -> None:
    train = [(g([[1, 0], [0, 2]]), g([[2, 0], [0, 1]]))]
    assert partition_candidates(train, g([[3, 0], [0, 4]])) == []


def test_the_largest_partition_a_30_by_30_grid_can_hold_is_answered() -> None:
    # Lines on every other row and column: 225 cells of one position each, every colour.
    rng = np.random.default_rng(0)
    grid = rng.integers(1, 10, (30, 30)).astype(np.int8)
    grid[1::2, :] = 0
    grid[:, 1::2] = 0
    p = split(grid)
    assert p is not None and (p.rows, p.cols) == (15, 15)
    # The output is the first cell; the test input, another such grid, answers its first cell.
    train = [(g(grid.tolist()), g(grid[:1, :1].tolist()))]
    test = grid.copy()
    test[::2, ::2] = rng.integers(1, 10, (15, 15))
    found = partition_candidates(train, g(test.tolist()))
    assert all(0.0 <= c.score <= 1.0 for c in found)
    assert g(test[:1, :1].tolist()) in [c.grid for c in found if c.score == 1.0]


def test_the_partition_model_answers_through_the_router(router) -> None:  # type: ignore[no-untyped-def]
    grid, confidence = solved_alone(router, "arc_partitions", BOTH, BOTH_TEST)
    assert (g(grid), confidence) == (BOTH_ANSWER, 1.0)


def test_a_grid_without_lines_or_repeats_is_cut_into_one_block_per_output_cell() -> None:
    # Each 2x2 block (3x3 in the larger input) holds one coloured cell: the output is those cells.
    train = [
        (g([[1, 0, 0, 0], [0, 0, 0, 2], [0, 0, 4, 0], [3, 0, 0, 0]]), g([[1, 2], [3, 4]])),
        (g([[0, 0, 0, 0, 0, 0], [0, 5, 0, 0, 0, 0], [0, 0, 0, 0, 0, 6], [0, 0, 0, 0, 0, 0], [0, 0, 7, 0, 0, 0], [0, 0, 0, 8, 0, 0]]), g([[5, 6], [7, 8]])),
    ]
    top = partition_candidates(train, g([[0, 0, 0, 0], [9, 0, 0, 1], [0, 2, 0, 0], [0, 0, 0, 3]]))[0]
    assert (top.grid, top.score, top.rule) == (g([[9, 1], [2, 3]]), 1.0, "each cell's colour")
