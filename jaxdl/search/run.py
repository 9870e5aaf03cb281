"""SearchRun: what the one loop (jaxdl.train.loop.train_loop) trains a halving or PBT
population with: a Recorder around the run's RunContext plus the `schedule` hook.

The loop knows members only by their slot on the state's leading axis. SearchRun keeps
`alive` (slot -> member id, ascending) and writes rows under member ids, so a member's
rows stay its own after halving drops others. Each decision writes one event row per
member it ranked into metrics.jsonl, at the decision's epoch (before that epoch's
checkpoint, so a resume truncates and keeps them with the checkpoint):

    halving: {"epoch", "step", "member", "halving": {"kept": bool, "rank": r, "of": n}}
    pbt:     {"epoch", "step", "member", "pbt": {"from": j, "factors": {key: f}, "hp": {key: v}}}
             (only the members that copied; "from" is the member whose state they copied)

With PBT every member row also carries "hp": {key: value} — the optimizer values that
member trained that epoch with — so its hyperparameter schedule is in metrics.jsonl.
Resume needs nothing beyond the run dir: halving's survivors at the newest checkpoint
are the members no event row up to it stopped, and PBT's values are in the restored
optimizer state; PBT's keys are functions of (seed, epoch) (schedules.pbt_key)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxdl.search import hparams, schedules
from jaxdl.search.spec import OPTIM_KEYS, SearchSpec, rung_sizes


def take(state, slots):
    """The member-stacked state of the members in `slots` only (every leaf [M, ...] -> [len, ...]).
    Gathered on the host and put back with jax.device_put (a device gather, or jnp.asarray
    of a host array, would compile a program per leaf and member count on the rung's
    critical path); the loop places the result again. Bit-exact."""
    idx = np.asarray(slots, np.int32)
    if jax.process_count() > 1:          # leaves not all addressable here: gather on device
        return jax.tree.map(lambda x: x[jnp.asarray(idx)], state)
    return jax.device_put(jax.tree.map(lambda x: np.asarray(x)[idx], state))


def stopped_by(rows: list[dict], upto: int | None = None) -> dict[int, int]:
    """{member: the epoch halving stopped it} from metrics.jsonl's event rows (up to `upto`)."""
    return {int(r["member"]): int(r["epoch"]) for r in rows
            if "halving" in r and not r["halving"]["kept"] and (upto is None or r["epoch"] <= upto)}


