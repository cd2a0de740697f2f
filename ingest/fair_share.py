"""Slots shared fairly among owners: at most `slots` held at once, `per_owner` by one owner.

A pure state machine (no I/O, no clock): `request` takes a slot at once or queues the
caller's ticket; `release` frees one and returns the tickets that now hold a slot.
Waiting owners are served round-robin, one ticket per turn, so an owner with many
waiting tickets (a slow or hostile webhook receiver) gets its share, never the lot.
"""

from __future__ import annotations

from collections import deque


class FairShare[T]:
    """Who holds a slot and who waits for one, by owner."""

    __slots__ = ("_active", "_held", "_per_owner", "_slots", "_waiting")

    def __init__(self, slots: int, per_owner: int) -> None:
        if slots < 1 or per_owner < 1:
            raise ValueError("slots >= 1 and per_owner >= 1 are required")
        self._slots = slots
        self._per_owner = per_owner
        self._held = 0
        self._active: dict[str, int] = {}
        # Owners in turn order (insertion order); each with its tickets, oldest first.
        self._waiting: dict[str, deque[T]] = {}

    @property
    def held(self) -> int:
        return self._held

    @property
    def waiting(self) -> int:
        return sum(len(tickets) for tickets in self._waiting.values())

    def holding(self, owner: str) -> int:
        return self._active.get(owner, 0)

    def request(self, owner: str, ticket: T) -> bool:
        """True: `owner` holds a slot now. False: `ticket` waits its turn."""
        # Slots are granted as soon as they free up, so a free slot means that every
        # owner still waiting is at its own limit: taking it jumps no queue.
        if self._held < self._slots and self._active.get(owner, 0) < self._per_owner:
            self._take(owner)
            return True
        self._waiting.setdefault(owner, deque()).append(ticket)
        return False

    def cancel(self, owner: str, ticket: T) -> bool:
        """Withdraw a waiting ticket; False when it is not waiting (it was granted)."""
        tickets = self._waiting.get(owner)
        if tickets is None or ticket not in tickets:
            return False
        tickets.remove(ticket)
        if not tickets:
            del self._waiting[owner]
        return True

    def release(self, owner: str) -> list[tuple[str, T]]:
        """Free one of `owner`'s slots; the (owner, ticket) pairs that hold a slot now."""
        count = self._active[owner] - 1
        if count:
            self._active[owner] = count
        else:
            del self._active[owner]
        self._held -= 1
        granted: list[tuple[str, T]] = []
        while self._held < self._slots:
            turn = next(
                (o for o in self._waiting if self._active.get(o, 0) < self._per_owner), None
            )
            if turn is None:
                break
            tickets = self._waiting.pop(turn)
            granted.append((turn, tickets.popleft()))
            if tickets:
                self._waiting[turn] = tickets  # to the back of the round
            self._take(turn)
        return granted

    def _take(self, owner: str) -> None:
        self._active[owner] = self._active.get(owner, 0) + 1
        self._held += 1
