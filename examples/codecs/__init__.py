"""Example codecs for the user guide ``docs/writing-a-codec.md``.

They are teaching material, not part of the ``aeraki`` package: a listener names one by its
import path (``examples.codecs.minirpc:MiniRpcCodec``), exactly as it would name yours.
"""
