"""A value that must never be printed: client secrets, tokens, passwords.

``repr``/``str`` show a mask; the only way to the value is :meth:`Secret.reveal`, used at the single place
where it goes on the wire. Pydantic's ``SecretStr`` serves the same purpose in config models.
"""

from __future__ import annotations

from typing import Final

_MASK: Final = "**********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{_MASK}')"

    def __str__(self) -> str:
        return _MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values are not picklable")
