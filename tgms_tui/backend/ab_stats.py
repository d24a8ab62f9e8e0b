"""Which variant of an A/B broadcast won, and a plain statement of the evidence. Pure functions.

The measure is clicks out of members reached: a copy delivered to a group of 500 members is 500
chances of a click (a group whose member count is unknown counts as 1). TGMS stores no one's
identity, so a person clicking twice counts twice; clicks are capped at the reach.

The best variant (highest click rate) is compared with the runner-up by a two-proportion z-test
(pooled standard error, two-sided). It is called the winner when p < 0.05 divided by the number of
comparisons it stands for (V - 1: Bonferroni, so four variants do not find a winner by chance more
often than two). Before that, the test needs enough data to mean anything: at least MIN_CLICKS
clicks and MIN_CLICKS non-clicks in each of the two variants (the usual condition for the normal
approximation); otherwise the statement says "not enough data" and names what is missing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.05
MIN_CLICKS = 5
LABELS = "ABCD"


@dataclass(frozen=True)
class VariantResult:
    variant: int
    groups: int
    delivered: int
    reach: int  # members reached (a delivered group of unknown size counts 1)
    clicks: int

    @property
    def label(self) -> str:
        return label(self.variant)

    @property
    def rate(self) -> float:
        """Clicks per member reached (0 when nothing was delivered)."""
        return min(self.clicks, self.reach) / self.reach if self.reach else 0.0


@dataclass(frozen=True)
class Verdict:
    winner: int | None  # variant number, None when there is none (yet)
    enough_data: bool
    z: float | None
    p: float | None
    statement: str


def label(variant: int) -> str:
    return LABELS[variant - 1] if 1 <= variant <= len(LABELS) else str(variant)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """(z, two-sided p) for H0: the two proportions are equal (pooled standard error)."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need at least one trial")
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (p1 - p2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def _pct(r: VariantResult) -> str:
    return f"{100 * r.rate:.2f}% ({min(r.clicks, r.reach)}/{r.reach})"


def decide(results: list[VariantResult]) -> Verdict:
    """The winner of these variants (2 or more) with the statement an operator reads."""
    if len(results) < 2:
        return Verdict(None, False, None, None, "no A/B test: fewer than two variants")
    ranked = sorted(results, key=lambda r: (r.rate, -r.variant), reverse=True)
    best, second = ranked[0], ranked[1]
    missing = []
    for r in (best, second):
        x = min(r.clicks, r.reach)
        if x < MIN_CLICKS or r.reach - x < MIN_CLICKS:
            missing.append(f"{r.label} has {x} click(s) of {r.reach} reached")
    if missing:
        need = f"at least {MIN_CLICKS} clicks and {MIN_CLICKS} non-clicks in each of the two leading variants"
        return Verdict(None, False, None, None, f"not enough data: {'; '.join(missing)} ({need})")
    z, p = two_proportion_z(min(best.clicks, best.reach), best.reach, min(second.clicks, second.reach), second.reach)
    threshold = ALPHA / (len(results) - 1)
    evidence = f"{best.label} {_pct(best)} vs {second.label} {_pct(second)} clicked; z = {z:.2f}, p = {p:.3g}"
    if p < threshold:
        return Verdict(
            best.variant,
            True,
            z,
            p,
            f"{best.label} wins: {evidence} (two-proportion z-test, significant at p < {threshold:.3g})",
        )
    return Verdict(
        None,
        True,
        z,
        p,
        f"no clear winner yet: {evidence} (two-proportion z-test; a winner needs p < {threshold:.3g})",
    )
