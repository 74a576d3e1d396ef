"""A progress bar on a command's stderr that redraws in place."""

from __future__ import annotations

from typing import Any

from django.core.management.base import OutputWrapper
from tqdm import tqdm


class _Unended:
    """Django's OutputWrapper ends every write with a newline; tqdm redraws with '\\r'."""

    def __init__(self, out: OutputWrapper) -> None:
        self._out = out

    def write(self, text: str) -> None:
        self._out.write(text, ending="")

    def flush(self) -> None:
        self._out.flush()


def progress_bar(stderr: OutputWrapper, total: int, unit: str) -> tqdm[Any]:
    return tqdm(total=total, unit=f" {unit}", file=_Unended(stderr), disable=not total)
