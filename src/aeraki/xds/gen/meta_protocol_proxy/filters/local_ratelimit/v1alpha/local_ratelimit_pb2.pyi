from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as _route_pb2
from envoy.type.v3 import token_bucket_pb2 as _token_bucket_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LocalRateLimit(_message.Message):
    __slots__ = ("stat_prefix", "token_bucket", "conditions")
    STAT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUCKET_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    stat_prefix: str
    token_bucket: _token_bucket_pb2.TokenBucket
    conditions: _containers.RepeatedCompositeFieldContainer[LocalRateLimitCondition]
    def __init__(self, stat_prefix: _Optional[str] = ..., token_bucket: _Optional[_Union[_token_bucket_pb2.TokenBucket, _Mapping]] = ..., conditions: _Optional[_Iterable[_Union[LocalRateLimitCondition, _Mapping]]] = ...) -> None: ...

class LocalRateLimitCondition(_message.Message):
    __slots__ = ("match", "token_bucket")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_BUCKET_FIELD_NUMBER: _ClassVar[int]
    match: _route_pb2.RouteMatch
    token_bucket: _token_bucket_pb2.TokenBucket
    def __init__(self, match: _Optional[_Union[_route_pb2.RouteMatch, _Mapping]] = ..., token_bucket: _Optional[_Union[_token_bucket_pb2.TokenBucket, _Mapping]] = ...) -> None: ...
