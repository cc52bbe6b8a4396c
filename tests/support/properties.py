"""How many examples a property test tries: a few hundred, the same every run, in CI; many more,
random, when `bench/fuzz.py` runs the same tests. It draws no examples itself.

CI must be stable and quick, so examples are derandomized (the same inputs on every run) and
no example database is written; `bench/fuzz.py` sets `RELAYBOX_FUZZ_EXAMPLES` before it imports
the tests, and every property then tries that many random inputs.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

__all__ = ["FUZZ_ENV", "budget"]

FUZZ_ENV = "RELAYBOX_FUZZ_EXAMPLES"
"""Examples per property for a fuzz run; unset in CI."""


def budget(ci_examples: int, *, cost: int = 1) -> settings:
    """The settings of one property test.

    Args:
        ci_examples: Examples tried in CI: keep each test file well under 30 s on a busy machine.
        cost: How much dearer one example is than a pure function call (a real session on
            loopback costs about 100): a fuzz run tries that many times fewer of them.

    Returns:
        Settings for `@budget(...)` above `@given(...)`.
    """
    fuzz = os.environ.get(FUZZ_ENV)
    common = {
        "deadline": None,  # a busy CI machine is slow now and then: that is no failure
        "database": None,
        # The explain phase traces coverage to say which lines failing examples ran: minutes
        # for one failure of a big property, and the falsifying example says enough.
        "phases": [Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    }
    if fuzz:
        return settings(max_examples=max(1, int(fuzz) // cost), derandomize=False, **common)
    return settings(max_examples=ci_examples, derandomize=True, **common)
