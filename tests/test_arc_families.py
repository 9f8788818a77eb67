"""The ARC solver families, pure: each finds its kind of rule on hand-made tasks and scores it on the pairs."""

from __future__ import annotations

import numpy as np
import pytest

from inferscale.arc import programs
from inferscale.arc.objects import object_candidates
from inferscale.arc.programs import depth_1, depth_2, program_candidates
from inferscale.arc.solvers import as_grid
from inferscale.arc.tiling import repair_by_period, repair_by_symmetry, tiling_candidates
from services.orchestrator.aggregation import Offered, alternatives_to, best_score, rank_offered


def g(rows: list[list[int]]):  # type: ignore[no-untyped-def]
    return as_grid(np.array(rows))


def best(candidates):  # type: ignore[no-untyped-def]
    assert candidates, "the solver found no candidate"
    return candidates[0]


def test_tiling_learns_a_symmetry_per_tile() -> None:
    # Output: the input, then its left-right mirror, side by side.
    train = [(g([[1, 2], [3, 4]]), g([[1, 2, 2, 1], [3, 4, 4, 3]])), (g([[5, 0], [0, 6]]), g([[5, 0, 0, 5], [0, 6, 6, 0]]))]
    top = best(tiling_candidates(train, g([[7, 8], [9, 0]])))
    assert top.grid == g([[7, 8, 8, 7], [9, 0, 0, 9]]) and top.score == 1.0
    assert top.rule == "tile identity/flip columns"


def test_tiling_finds_the_fractal_and_the_block_reduction() -> None:
    fractal = [(g([[1, 0], [0, 1]]), g([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]))]
    assert best(tiling_candidates(fractal, g([[2, 2], [0, 0]]))).grid == g([[2, 2, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    shrink = [(g([[3, 3, 0, 0], [3, 3, 0, 0]]), g([[3, 0]])), (g([[0, 0, 4, 4], [0, 0, 4, 4]]), g([[0, 4]]))]
    top = best(tiling_candidates(shrink, g([[5, 5, 5, 5], [5, 5, 5, 5]])))
    assert top.grid == g([[5, 5]]) and top.score == 1.0


def test_tiling_lays_the_inverted_input_at_the_cells_a_fractal_names() -> None:
    # Each empty cell of the input becomes a copy of the input with its two colours swapped.
    train = [
        (g([[1, 0], [0, 0]]), g([[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 0, 1], [1, 1, 1, 1]])),
        (g([[0, 2], [2, 2]]), g([[2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])),
    ]
    top = best(tiling_candidates(train, g([[3, 3], [0, 3]])))
    assert top.rule == "inverted fractal at empty cells" and top.score == 1.0
    assert top.grid == g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [3, 0, 0, 0]])


def test_tiling_places_copies_at_the_rarest_colour() -> None:
    train = [
        (g([[1, 2], [2, 0]]), g([[1, 2, 0, 0], [2, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])),
        (g([[4, 4], [4, 3]]), g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 4, 4], [0, 0, 4, 3]])),
    ]
    top = best(tiling_candidates(train, g([[6, 5], [6, 0]])))
    assert top.rule == "fractal at the rarest colour"
    assert top.grid == g([[0, 0, 6, 5], [0, 0, 6, 0], [0, 0, 0, 0], [0, 0, 0, 0]])


def test_tiling_places_copies_at_the_cells_of_one_colour() -> None:
    # Copies go where the input holds 2, whichever colour is rarest.
    train = [
        (g([[2, 1], [1, 1]]), g([[2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])),
        (g([[1, 2], [2, 2]]), g([[0, 0, 1, 2], [0, 0, 2, 2], [1, 2, 1, 2], [2, 2, 2, 2]])),
    ]
    top = best(tiling_candidates(train, g([[1, 1], [1, 2]])))
    assert (top.score, top.rule) == (1.0, "fractal at colour 2")
    assert top.grid == g([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 2]])


