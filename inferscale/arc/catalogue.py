"""The ARC solvers a model's config may name in its "solver" parameter, pure: one family each, the
program search once per depth. The Triton adapter serves them; the cost benchmark times them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from inferscale.arc import (
    counting,
    enclosure,
    neighbourhood,
    object_transforms,
    objects,
    partitions,
    programs,
    rays,
    solvers,
    stamps,
    tiling,
)
from inferscale.arc.solvers import Candidate
from inferscale.arc.tasks import Grid

Solver = Callable[[Sequence[tuple[Grid, Grid]], Grid], list[Candidate]]

SOLVERS: dict[str, Solver] = {
    "geometry": solvers.geometric_candidates,
    "tiling": tiling.tiling_candidates,
    "objects": objects.object_candidates,
    "programs_1": programs.depth_1,
    "programs_2": programs.depth_2,
    "programs_3": programs.depth_3,
    "object_transforms": object_transforms.object_transform_candidates,
    "rays": rays.ray_candidates,
    "enclosure": enclosure.enclosure_candidates,
    "counting": counting.counting_candidates,
    "neighbourhood": neighbourhood.neighbourhood_candidates,
    "partitions": partitions.partition_candidates,
    "stamps": stamps.stamp_candidates,
}
