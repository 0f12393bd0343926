"""Codec cost of a typical Dubbo request and response (DESIGN §4; python-ecosystem.md §5
measures 82 µs for dubbo-py's pure-Python decoder on the same shape): 5 strings, one String
argument, a 5-entry attachment map; the response is a String value. Attachments are parsed on
demand (``aeraki.codec.dubbo.body``), so "decode" is what a request routed on interface and
method costs, "decode + attachments" what one routed on an attachment costs. Parsed attachment
maps are cached by their bytes, so "…, new map" decodes requests whose map differs each time
(a trace id in it), the cost when the cache cannot help.
Run: ``.venv/bin/python -m tests.codec.dubbo.bench_decode``."""

from __future__ import annotations

import itertools
import time
import timeit
from collections.abc import Callable

from aeraki.codec.api import Side
from aeraki.codec.dubbo import DubboCodec
from tests.codec.dubbo import h2w


def main(number: int = 50_000) -> None:
    frame = h2w.request(request_id=7)
    response = h2w.response(1, h2w.string("hello, world " * 3), request_id=7)
    codec = DubboCodec(Side.REQUEST)
    upstream = DubboCodec(Side.RESPONSE)
    md = codec.decode(frame)[0]
    traced = itertools.cycle(
        [
            h2w.request(
                request_id=7, attachments=h2w.str_map(h2w.ATTACHMENTS | {"trace": f"{n:016x}"})
            )
            for n in range(2000)
        ]
    )
    cases: dict[str, Callable[[], object]] = {
        "decode": lambda: codec.decode(frame),
        "decode + attachments": lambda: codec.decode(frame)[0].load_strings(),
        "…, new map": lambda: codec.decode(next(traced))[0].load_strings(),
        "decode + 1-key mutation": lambda: codec.encode(codec.decode(frame)[0], {"k": "v"}),
        "encode, no change": lambda: codec.encode(md, {}),
        "encode, id rewrite": lambda: codec.encode(md, {}, request_id=9),
        "decode response": lambda: upstream.decode(response),
    }
    print(f"request frame: {len(frame)} bytes, response: {len(response)} bytes")
    for name, call in cases.items():
        best = min(timeit.repeat(call, number=number, repeat=7, timer=time.process_time)) / number
        print(f"{name:24s} {best * 1e6:6.2f} µs")


if __name__ == "__main__":
    main()
