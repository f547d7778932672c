"""metatensor-operations' switch for its checks: ``checks_enabled``, ``unsafe_enable_checks``
and ``unsafe_disable_checks``, with the same behaviour.

The state is a module-level flag (``METATENSOR_UNSAFE_DISABLE_CHECKS`` in the environment
sets its initial value), because metatensor's API is a process-wide switch: calling
``unsafe_disable_checks()`` flips it for good, and using it as a context manager restores the
previous state on exit.

Like metatensor-operations 0.5 (whose documentation says that disabling checks is planned
but "not currently implemented"), no check consults the flag: every operation keeps checking
its inputs. Code written for metatensor that toggles the checks runs unchanged.
"""

from __future__ import annotations

import os
from types import TracebackType

__all__ = ["checks_enabled", "unsafe_disable_checks", "unsafe_enable_checks"]


def _parse_bool_env_var(key: str) -> bool:
    """Whether the environment variable ``key`` is set to a true value."""
    return os.environ.get(key, "").lower() in ("true", "1", "yes", "on")


# process-wide, as in metatensor-operations (see the module docstring)
_CHECKS_ENABLED = not _parse_bool_env_var("METATENSOR_UNSAFE_DISABLE_CHECKS")


def checks_enabled() -> bool:
    """Whether metatensor's checks are switched on (the flag only: see the module docstring)."""
    return _CHECKS_ENABLED


class _SetChecks:
    """Sets the flag when created; as a context manager, restores the previous state."""

    def __init__(self, state: bool):
        global _CHECKS_ENABLED
        self.original_check_state = _CHECKS_ENABLED
        self.state = state
        _CHECKS_ENABLED = state

    def __repr__(self) -> str:
        return f"checks {'en' if self.state else 'dis'}abled"

    def __enter__(self) -> _SetChecks:
        global _CHECKS_ENABLED
        _CHECKS_ENABLED = self.state
        return self

    def __exit__(
        self,
        type: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        global _CHECKS_ENABLED
        _CHECKS_ENABLED = self.original_check_state


class unsafe_enable_checks(_SetChecks):
    """Switch metatensor's checks on, for good or (``with``) for a block of code."""

    def __init__(self) -> None:
        super().__init__(state=True)


class unsafe_disable_checks(_SetChecks):
    """Switch metatensor's checks off, for good or (``with``) for a block of code.

    As in metatensor-operations 0.5, the operations still check their inputs.
    """

    def __init__(self) -> None:
        super().__init__(state=False)