def test_tiling_tiles_the_inverted_input() -> None:
    train = [(g([[1, 0, 0]]), g([[0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1]])), (g([[2, 2, 0]]), g([[0, 0, 2, 0, 0, 2], [0, 0, 2, 0, 0, 2]]))]
    top = best(tiling_candidates(train, g([[3, 3, 0]])))
    assert top.rule == "tile inverted identity/identity/identity/identity"
    assert top.grid == g([[0, 0, 3, 0, 0, 3], [0, 0, 3, 0, 0, 3]])


def test_tiling_learns_the_block_each_colour_becomes() -> None:
    train = [(g([[5, 0]]), g([[1, 2, 0, 0], [2, 1, 0, 0]])), (g([[0, 5], [5, 5]]), g([[0, 0, 1, 2], [0, 0, 2, 1], [1, 2, 1, 2], [2, 1, 2, 1]]))]
    top = best(tiling_candidates(train, g([[5], [0]])))
    assert top.rule == "scale up by learned blocks" and top.grid == g([[1, 2], [2, 1], [0, 0], [0, 0]])
    # A colour no training pair showed could become any block: no answer by this rule.
    assert all(c.rule != "scale up by learned blocks" for c in tiling_candidates(train, g([[7, 0]])))


def test_tiling_scales_up_by_the_number_of_colours_the_input_holds() -> None:
    train = [
        (g([[1, 0], [0, 0]]), g([[1, 0], [0, 0]])),
        (g([[1, 2], [0, 0]]), g([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 0, 0], [0, 0, 0, 0]])),
    ]
    top = best(tiling_candidates(train, g([[3, 0, 4], [0, 5, 0]])))
    assert top.rule == "scale up by its colours" and np.array(top.grid).shape == (6, 9)
    assert top.grid[0][:3] == (3, 3, 3) and top.grid[3][3:6] == (5, 5, 5)


def test_a_shape_is_completed_by_both_mirrors_about_its_own_centre() -> None:
    # Each shape lacks cells its two mirrors (about the centre of its box, not the grid's) give.
    train = [
        (g([[0, 0, 0, 0, 0], [0, 1, 2, 0, 0], [0, 2, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]]),
         g([[0, 0, 0, 0, 0], [0, 1, 2, 1, 0], [0, 2, 0, 2, 0], [0, 1, 2, 1, 0], [0, 0, 0, 0, 0]])),
        (g([[3, 0, 3, 0], [0, 0, 4, 0], [3, 0, 0, 0], [0, 0, 0, 0]]), g([[3, 4, 3, 0], [4, 0, 4, 0], [3, 4, 3, 0], [0, 0, 0, 0]])),
    ]
    top = best(tiling_candidates(train, g([[0, 0, 0, 0], [0, 5, 6, 0], [0, 6, 0, 0], [0, 5, 0, 5]])))
    # (Its quarter turns complete these square shapes alike.)
    assert top.score == 1.0 and top.rule.startswith("completed by") and top.rule.endswith("about its content's centre")
    assert top.grid == g([[0, 0, 0, 0], [0, 5, 6, 5], [0, 6, 0, 6], [0, 5, 6, 5]])


def test_a_masked_region_is_repaired_from_the_symmetry_or_the_period_the_rest_obeys() -> None:
    symmetric = np.array([[1, 2, 2, 1], [3, 9, 4, 3], [3, 4, 4, 3], [1, 2, 2, 1]])
    assert repair_by_symmetry(symmetric, 9)[1, 1] == 4
    periodic = np.array([[1, 2, 1, 2, 1, 2], [3, 4, 3, 9, 9, 4], [1, 2, 1, 2, 1, 2]])
    assert repair_by_period(periodic, 9).tolist() == [[1, 2, 1, 2, 1, 2], [3, 4, 3, 4, 3, 4], [1, 2, 1, 2, 1, 2]]
    # The mask colour (9) is learned from the pairs: in every input, in no output.
    train = [(g([[1, 2, 1, 2], [9, 9, 1, 2]]), g([[1, 2, 1, 2], [1, 2, 1, 2]])), (g([[5, 6, 5, 6], [5, 6, 9, 6]]), g([[5, 6, 5, 6], [5, 6, 5, 6]]))]
    assert best(tiling_candidates(train, g([[7, 8, 7, 8], [7, 9, 9, 8]]))).grid == g([[7, 8, 7, 8], [7, 8, 7, 8]])


