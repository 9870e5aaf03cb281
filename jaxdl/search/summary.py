"""summary.json's account of a halving or PBT run, from metrics.jsonl's rows and event
rows (jaxdl.search.run).

Every member record gets "stopped_at" (halving: the epoch it stopped; None: it trained
to the end) or "copies" (pbt: [{"epoch", "from", "factors", "hp"}]) and "hp_final".
The selection (best final val headline; never test) is among the members that trained
to the end; with PBT it also carries the selected member's lineage — the members whose
state it holds, epoch by epoch — and the optimizer values along it ("hp_schedule")."""
from __future__ import annotations

from jaxdl.search.run import stopped_by
from jaxdl.search.spec import SearchSpec


def lineage(rows: list[dict], member: int, epochs: int) -> list[dict]:
    """[{"member": j, "from_epoch": a, "to_epoch": b}] oldest first: the member whose
    training epochs a..b the final state of `member` went through (a copy after epoch e
    makes the copier's past before e+1 the donor's)."""
    copies = sorted(((int(r["epoch"]), int(r["member"]), int(r["pbt"]["from"])) for r in rows if "pbt" in r),
                    reverse=True)
    out, who, end = [], member, epochs
    for e, m, src in copies:
        if m == who and e < end:
            out.append({"member": who, "from_epoch": e + 1, "to_epoch": end})
            who, end = src, e
    out.append({"member": who, "from_epoch": 1, "to_epoch": end})
    return out[::-1]


def hp_schedule(rows: list[dict], line: list[dict]) -> list[dict]:
    """[{"epoch": t, key: value}] the optimizer values the lineage trained each epoch with."""
    hp = {(int(r["member"]), int(r["epoch"])): r["hp"] for r in rows if "hp" in r and "member" in r}
    return [{"epoch": t, **hp[(seg["member"], t)]} for seg in line
            for t in range(seg["from_epoch"], seg["to_epoch"] + 1) if (seg["member"], t) in hp]


def records(search: SearchSpec, rows: list[dict], recs: dict, headline: str, higher: bool, epochs: int) -> dict:
    """The runner's {"members", "selection"} (jaxdl.runner.member_records) with the
    schedule's facts added, and the selection, by the val form of `headline`, among the
    members that trained to the end (its test value is reported, never used)."""
    if search.schedule == "none":
        return recs
    by = "val/" + headline.partition("/")[2]
    members = [dict(m) for m in recs["members"]]
    if search.schedule == "halving":
        stopped = stopped_by(rows)
        for m in members:
            m["stopped_at"] = stopped.get(m["member"])
    if search.schedule == "pbt":
        for m in members:
            mine = [r for r in rows if r.get("member") == m["member"]]
            m["copies"] = [{"epoch": int(r["epoch"]), **r["pbt"]} for r in mine if "pbt" in r]
            m["hp_final"] = next((r["hp"] for r in reversed(mine) if "hp" in r), None)
    finished = [m for m in members if m.get("stopped_at") is None and by in m["final"]]
    if not finished:
        return {"members": members, "selection": recs.get("selection")}
    pick = (max if higher else min)(finished, key=lambda m: m["final"][by])
    selection = {"by": by, "member": pick["member"], "replica": pick["replica"], "hparams": pick["hparams"],
                 "val": pick["final"][by], "test": pick["final"].get(headline)}
    if search.schedule == "pbt":
        line = lineage(rows, pick["member"], epochs)
        selection.update(hp_final=pick["hp_final"], lineage=line, hp_schedule=hp_schedule(rows, line))
    return {"members": members, "selection": selection}
