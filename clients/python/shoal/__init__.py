"""Shoal from Python: a client of the cluster (sync and asyncio) and workers
that serve functions written in Python to it.

>>> import shoal
>>> client = shoal.Client("http://127.0.0.1:7070")
>>> client.call("echo", {"hello": "world"})
{'hello': 'world'}
"""

from .client import AsyncClient, Client
from .errors import ShoalError, Unreachable
from .worker import Context, Worker, function

__all__ = ["AsyncClient", "Client", "Context", "ShoalError", "Unreachable", "Worker", "function"]
__version__ = "0.1.0"