def test_objects_learns_which_object_to_cut_out() -> None:
    # The largest object, whatever its colour or place.
    train = [
        (g([[1, 0, 0, 0], [0, 0, 2, 2], [0, 0, 2, 2]]), g([[2, 2], [2, 2]])),
        (g([[0, 3, 3, 3], [0, 0, 0, 0], [4, 0, 0, 0]]), g([[3, 3, 3]])),
    ]
    top = best(object_candidates(train, g([[5, 5, 0], [5, 0, 0], [0, 0, 6]])))
    assert top.grid == g([[5, 5], [5, 0]]) and top.score == 1.0 and top.rule.startswith("largest")


def test_objects_cuts_the_inside_of_a_frame() -> None:
    train = [(g([[0, 0, 0, 0], [0, 8, 8, 8], [0, 8, 3, 8], [0, 8, 8, 8]]), g([[3]])), (g([[8, 8, 8, 0], [8, 4, 8, 0], [8, 8, 8, 0]]), g([[4]]))]
    assert best(object_candidates(train, g([[8, 8, 8], [8, 6, 8], [8, 8, 8]]))).grid == g([[6]])


def test_objects_cuts_the_inside_of_the_largest_frame_whatever_its_colour() -> None:
    # Each frame has its own colour, and noise of other colours lies around it.
    train = [
        (g([[1, 0, 0, 0, 2], [0, 4, 4, 4, 4], [0, 4, 3, 1, 4], [2, 4, 4, 4, 4]]), g([[3, 1]])),
        (g([[7, 7, 7, 1], [7, 5, 7, 0], [7, 7, 7, 3]]), g([[5]])),
    ]
    top = best(object_candidates(train, g([[0, 2, 0, 0], [6, 6, 6, 1], [6, 9, 6, 0], [6, 8, 6, 1], [6, 6, 6, 0]])))
    assert top.grid == g([[9], [8]]) and top.rule == "inside the largest frame of one colour"


def test_objects_learns_a_window_at_a_fixed_place_from_a_corner() -> None:
    # The output is the 2x2 window one row down from the top-right corner, whatever the size.
    train = [
        (g([[0, 0, 0, 0], [1, 2, 3, 4], [5, 6, 7, 8]]), g([[3, 4], [7, 8]])),
        (g([[9, 9, 9], [1, 5, 6], [2, 7, 8], [3, 3, 3]]), g([[5, 6], [7, 8]])),
    ]
    top = best(object_candidates(train, g([[0, 0, 0, 0, 0], [1, 1, 1, 2, 3], [1, 1, 1, 4, 5]])))
    assert top.grid == g([[2, 3], [4, 5]]) and top.rule == "the 2x2 window 1 rows and 0 columns in from the top right"


def test_objects_cuts_the_object_a_marker_touches_without_the_marker() -> None:
    train = [
        (g([[0, 0, 0, 0, 0], [0, 5, 0, 0, 0], [0, 1, 0, 2, 2], [1, 1, 0, 2, 0]]), g([[0, 1], [1, 1]])),
        (g([[3, 3, 0, 0], [0, 3, 0, 5], [0, 0, 0, 4], [0, 0, 4, 4]]), g([[0, 4], [4, 4]])),
    ]
    top = best(object_candidates(train, g([[0, 0, 0, 0], [6, 0, 0, 5], [6, 0, 7, 7], [0, 0, 0, 7]])))
    assert top.grid == g([[7, 7], [0, 7]]) and top.rule == "the object marked by colour 5, without the marker"


def test_objects_cuts_the_object_holding_a_marker_and_paints_the_marker_in_its_colour() -> None:
    train = [
        (g([[0, 0, 0, 0, 0], [0, 3, 3, 0, 2], [0, 3, 8, 0, 2], [0, 0, 0, 0, 0]]), g([[3, 3], [3, 3]])),
        (g([[4, 8, 4, 0], [0, 4, 0, 0], [0, 0, 0, 6], [0, 0, 6, 6]]), g([[4, 4, 4], [0, 4, 0]])),
    ]
    top = best(object_candidates(train, g([[0, 0, 0, 0], [7, 0, 1, 8], [7, 0, 1, 0], [0, 0, 0, 0]])))
    assert top.grid == g([[1, 1], [1, 0]]) and top.rule == "the object marked by colour 8, the marker in its colour"


