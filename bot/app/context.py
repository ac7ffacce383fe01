"""What handlers receive besides the event and the GitHub client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..queue.base import Queue
from .auth import TokenCache
from .metrics import Metrics
from .settings import Settings


@dataclass
class AppContext:
    queue: Queue
    settings: Settings
    tokens: TokenCache
    metrics: Metrics = field(default_factory=Metrics)
    wake: Callable[[], None] = lambda: None
