"""Apache Thrift codec (``aeraki.meta_protocol.codec.thrift``, reference §28).

``transport`` detects and frames (unframed, framed, THeader), ``protocol`` reads message
begins and skips structs (binary, compact), ``codec`` is the :class:`ThriftCodec`.
"""

from aeraki.codec.thrift.codec import ThriftCodec

__all__ = ["ThriftCodec"]