def test_objects_cuts_the_only_mirror_symmetric_object() -> None:
    train = [
        (g([[1, 1, 0, 0, 0], [0, 1, 0, 2, 2], [0, 0, 0, 2, 2], [3, 0, 0, 0, 0], [3, 3, 0, 0, 0]]), g([[2, 2], [2, 2]])),
        (g([[4, 4, 4, 0], [0, 4, 0, 0], [0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 0]]), g([[4, 4, 4], [0, 4, 0]])),
    ]
    top = object_candidates(train, g([[7, 0, 0, 0, 0], [7, 7, 0, 8, 0], [0, 0, 8, 8, 8], [9, 9, 0, 0, 0], [0, 9, 0, 0, 0]]))
    assert g([[0, 8, 0], [8, 8, 8]]) in [c.grid for c in top[:2]]
    assert any(c.rule.startswith("only mirror-symmetric") for c in top if c.grid == g([[0, 8, 0], [8, 8, 8]]))


def test_objects_of_one_size_are_laid_side_by_side_along_their_spread() -> None:
    # Two 2x2 objects spread across are laid left to right, spread down laid top to bottom.
    train = [
        (g([[1, 1, 0, 0, 0], [1, 0, 0, 2, 0], [0, 0, 0, 2, 2], [0, 0, 0, 0, 0]]), g([[1, 1, 2, 0], [1, 0, 2, 2]])),
        (g([[0, 3, 0], [3, 3, 0], [0, 0, 0], [0, 4, 4], [0, 4, 0]]), g([[0, 3], [3, 3], [4, 4], [4, 0]])),
    ]
    top = object_candidates(train, g([[0, 0, 0, 0, 0, 0], [5, 5, 0, 0, 6, 0], [0, 5, 0, 0, 6, 6]]))[0]
    assert (top.score, top.rule) == (1.0, "the objects laid side by side, along their spread")
    assert top.grid == g([[5, 5, 6, 0], [0, 5, 6, 6]])


def test_a_deeper_program_search_finds_what_a_shallower_one_cannot() -> None:
    # Flip upside down, then scale up by 2: two primitives.
    train = [(g([[1, 2], [0, 0]]), g([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 2, 2], [1, 1, 2, 2]])), (g([[3], [0]]), g([[0, 0], [0, 0], [3, 3], [3, 3]]))]
    test = g([[0, 4], [5, 0]])
    expected = g([[5, 5, 0, 0], [5, 5, 0, 0], [0, 0, 4, 4], [0, 0, 4, 4]])
    assert best(depth_1(train, test)).score < 1.0
    top = best(depth_2(train, test))
    assert top.grid == expected and top.score == 1.0 and "then" in top.rule
    # One candidate per distinct grid, best first.
    found = program_candidates(train, test, 2)
    assert len({c.grid for c in found}) == len(found)
    assert [c.score for c in found] == sorted((c.score for c in found), reverse=True)


def test_the_last_depth_runs_only_programs_whose_training_results_can_have_the_outputs_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The scaled-up task above: at depth 1, which nothing extends, a program whose training
    # results keep the inputs' sizes cannot score; it is set aside without running on the test input.
    train = [(g([[1, 2], [0, 0]]), g([[0, 0, 0, 0], [0, 0, 0, 0], [1, 1, 2, 2], [1, 1, 2, 2]])), (g([[3], [0]]), g([[0, 0], [0, 0], [3, 3], [3, 3]]))]
    test = g([[0, 4], [5, 0]])
    shallow = programs.search(train, test, 1)
    assert shallow.pruned > 0 and all(c.score > 0 for c in shallow.candidates)
    ran = []
    original = programs._Applied.__call__

    def recording(self, step, grid):  # type: ignore[no-untyped-def]
        ran.append((step, grid.shape))
        return original(self, step, grid)

    monkeypatch.setattr(programs._Applied, "__call__", recording)
    programs.search(train, test, 1)
    steps = [name for name, _ in programs.primitives(train)]
    scale_up, turn = steps.index("scale up 2"), steps.index("rotate 90")
    # Scaling up by 2 reaches the outputs' size, and runs on all three inputs; a quarter turn
    # does not, and never meets the 2 by 2 test input (it does meet the 2 by 2 training input).
    assert sum(1 for step, _ in ran if step == scale_up) == 3
    assert sum(1 for step, _ in ran if step == turn) == 2


