"""The live feeds' per-event access check: services.access.may vs the inline comparison.

Feed.allows runs once per subscriber per event on the fan-out path. This times the
decision alone (timeit, best of 7, the cost of an empty statement subtracted),
prints a table and writes bench/results/access_check.json. No services needed:
`python -m bench.access_check`.
"""

from __future__ import annotations

import os
import timeit
from datetime import UTC, datetime

from bench.harness import print_table, write_results
from core.events import ReadingEvent
from models.accounts import MemberRole, Role
from services.access import Viewer, may

OWN = "65a000000000000000000001"
OTHER = "65a000000000000000000002"
NUMBER = 3_000_000
REPEAT = 7
# What Feed.allows did before services.access: an `admin` flag, then one comparison.
INLINE = "admin or event.owner_id == viewer_id"
DECISION = 'may(viewer, "read", "reading_stream", event.owner_id)'


def _ns(statement: str, scope: dict[str, object]) -> float:
    best = min(timeit.repeat(statement, globals=scope, number=NUMBER, repeat=REPEAT))
    return best / NUMBER * 1e9


def main() -> None:
    now = datetime.now(UTC)
    cases = [
        # Events name their organization; the viewer's personal one has its own id.
        ("USER, own event", Viewer(OWN, Role.USER, {OWN: MemberRole.OWNER}), OWN),
        ("USER, foreign event", Viewer(OWN, Role.USER, {OWN: MemberRole.OWNER}), OTHER),
        ("ADMIN, any event", Viewer(OTHER + "0", Role.ADMIN), OTHER),
    ]
    load_before = os.getloadavg()
    rows = []
    for name, viewer, owner in cases:
        scope: dict[str, object] = {
            "may": may,
            "viewer": viewer,
            "viewer_id": viewer.id,
            "admin": viewer.role is Role.ADMIN,
            "event": ReadingEvent("device", owner, now, False, ()),
        }
        empty = _ns("pass", scope)
        inline, decision = _ns(INLINE, scope) - empty, _ns(DECISION, scope) - empty
        rows.append({"case": name, "inline_ns": round(inline, 1), "may_ns": round(decision, 1)})
    print_table(
        "Access check per subscriber per event (ns)",
        ["case", "inline (before)", "may()"],
        [[row["case"], row["inline_ns"], row["may_ns"]] for row in rows],
    )
    load_after = os.getloadavg()
    print(f"\nload average before {load_before}, after {load_after}")
    path = write_results(
        "access_check",
        {"load_average_before": load_before, "load_average_after": load_after, "rows": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
