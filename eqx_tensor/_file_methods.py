"""metatensor's ``save``/``load`` methods on the data classes, forwarding to :mod:`.io`.

metatensor users write ``tensor.save(path)`` and ``TensorMap.load(path)`` as often as the free
functions; the methods here make that code run unchanged. :mod:`.io` imports the data classes,
so it is imported when a method is called, not at import time.
"""

from __future__ import annotations

import os
from typing import IO, Any, ClassVar

PathOrFile = str | os.PathLike[str] | IO[bytes]


class FileMethods:
    """Mixin: ``save``, ``save_buffer`` and the ``load``/``load_buffer`` class methods."""

    __slots__ = ()
    # names of the :mod:`.io` functions reading this type from a file and from bytes
    _LOADERS: ClassVar[tuple[str, str]]

    def save(self, file: PathOrFile, *, compress: bool = False) -> None:
        """Save in metatensor's ``.mts`` format: :func:`eqx_tensor.save`."""
        from . import io

        io.save(file, self, compress=compress)

    def save_buffer(self, *, compress: bool = False) -> bytes:
        """The bytes :meth:`save` writes: :func:`eqx_tensor.save_buffer`."""
        from . import io

        return io.save_buffer(self, compress=compress)

    @classmethod
    def load(cls, file: PathOrFile) -> Any:
        """Read a ``.mts`` file of this type (no pickle): :func:`eqx_tensor.load` & co."""
        from . import io

        return getattr(io, cls._LOADERS[0])(file)

    @classmethod
    def load_buffer(cls, buffer: Any) -> Any:
        """Read this type from the bytes of a ``.mts`` file."""
        from . import io

        return getattr(io, cls._LOADERS[1])(buffer)
