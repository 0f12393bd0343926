"""Decode cost of a typical Dubbo request (DESIGN §4; python-ecosystem.md §5 measures 82 µs for
dubbo-py's pure-Python decoder on the same shape): 5 strings, one String argument, a 5-entry
attachment map. Run: ``.venv/bin/python -m tests.codec.dubbo.bench_decode``."""

from __future__ import annotations

import time
import timeit

from aeraki.codec.api import Side
from aeraki.codec.dubbo import DubboCodec
from tests.codec.dubbo import h2w


def main(number: int = 50_000) -> None:
    frame = h2w.request(request_id=7)
    codec = DubboCodec(Side.REQUEST)
    md = codec.decode(frame)[0]
    cases = {
        "decode": lambda: codec.decode(frame),
        "encode, no change": lambda: codec.encode(md, {}),
        "encode, id rewrite": lambda: codec.encode(md, {}, request_id=9),
        "encode, 1-key mutation": lambda: codec.encode(md, {"x-request-id": "abc"}),
    }
    print(f"request frame: {len(frame)} bytes")
    for name, call in cases.items():
        best = min(timeit.repeat(call, number=number, repeat=7, timer=time.process_time)) / number
        print(f"{name:24s} {best * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
