"""Union-find over table aliases: which chunked tables are joined chunk-locally so far."""

from __future__ import annotations


class Union:
    """Union-find over the chunked aliases (the components are chunk-locally joined)."""

    def __init__(self, aliases: list[str]) -> None:
        self.parent = {a: a for a in aliases}

    def find(self, a: str) -> str:
        while self.parent[a] != a:
            a = self.parent[a]
        return a

    def join(self, a: str, b: str) -> bool:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        self.parent[rb] = ra
        return True

    def alone(self, a: str) -> bool:
        return all(self.find(b) != self.find(a) for b in self.parent if b != a)

    def roots(self) -> set[str]:
        return {self.find(a) for a in self.parent}
