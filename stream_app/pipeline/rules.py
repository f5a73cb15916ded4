"""Operator rules beside the model: hard bounds per sensor, e.g. ``temperature<0.09``.

A rule states what must hold, in sensor units; a reading that breaks it fails the check
``rule:<feature><op><limit>`` and makes its window anomalous whatever the model says.
Rules come from configuration as one string, separated by commas or semicolons:
``temperature<0.09, vibration <= 0.1; motor_rpm>0.03``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, cast

if TYPE_CHECKING:  # settings imports this module: keep numpy out of the CLI's start-up
    import numpy as np

Op = Literal["<", "<=", ">", ">="]

_OPS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
# Feature names may hold spaces (SKAB's "Volume Flow RateRMS"), so the name is everything up to the operator.
_RULE = re.compile(r"(?P<feature>[^<>=!]+?)\s*(?P<op><=|>=|<|>)\s*(?P<limit>[^<>=!]+)")


@dataclass(frozen=True, slots=True)
class Rule:
    feature: str
    op: Op
    limit: float

    @property
    def name(self) -> str:
        """The check's name in an alert's ``check_failures``."""
        limit = repr(self.limit)
        return f"rule:{self.feature}{self.op}{limit[:-2] if limit.endswith('.0') else limit}"

    def broken(self, values: np.ndarray) -> np.ndarray:
        """Elementwise: True where a value breaks the rule (NaN breaks every rule)."""
        import numpy as np

        return np.logical_not(_OPS[self.op](np.asarray(values), self.limit))


def parse_rules(text: str) -> list[Rule]:
    """Parse ``feature<op>limit`` rules separated by commas or semicolons; raise ValueError naming a bad one."""
    rules = []
    for part in re.split(r"[,;]", text):
        part = part.strip()
        if not part:
            continue
        match = _RULE.fullmatch(part)
        if match is None:
            raise ValueError(f"bad rule {part!r}: expected <feature><op><limit> with op one of <, <=, >, >=")
        try:
            limit = float(match["limit"])
        except ValueError:
            raise ValueError(f"bad rule {part!r}: limit {match['limit']!r} is not a number") from None
        if not math.isfinite(limit):
            raise ValueError(f"bad rule {part!r}: limit must be a finite number")
        rules.append(Rule(match["feature"].strip(), cast(Op, match["op"]), limit))  # _RULE admits only the four ops
    return rules
