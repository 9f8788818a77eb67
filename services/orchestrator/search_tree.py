"""The adaptive search's tree, pure: AB-MCTS over several models' answers, on treequest.

No gRPC. treequest's ``ABMCTSA`` (adaptive-branching Monte Carlo tree search, Inoue et al., 2025;
Sakana AI's Apache-2.0 library) decides at every call where to go: wider (a fresh answer,
expanding the root) or deeper (refining an answer found so far, expanding its node), and which
model asks, by Thompson sampling over the scores the answers earned. Its actions are the search's
members (the plan's models); a node's score is its answer's confidence in [0, 1] (for grids, the
share of training pairs reproduced; for text, the token probability the model declares).

Every member that fits the budget left is first asked once, plainly, cheapest first (a failed call
counts as its turn), before treequest chooses anything: the usual start of a bandit (each arm
pulled once), and the cascade's order. Before a member has answered, treequest's posterior for it
is its prior, the same for every member, so its draws would pick among the untried ones at random,
as blind to their costs as to their scores; within a budget that lets an expensive member that
solves little spend what several cheap ones would. On ARC, with
eleven solvers from 1 to 210 units and a budget of 210, the search that drew at random solved 96.2
tasks of arc-agi-1/training where the cascade solved 128.2 (docs/arc.md).

treequest knows nothing of what a model can do, so this module keeps the tree to calls that can
add something:
- a member that samples (``SAMPLES``) answers anew with a fresh seed each time, its first answer
  being its plain one;
- a member whose answers are ranked candidates and whose seed starts them at a later rank
  (``NEXT_CANDIDATES``, the ARC solvers) is asked for its next candidates instead: its k-th fresh
  answer starts at rank k, while its first answer held more than k candidates (the solver wraps
  around after those);
- any other member (``ONCE``) gives one fresh answer: asked again, it would answer the same;
- only a member that refines expands an answer's node, once per node unless it samples, and its
  own answer only if it revises drafts (a text model): a refiner that weighs its input as
  evidence beside its own would count its own evidence twice;
- a failed call is a node of score 0, never expanded;
- a member that costs more than the budget left is not asked.
treequest proposes from its posteriors; a proposal that cannot run is set aside, never told, and
treequest is asked again, so that after the first round what runs is treequest's choice among the
calls that can.

The final answer is the score-weighted vote of every answer: each label's total score, the largest
winning (among equal totals, the label found first), its best-scoring answer the one returned.
Its confidence is that total divided by the number of answers, so that one answer scoring 0.6
reports 0.6, and three agreeing answers report their mean score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from treequest import ABMCTSA, top_k
from treequest.trial import Trial

from services.orchestrator.registry import GRID, RegisteredModel

SAMPLE = "sample"
REFINE = "refine"

# How a member answers anew after its first answer (see the module's docstring).
SAMPLES = "samples"
NEXT_CANDIDATES = "next_candidates"
ONCE = "once"

# How many of treequest's proposals one call may set aside before it draws among the calls that
# can run itself. Each proposal costs a few Thompson draws per tree level (about a millisecond
# with a dozen members), so this bounds the work one call adds to the event loop.
MAX_PROPOSALS = 16


@dataclass(frozen=True)
class SearchMember:
    """A model the search may call: how it answers anew, whether it refines, and what a call costs."""

    renewal: str
    refines: bool
    # Whether it may refine its own answer: a text model revises its draft.
    refines_own: bool
    cost: float

    @classmethod
    def of(cls, model: RegisteredModel, cost: float) -> SearchMember:
        """What the registry says of ``model``, one of whose calls is expected to cost ``cost``: a
        grid model's seed starts its ranked candidates at a later rank; any other model's seed
        draws a fresh sample."""
        if not model.samples:
            renewal = ONCE
        elif model.answer_kind == GRID:
            renewal = NEXT_CANDIDATES
        else:
            renewal = SAMPLES
        return cls(renewal, model.refines, model.generates_text, cost)


@dataclass(frozen=True)
class Answer:
    """A node of the tree: one call's answer, or its failure."""

    # The call's order among the search's calls, from 0: also its node's expand_idx in treequest's
    # tree, which is told every call once, in order.
    call: int
    # The member (index into the search's members) that answered.
    member: int
    label: str
    score: float
    # How many ranked candidates the answer held: its label and its alternatives.
    candidates: int
    # The answer it refined; None for a fresh answer.
    refined: Answer | None
    failed: bool = False


