"""Dubbo 2 codec over Hessian2 (reference §27): :class:`~aeraki.codec.dubbo.codec.DubboCodec`.

Modules: :mod:`.framing` (16-byte header), :mod:`.hessian2` (lazy scanner and reader),
:mod:`.hessian2_writer` (ints and strings as Java writes them),
:mod:`.attachments` (attachment map read/rewrite), :mod:`.body` (what is parsed on demand:
arguments, values, attachments), :mod:`.codec` (the codec).
"""

from aeraki.codec.dubbo.codec import DubboCodec

__all__ = ["DubboCodec"]
