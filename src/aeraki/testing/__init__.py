"""Public kit for codec and filter authors: the conformance check and a fake codec."""

from aeraki.testing.conformance import check_codec
from aeraki.testing.fake_codec import FakeCodec, build_frame

__all__ = ["FakeCodec", "build_frame", "check_codec"]
