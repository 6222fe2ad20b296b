"""``Closing``: the one base for objects that hold a resource and release it in ``close()``.

>>> class Reader(Closing):
...     def close(self) -> None:
...         print("closed")
>>> with Reader() as r:
...     pass
closed
"""
from __future__ import annotations

from typing import TypeVar

_T = TypeVar("_T", bound="Closing")

__all__ = ["Closing"]


class Closing:
    """``with obj:`` gives ``obj`` and calls ``obj.close()`` on the way out (errors propagate).

    Subclasses override :meth:`close`; the base one does nothing."""

    def close(self) -> None:
        """Release what the object holds (a subclass's job; idempotent where it can be)."""

    def __enter__(self: _T) -> _T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
