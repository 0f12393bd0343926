import datetime

from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as _route_pb2
from envoy.config.ratelimit.v3 import rls_pb2 as _rls_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RateLimit(_message.Message):
    __slots__ = ("match", "domain", "timeout", "failure_mode_deny", "rate_limit_service", "descriptors")
    class Descriptor(_message.Message):
        __slots__ = ("property", "descriptor_key")
        PROPERTY_FIELD_NUMBER: _ClassVar[int]
        DESCRIPTOR_KEY_FIELD_NUMBER: _ClassVar[int]
        property: str
        descriptor_key: str
        def __init__(self, property: _Optional[str] = ..., descriptor_key: _Optional[str] = ...) -> None: ...
    MATCH_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    FAILURE_MODE_DENY_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_SERVICE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTORS_FIELD_NUMBER: _ClassVar[int]
    match: _route_pb2.RouteMatch
    domain: str
    timeout: _duration_pb2.Duration
    failure_mode_deny: bool
    rate_limit_service: _rls_pb2.RateLimitServiceConfig
    descriptors: _containers.RepeatedCompositeFieldContainer[RateLimit.Descriptor]
    def __init__(self, match: _Optional[_Union[_route_pb2.RouteMatch, _Mapping]] = ..., domain: _Optional[str] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., failure_mode_deny: _Optional[bool] = ..., rate_limit_service: _Optional[_Union[_rls_pb2.RateLimitServiceConfig, _Mapping]] = ..., descriptors: _Optional[_Iterable[_Union[RateLimit.Descriptor, _Mapping]]] = ...) -> None: ...