class SearchRun:
    """A Recorder (jaxdl.train.loop) for a population with population.schedule set.

    ctx: the run's RunContext; members: the member count at the start; epochs: the run's;
    score: the metric decisions rank on (the val headline, never test); higher: its
    direction."""

    def __init__(self, ctx, search: SearchSpec, *, members: int, epochs: int, seed: int, score: str,
                 higher: bool):
        self.ctx, self.search, self.epochs, self.seed = ctx, search, epochs, seed
        self.score, self.higher = score, higher
        self.checkpoint_every = ctx.checkpoint_every
        self.members = members
        self.alive = list(range(members))
        self.keys = tuple(k for k in OPTIM_KEYS if k in search.varied) if search.schedule == "pbt" else ()
        self.hp = None        # pbt: {key: [n] host values} the members train the next epoch with
        self.step = 0         # the step of the epoch logged last

    # Recorder: what the RunContext does, under member ids
    def rows(self) -> list[dict]:
        return self.ctx.rows()

    def last_checkpoint(self):
        return self.ctx.last_checkpoint()

    def stop_requested(self):
        return self.ctx.stop_requested()

    def save_checkpoint(self, epoch: int, state, **progress) -> None:
        self.ctx.save_checkpoint(epoch, state, **progress)

    def resume(self, state):
        """The RunContext's resume into a state of the members alive at its newest checkpoint."""
        last = self.ctx.last_checkpoint()
        if last is not None and self.search.schedule == "halving":
            gone = stopped_by(self.ctx.metrics.read(), last)
            self.alive = [m for m in self.alive if m not in gone]
            state = take(state, self.alive)
        state, start, wall = self.ctx.resume(state)
        if self.keys:
            self.hp = {k: np.asarray(v).tolist() for k, v in hparams.read(state, self.keys).items()}
        return state, start, wall

    def log(self, row: dict, member_rows: list[dict]) -> None:
        self.step = row["step"]
        out = []
        for r in member_rows:
            slot = r["member"]
            r = {**r, "member": self.alive[slot]}
            if self.hp is not None:
                r["hp"] = {k: v[slot] for k, v in self.hp.items()}
            out.append(r)
        self.ctx.log(row, out)

    def counts_ahead(self) -> tuple[int, ...]:
        """The member counts halving cuts the state to, rung by rung (the loop compiles their
        programs ahead); () for PBT (its member count never changes)."""
        if self.search.schedule != "halving":
            return ()
        out, n = [], len(self.alive)
        for _ in range(self.search.every, self.epochs, self.search.every):
            n = schedules.kept(n, self.search.keep)
            out.append(n)
        return tuple(out)

    def group_size(self, platform: str) -> int | None:
        """How many members halving trains at once (population.group), for train_loop's
        `group`: g (every rung runs ceil(n / g) groups of g through the programs compiled
        once for g) or None (a rung trains all its members at once: one program per rung
        count, compiled ahead, SearchRun.counts_ahead). None for PBT and plain populations.
        auto: on CPU the last rung's member count (at least 2): a CPU's time per
        member-epoch hardly depends on how many members a program holds (2 to 16 members
        within 1.2x at the search study's setting; 1 alone 1.9x), so groups cost no
        throughput and a rung compiles nothing, where a rung's own program would compile on
        the cores that train; elsewhere (and across processes) None: an accelerator runs
        more members in one program at about the cost of fewer, and compiles on the host's
        spare cores."""
        g = self.search.group
        if self.search.schedule != "halving" or g == "all":
            return None
        if g == "auto":
            rungs = rung_sizes(self.search, self.members, self.epochs)
            if platform != "cpu" or jax.process_count() > 1 or not rungs:
                return None
            return min(self.members, max(2, rungs[-1][1]))
        if jax.process_count() > 1:
            raise ValueError(f"population.group={g}: a run over {jax.process_count()} processes trains every "
                             f"rung at once; set population.group=auto or population.group=all")
        return int(g)

    def record(self, platform: str) -> dict:
        """summary.json's "search": the schedule's settings; halving's with the group it trained in."""
        out = self.search.summary()
        if self.search.schedule == "halving":
            out["group"] = self.group_size(platform) or "all"
        return out

    def schedule(self, epoch: int, state, per_member: dict):
        """The loop's hook after `epoch` (completed epochs): a decision every `every` epochs
        before the last. -> (state, per_member) of the members that go on."""
        if epoch % self.search.every or epoch >= self.epochs:
            return state, per_member
        if self.score not in per_member:
            raise ValueError(f"population.schedule={self.search.schedule} ranks members on {self.score}, which "
                             f"this task does not report; it needs a val split")
        scores = np.asarray(per_member[self.score], np.float64)
        if self.search.schedule == "halving":
            return self._halve(epoch, state, per_member, scores)
        return self._pbt(epoch, state, scores), per_member

    def _halve(self, epoch, state, per_member, scores):
        keep = schedules.survivors(scores, self.search.keep, self.higher)
        rank = np.empty(len(scores), int)
        rank[schedules.ranking(scores, self.higher, np)] = np.arange(len(scores))
        self.ctx.metrics.append(*[{"epoch": epoch, "step": self.step, "member": m,
                                   "halving": {"kept": bool(s in keep), "rank": int(rank[s]), "of": len(scores)}}
                                  for s, m in enumerate(self.alive)])
        self.alive = [self.alive[s] for s in keep]
        per_member = {k: [v[s] for s in keep] if isinstance(v, list) and len(v) == len(scores) else v
                      for k, v in per_member.items()}
        return take(state, keep), per_member

    def _pbt(self, epoch, state, scores):
        n = int(np.floor(len(scores) * self.search.truncate))
        state, src, factors = schedules.exploit_explore(
            state, jnp.asarray(scores, jnp.float32), schedules.pbt_key(self.seed, epoch),
            jnp.asarray(self.search.perturb, jnp.float32), n=n, keys=self.keys, higher=self.higher)
        src = np.asarray(src)
        factors = {k: np.asarray(v).tolist() for k, v in factors.items()}
        self.hp = {k: np.asarray(v).tolist() for k, v in hparams.read(state, self.keys).items()}
        self.ctx.metrics.append(*[{"epoch": epoch, "step": self.step, "member": self.alive[s],
                                   "pbt": {"from": self.alive[int(src[s])],
                                           "factors": {k: f[s] for k, f in factors.items()},
                                           "hp": {k: v[s] for k, v in self.hp.items()}}}
                                  for s in range(len(src)) if src[s] != s])
        return state
