from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class IstioStats(_message.Message):
    __slots__ = ("destination_service",)
    DESTINATION_SERVICE_FIELD_NUMBER: _ClassVar[int]
    destination_service: str
    def __init__(self, destination_service: _Optional[str] = ...) -> None: ...