@dataclass(frozen=True)
class Expansion:
    """A call the search asks for: which member, a fresh answer or the refinement of one, which seed."""

    member: int
    # The answer to refine; None for a fresh answer.
    refined: Answer | None
    # The seed for the model's sampling input; None for its plain answer.
    seed: int | None
    # How many times the member answered the same way before (fresh answers, or refinements of
    # this answer): its sample number, or for NEXT_CANDIDATES the rank its candidates start at.
    order: int
    trial_id: str

    @property
    def action(self) -> str:
        """SAMPLE for a fresh answer (the root's expansion), REFINE for a refinement."""
        return SAMPLE if self.refined is None else REFINE


class TreeSearch:
    """One request's search: treequest's tree of answers, and the calls each member made."""

    def __init__(self, members: Sequence[SearchMember], rng: np.random.Generator) -> None:
        self.members = list(members)
        self._rng = rng
        # Beta posteriors: a score in [0, 1] counts as that fraction of a success.
        self._algo: ABMCTSA[Answer] = ABMCTSA(dist_type="beta")
        self._tree = self._algo.init_tree()
        self._actions = [str(index) for index in range(len(self.members))]
        # Every call's node, failed ones included, in call order.
        self.calls: list[Answer] = []
        # The calls each member made the same way, by (member, the call it refined or None).
        self._made_by: dict[tuple[int, int | None], list[Answer]] = {}

    @property
    def answers(self) -> list[Answer]:
        """The calls that answered, in call order."""
        return [answer for answer in self.calls if not answer.failed]

    def _made(self, member: int, refined: Answer | None) -> list[Answer]:
        """The calls ``member`` made the same way: fresh answers (``refined`` None), or refinements of ``refined``."""
        return self._made_by.get((member, refined.call if refined else None), [])

    def can_run(
        self, member: int, refined: Answer | None, budget_left: float | None = None
    ) -> bool:
        """Whether ``member`` may answer anew (``refined`` None) or refine ``refined``, within the budget left."""
        candidate = self.members[member]
        if budget_left is not None and candidate.cost > budget_left:
            return False
        made = self._made(member, refined)
        if refined is None:
            if candidate.renewal == SAMPLES or not made:
                return True
            first = made[0]
            return (
                candidate.renewal == NEXT_CANDIDATES
                and not first.failed
                and len(made) < first.candidates
            )
        if not candidate.refines or refined.failed:
            return False
        if refined.member == member and not candidate.refines_own:
            return False
        return candidate.renewal == SAMPLES or not made

    def runnable(self, budget_left: float | None = None) -> list[tuple[int, Answer | None]]:
        """Every call that may add something within the budget left: (member, the answer it would
        refine, None for a fresh one)."""
        return [
            (member, refined)
            for member in range(len(self.members))
            for refined in [None, *self.answers]
            if self.can_run(member, refined, budget_left)
        ]

    def propose(self, budget_left: float | None = None) -> Expansion | None:
        """The next call: while some member that fits the budget left has not answered yet, the
        cheapest of them answers plainly; after that, treequest's choice among the calls that can
        run. None when none can."""
        runnable = self.runnable(budget_left)
        if not runnable:
            return None
        untried = [member for member, refined in runnable if refined is None and not self._made(member, None)]
        if untried:
            return self._chosen_here(min(untried, key=lambda member: (self.members[member].cost, member)), None)
        for _ in range(MAX_PROPOSALS):
            trial = self._ask()
            member, refined = (
                int(trial.action),
                self._tree.tree.get_node(trial.node_to_expand).state,
            )
            if self.can_run(member, refined, budget_left):
                return self._expansion(member, refined, trial.trial_id)
        # treequest kept proposing calls that cannot run (members over the budget left, say,
        # while a cheap one fits): one of those that can is drawn instead, as a trial of its own.
        member, refined = runnable[int(self._rng.integers(len(runnable)))]
        return self._chosen_here(member, refined)

    def _chosen_here(self, member: int, refined: Answer | None) -> Expansion:
        """A call this module chose rather than treequest, made a trial of treequest's own, so that
        its answer is told to the tree like any other."""
        node = self._tree.tree.root if refined is None else self._tree.tree.get_node(refined.call)
        # tell() updates the Thompson state of the expanded node, which treequest creates only
        # when a proposal passes through the node.
        self._tree.thompson_states.get_or_create(node, self._actions)
        return self._expansion(
            member, refined, self._tree.trial_store.create_trial(node, str(member)).trial_id
        )

    def _expansion(self, member: int, refined: Answer | None, trial_id: str) -> Expansion:
        order = len(self._made(member, refined))
        return Expansion(member, refined, self._seed(member, order), order, trial_id)

    def _ask(self) -> Trial[Answer]:
        """One proposal of treequest's, its random draws made reproducible by the request's generator.

        treequest draws its Thompson samples from numpy's global generator (scipy's ``rvs`` and
        ``np.random.normal``). Seeding that generator from the request's own, right before the
        ask and restoring it after, makes the draws the request's: ``ask`` is synchronous, so in
        the service's one event loop no other request's search runs between the seeding and the
        draws, and no thread of the orchestrator draws from numpy's global generator.
        """
        saved = np.random.get_state()
        np.random.seed(int(self._rng.integers(2**32)))
        try:
            self._tree, trial = self._algo.ask(self._tree, self._actions)
        finally:
            np.random.set_state(saved)
        return trial

    def _seed(self, member: int, order: int) -> int | None:
        """The seed of a member's call: none for its first (its plain answer), its rank for a member
        offering its next candidates, else a fresh one from the request's generator."""
        if order == 0:
            return None
        if self.members[member].renewal == NEXT_CANDIDATES:
            return order
        return int(self._rng.integers(2**32))

    def observe(
        self, expansion: Expansion, label: str, score: float, candidates: int = 1
    ) -> Answer:
        """Records a call's answer (``candidates`` the ranked candidates it held) and tells treequest its score."""
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"score {score} is outside [0, 1]")
        return self._tell(
            expansion,
            Answer(len(self.calls), expansion.member, label, score, candidates, expansion.refined),
        )

    def fail(self, expansion: Expansion) -> Answer:
        """Records a call that failed: a node of score 0 that is never expanded."""
        return self._tell(
            expansion,
            Answer(len(self.calls), expansion.member, "", 0.0, 0, expansion.refined, failed=True),
        )

    def _tell(self, expansion: Expansion, answer: Answer) -> Answer:
        self._tree = self._algo.tell(self._tree, expansion.trial_id, (answer, answer.score))
        self.calls.append(answer)
        self._made_by.setdefault(
            (answer.member, answer.refined.call if answer.refined else None), []
        ).append(answer)
        return answer

    def answer(self) -> tuple[Answer, float]:
        """The winning label's best-scoring answer, and the search's confidence in the label.

        Raises ValueError before any answer."""
        answers = self.answers
        if not answers:
            raise ValueError("the search has no answer yet")
        totals: dict[str, float] = {}
        first_seen: dict[str, int] = {}
        for answer in answers:
            totals[answer.label] = totals.get(answer.label, 0.0) + answer.score
            first_seen.setdefault(answer.label, answer.call)

        def by_vote(pairs: list[tuple[Answer, float]]) -> list[tuple[Answer, float]]:
            voted = [(a, score) for a, score in pairs if not a.failed]
            return sorted(
                voted,
                key=lambda pair: (
                    -totals[pair[0].label],
                    first_seen[pair[0].label],
                    -pair[1],
                    pair[0].call,
                ),
            )

        [(chosen, _)] = top_k(self._tree, self._algo, 1, ranking_fn=by_vote)
        return chosen, totals[chosen.label] / len(answers)

    def label_weights(self) -> tuple[list[str], list[float]]:
        """Every answer's label and score, for the vote entropy the response reports."""
        answers = self.answers
        return [a.label for a in answers], [a.score for a in answers]
