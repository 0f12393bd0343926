import datetime

from aeraki.xds.gen.meta_protocol_proxy.config.route.v1alpha import route_pb2 as _route_pb2
from envoy.config.accesslog.v3 import accesslog_pb2 as _accesslog_pb2
from envoy.config.core.v3 import config_source_pb2 as _config_source_pb2
from envoy.config.trace.v3 import http_tracer_pb2 as _http_tracer_pb2
from envoy.type.v3 import percent_pb2 as _percent_pb2
from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MetaProtocolProxy(_message.Message):
    __slots__ = ("stat_prefix", "application_protocol", "rds", "route_config", "codec", "meta_protocol_filters", "tracing", "access_log", "idle_timeout", "protocol")
    STAT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    APPLICATION_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    RDS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    META_PROTOCOL_FILTERS_FIELD_NUMBER: _ClassVar[int]
    TRACING_FIELD_NUMBER: _ClassVar[int]
    ACCESS_LOG_FIELD_NUMBER: _ClassVar[int]
    IDLE_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    stat_prefix: str
    application_protocol: str
    rds: Rds
    route_config: _route_pb2.RouteConfiguration
    codec: Codec
    meta_protocol_filters: _containers.RepeatedCompositeFieldContainer[MetaProtocolFilter]
    tracing: Tracing
    access_log: _containers.RepeatedCompositeFieldContainer[_accesslog_pb2.AccessLog]
    idle_timeout: _duration_pb2.Duration
    protocol: ApplicationProtocol
    def __init__(self, stat_prefix: _Optional[str] = ..., application_protocol: _Optional[str] = ..., rds: _Optional[_Union[Rds, _Mapping]] = ..., route_config: _Optional[_Union[_route_pb2.RouteConfiguration, _Mapping]] = ..., codec: _Optional[_Union[Codec, _Mapping]] = ..., meta_protocol_filters: _Optional[_Iterable[_Union[MetaProtocolFilter, _Mapping]]] = ..., tracing: _Optional[_Union[Tracing, _Mapping]] = ..., access_log: _Optional[_Iterable[_Union[_accesslog_pb2.AccessLog, _Mapping]]] = ..., idle_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., protocol: _Optional[_Union[ApplicationProtocol, _Mapping]] = ...) -> None: ...

class Rds(_message.Message):
    __slots__ = ("config_source", "route_config_name")
    CONFIG_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    config_source: _config_source_pb2.ConfigSource
    route_config_name: str
    def __init__(self, config_source: _Optional[_Union[_config_source_pb2.ConfigSource, _Mapping]] = ..., route_config_name: _Optional[str] = ...) -> None: ...

class MetaProtocolFilter(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: _any_pb2.Any
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class Codec(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: _any_pb2.Any
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class Tracing(_message.Message):
    __slots__ = ("client_sampling", "random_sampling", "overall_sampling", "verbose", "max_tag_length", "provider")
    CLIENT_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    RANDOM_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    OVERALL_SAMPLING_FIELD_NUMBER: _ClassVar[int]
    VERBOSE_FIELD_NUMBER: _ClassVar[int]
    MAX_TAG_LENGTH_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    client_sampling: _percent_pb2.Percent
    random_sampling: _percent_pb2.Percent
    overall_sampling: _percent_pb2.Percent
    verbose: bool
    max_tag_length: _wrappers_pb2.UInt32Value
    provider: _http_tracer_pb2.Tracing.Http
    def __init__(self, client_sampling: _Optional[_Union[_percent_pb2.Percent, _Mapping]] = ..., random_sampling: _Optional[_Union[_percent_pb2.Percent, _Mapping]] = ..., overall_sampling: _Optional[_Union[_percent_pb2.Percent, _Mapping]] = ..., verbose: _Optional[bool] = ..., max_tag_length: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., provider: _Optional[_Union[_http_tracer_pb2.Tracing.Http, _Mapping]] = ...) -> None: ...

class ApplicationProtocol(_message.Message):
    __slots__ = ("name", "codec", "multiplexing")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    MULTIPLEXING_FIELD_NUMBER: _ClassVar[int]
    name: str
    codec: Codec
    multiplexing: bool
    def __init__(self, name: _Optional[str] = ..., codec: _Optional[_Union[Codec, _Mapping]] = ..., multiplexing: _Optional[bool] = ...) -> None: ...
