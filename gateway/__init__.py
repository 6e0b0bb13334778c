"""A local stand-in for Azure API Management in front of Azure SignalR Service or Azure Web PubSub, and exporters
that deploy the same API model to a real APIM instance (Bicep, ARM, az CLI, Terraform).

The pure core (`model`, `profiles`, `routing`, `subscription`, `responses`, `export`) decides;
`proxy` moves bytes with aiohttp; `cli` is the ``apim-gateway`` command.
"""

from gateway.export import ExportError, ExportFormat, ExportOptions, ExportResult, export_model
from gateway.model import Api, ApimModel, ApiType, ModelError, Operation, Service, load_model_file, resolve_backend
from gateway.profiles import ProfileName, build_profile
from gateway.proxy import ApimGateway
from gateway.routing import NoRoute, Route, route
from gateway.subscription import check_subscription

__all__ = [
    "Api",
    "ApiType",
    "ApimGateway",
    "ApimModel",
    "ExportError",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "ModelError",
    "NoRoute",
    "Operation",
    "ProfileName",
    "Route",
    "Service",
    "build_profile",
    "check_subscription",
    "export_model",
    "load_model_file",
    "resolve_backend",
    "route",
]
