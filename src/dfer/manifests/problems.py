"""Validation problems gathered across all split files and reported together.

A dataset's split files are usually fixed by hand, so stopping at the first bad line would make
the user re-run once per mistake. Readers record every problem with its ``FILE:LINE`` and the
manifest build raises one ``ManifestError`` listing them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: How many problems the error message lists before summarising the rest (all are kept on
#: ``ManifestError.problems``); a wrong ``root`` would otherwise print one line per clip.
MAX_LISTED = 200


@dataclass(frozen=True, order=True)
class Location:
    """Where a record came from: a split file and a 1-based line (None: the file as a whole)."""

    file: str
    line: int | None = None

    def __str__(self) -> str:
        return self.file if self.line is None else f"{self.file}:{self.line}"


class ManifestError(ValueError):
    """The split files of a dataset have problems; ``problems`` holds each ``FILE:LINE: ...``."""

    def __init__(self, dataset: str, problems: list[str]):
        self.dataset = dataset
        self.problems = list(problems)
        listed = self.problems[:MAX_LISTED]
        lines = [f"{len(self.problems)} problem(s) in the split files of dataset {dataset!r}:"]
        lines += [f"  {p}" for p in listed]
        if len(self.problems) > len(listed):
            lines.append(f"  ... and {len(self.problems) - len(listed)} more")
        super().__init__("\n".join(lines))


@dataclass
class Problems:
    """Collector of ``(location, message)`` pairs."""

    items: list[tuple[Location, str]] = field(default_factory=list)

    def add(self, where: Location, message: str) -> None:
        self.items.append((where, message))

    def __len__(self) -> int:
        return len(self.items)

    def messages(self) -> list[str]:
        """``FILE:LINE: problem`` strings, in the order the problems were found."""
        return [f"{where}: {message}" for where, message in self.items]

    def raise_if_any(self, dataset: str) -> None:
        if self.items:
            raise ManifestError(dataset, self.messages())


@dataclass
class Exclusions:
    """Lines of a split file whose image is not part of the dataset, by reason, with counts.

    Not problems: the official annotation files of the static datasets list images that are
    no expression of the dataset (AffectNet's None / Uncertain / Non-Face, FERPlus images
    without a majority), and the published protocols leave them out. Each is counted, so a
    run can say how many it left out and why (the manifest's ``excluded`` metadata).
    """

    counts: dict[str, int] = field(default_factory=dict)
    #: the first few ``FILE:LINE`` of each reason, for the log
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, where: Location, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < 3:
            shown.append(str(where))

    def __len__(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``unknown majority: 12, NF majority: 3``, reasons in a stable order."""
        return ", ".join(f"{r}: {n}" for r, n in sorted(self.counts.items()))
