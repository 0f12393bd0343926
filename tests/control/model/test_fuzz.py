"""Hypothesis: random YAML-ish data never crashes conversion or validation, only Problems."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from aeraki.control.manifests import load_text
from aeraki.control.model import KINDS, Origin, parse_resource
from aeraki.control.validation import build_snapshot, check_config

FIELDS = [
    "hosts", "routes", "route", "destination", "host", "subset", "port", "number", "weight",
    "match", "attributes", "exact", "prefix", "regex", "mirror", "mirrorPercentage", "value",
    "requestMutation", "key", "localRateLimit", "tokenBucket", "maxTokens", "tokensPerFill",
    "fillInterval", "conditions", "globalRateLimit", "descriptors", "property", "descriptorKey",
    "domain", "exportTo", "ports", "name", "endpoints", "address", "labels", "subsets",
    "trafficPolicy", "loadBalancer", "consistentHash", "httpHeaderName", "simple", "http",
    "headers", "method", "protocol", "codec", "resolution", "workloadSelector", "x",
]  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.sampled_from(["", "*", "(", "v1", "a.b", "tcp-metaprotocol", "tcp-metaprotocol-x", "60s"]),
    st.text(max_size=8),
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS), inner, max_size=5),
    ),
    max_leaves=30,
)


@st.composite
def documents(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from([*KINDS, "Other"]))
    info = KINDS.get(kind)
    body: dict[str, Any] = {
        "apiVersion": f"{info.group}/{info.versions[0]}" if info else "v1",
        "kind": kind,
        "metadata": draw(st.one_of(values, st.just({"name": "n", "namespace": "ns"}))),
        "spec": draw(values),
    }
    return draw(st.one_of(st.just(body), values))


@settings(max_examples=400, deadline=None)
@given(st.lists(documents(), max_size=4))
def test_random_documents_give_problems_never_exceptions(bodies: list[Any]) -> None:
    parsed = [parse_resource(body, Origin(file="f.yaml")) for body in bodies]
    snap = check_config(parsed)
    for problem in snap.problems:
        assert problem.format()
    for resource in snap.resources():
        assert resource.meta.name


@settings(max_examples=200, deadline=None)
@given(documents())
def test_round_trip_through_yaml_text(body: Any) -> None:
    text = yaml.safe_dump(body, allow_unicode=True)
    docs, problems = load_text(text)
    build_snapshot(docs, problems)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ab:-[]{}#'\"\n |>*&!%@`,?", max_size=60))
def test_random_text_never_crashes_the_loader(text: str) -> None:
    docs, problems = load_text(text)
    for problem in problems:
        assert problem.line is None or problem.line >= 1
    build_snapshot(docs, problems)