def test_a_search_that_remembers_nothing_finds_what_one_that_remembers_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    # Grids of the same cells in other shapes ([1, 2, 3, 4] as 1x4, 2x2, 4x1) must not share results.
    train = [(g([[1, 2, 3, 4]]), g([[4, 3, 2, 1]])), (g([[1, 2], [3, 4]]), g([[2, 1], [4, 3]])), (g([[1], [2], [3], [4]]), g([[1], [2], [3], [4]]))]
    test = g([[5, 6, 7], [8, 9, 1]])
    remembered = programs.search(train, test, 2)
    monkeypatch.setattr(programs, "MAX_REMEMBERED", 0)
    assert programs.search(train, test, 2) == remembered and remembered.candidates[0].score == 1.0


def test_gravity_drops_every_filled_cell_to_the_side_in_its_order() -> None:
    grid = np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 0]], dtype=np.int8)
    assert programs.gravity(grid, 0).tolist() == [[0, 0, 0], [0, 0, 0], [1, 0, 0], [4, 3, 2]]
    assert programs.gravity(grid, 2).tolist() == [[1, 3, 2], [4, 0, 0], [0, 0, 0], [0, 0, 0]]
    # One quarter turn to the left falls to the left, three to the right (the primitives' names).
    assert programs.gravity(grid, 1).tolist() == [[1, 2, 0], [3, 0, 0], [4, 0, 0], [0, 0, 0]]
    assert programs.gravity(grid, 3).tolist() == [[0, 1, 2], [0, 0, 3], [0, 0, 4], [0, 0, 0]]
    names = [name for name, _ in programs.primitives([(g([[1]]), g([[1]]))]) if name.startswith("gravity")]
    assert names == ["gravity down", "gravity left", "gravity up", "gravity right"]


def test_the_rankings_of_offered_candidates_differ_as_their_rules_say() -> None:
    # Two members give "A" as their own answer at 0.6; one gives "B" at 1.0 and "A" second.
    offered = [
        Offered("A", 0.6, 1.0, 0, 0),
        Offered("A", 0.6, 1.0, 1, 0),
        Offered("B", 1.0, 1.0, 2, 0),
        Offered("A", 0.5, 1.0, 2, 1),
        Offered("C", 0.9, 1.0, 1, 1),
    ]
    assert rank_offered(offered, "best_score") == [("B", 1.0), ("C", 0.9), ("A", 0.6)]
    assert [label for label, _ in rank_offered(offered, "plurality")] == ["A", "B", "C"]
    assert [label for label, _ in rank_offered(offered, "score_vote")] == ["A", "B", "C"]  # 1.7 > 1.0 > 0.9
    combined = best_score(offered)
    assert (combined.label, combined.confidence) == ("B", 1.0)
    assert alternatives_to("B", offered, "best_score") == [("C", 0.9), ("A", 0.6)]


def test_best_score_breaks_ties_by_support_then_by_the_earliest_member() -> None:
    tied = [Offered("A", 1.0, 1.0, 0, 0), Offered("B", 1.0, 1.0, 1, 0), Offered("B", 1.0, 1.0, 2, 1)]
    assert best_score(tied).label == "B"
    assert best_score(tied[:2]).label == "A"
    # A member that lists an answer twice supports it once.
    assert best_score([Offered("A", 1.0, 1.0, 0, 0), Offered("B", 1.0, 1.0, 1, 0), Offered("B", 1.0, 1.0, 1, 1)]).label == "A"
