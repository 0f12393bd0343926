import datetime

from envoy.config.core.v3 import base_pb2 as _base_pb2
from envoy.config.route.v3 import route_components_pb2 as _route_components_pb2
from envoy.type.v3 import percent_pb2 as _percent_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteConfiguration(_message.Message):
    __slots__ = ("name", "routes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, name: _Optional[str] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("name", "match", "route", "request_mutation", "response_mutation", "timeout", "retry_policy", "fault", "idempotent")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MUTATION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MUTATION_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    match: RouteMatch
    route: RouteAction
    request_mutation: _containers.RepeatedCompositeFieldContainer[KeyValue]
    response_mutation: _containers.RepeatedCompositeFieldContainer[KeyValue]
    timeout: _duration_pb2.Duration
    retry_policy: RetryPolicy
    fault: FaultInjection
    idempotent: _wrappers_pb2.BoolValue
    def __init__(self, name: _Optional[str] = ..., match: _Optional[_Union[RouteMatch, _Mapping]] = ..., route: _Optional[_Union[RouteAction, _Mapping]] = ..., request_mutation: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., response_mutation: _Optional[_Iterable[_Union[KeyValue, _Mapping]]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., fault: _Optional[_Union[FaultInjection, _Mapping]] = ..., idempotent: _Optional[_Union[_wrappers_pb2.BoolValue, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("num_retries", "per_try_timeout", "retry_on", "base_interval", "max_interval", "retry_non_idempotent")
    NUM_RETRIES_FIELD_NUMBER: _ClassVar[int]
    PER_TRY_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    BASE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    RETRY_NON_IDEMPOTENT_FIELD_NUMBER: _ClassVar[int]
    num_retries: int
    per_try_timeout: _duration_pb2.Duration
    retry_on: _containers.RepeatedScalarFieldContainer[str]
    base_interval: _duration_pb2.Duration
    max_interval: _duration_pb2.Duration
    retry_non_idempotent: bool
    def __init__(self, num_retries: _Optional[int] = ..., per_try_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_on: _Optional[_Iterable[str]] = ..., base_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry_non_idempotent: _Optional[bool] = ...) -> None: ...

class FaultInjection(_message.Message):
    __slots__ = ("delay", "abort")
    class Delay(_message.Message):
        __slots__ = ("fixed_delay", "percentage")
        FIXED_DELAY_FIELD_NUMBER: _ClassVar[int]
        PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
        fixed_delay: _duration_pb2.Duration
        percentage: _percent_pb2.FractionalPercent
        def __init__(self, fixed_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., percentage: _Optional[_Union[_percent_pb2.FractionalPercent, _Mapping]] = ...) -> None: ...
    class Abort(_message.Message):
        __slots__ = ("error_type", "message", "percentage")
        ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
        MESSAGE_FIELD_NUMBER: _ClassVar[int]
        PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
        error_type: str
        message: str
        percentage: _percent_pb2.FractionalPercent
        def __init__(self, error_type: _Optional[str] = ..., message: _Optional[str] = ..., percentage: _Optional[_Union[_percent_pb2.FractionalPercent, _Mapping]] = ...) -> None: ...
    DELAY_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    delay: FaultInjection.Delay
    abort: FaultInjection.Abort
    def __init__(self, delay: _Optional[_Union[FaultInjection.Delay, _Mapping]] = ..., abort: _Optional[_Union[FaultInjection.Abort, _Mapping]] = ...) -> None: ...

class RouteMatch(_message.Message):
    __slots__ = ("metadata",)
    METADATA_FIELD_NUMBER: _ClassVar[int]
    metadata: _containers.RepeatedCompositeFieldContainer[_route_components_pb2.HeaderMatcher]
    def __init__(self, metadata: _Optional[_Iterable[_Union[_route_components_pb2.HeaderMatcher, _Mapping]]] = ...) -> None: ...

class RouteAction(_message.Message):
    __slots__ = ("cluster", "weighted_clusters", "hash_policy", "request_mirror_policies")
    class RequestMirrorPolicy(_message.Message):
        __slots__ = ("cluster", "runtime_fraction")
        CLUSTER_FIELD_NUMBER: _ClassVar[int]
        RUNTIME_FRACTION_FIELD_NUMBER: _ClassVar[int]
        cluster: str
        runtime_fraction: _base_pb2.RuntimeFractionalPercent
        def __init__(self, cluster: _Optional[str] = ..., runtime_fraction: _Optional[_Union[_base_pb2.RuntimeFractionalPercent, _Mapping]] = ...) -> None: ...
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    HASH_POLICY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_MIRROR_POLICIES_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    weighted_clusters: _route_components_pb2.WeightedCluster
    hash_policy: _containers.RepeatedScalarFieldContainer[str]
    request_mirror_policies: _containers.RepeatedCompositeFieldContainer[RouteAction.RequestMirrorPolicy]
    def __init__(self, cluster: _Optional[str] = ..., weighted_clusters: _Optional[_Union[_route_components_pb2.WeightedCluster, _Mapping]] = ..., hash_policy: _Optional[_Iterable[str]] = ..., request_mirror_policies: _Optional[_Iterable[_Union[RouteAction.RequestMirrorPolicy, _Mapping]]] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: str
    def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
