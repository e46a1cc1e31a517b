"""Each namespace's share of the services: its weight (turns taken within a priority level,
relative to the other namespaces) and its cap (stages of its jobs running at once, across the
services), from the settings, overridden per namespace by annotations on the Namespace object.

Why Namespace annotations: a Namespace is cluster-scoped, so only a platform admin can change them
(a team that administers its own namespace cannot raise its own cap, as it could with an object
inside it); they live with the namespace they govern and go away with it; and the operator already
lists and watches Namespaces (kopf's namespace scanning), so no new permission is needed.
A change takes effect at once, without a restart: a raised cap grants waiting stages immediately.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omoai_operator.informer import Informer, ListWatch
from omoai_operator.kube import DiscoveryUnavailable
from omoai_operator.spec import GROUP

log = logging.getLogger(__name__)

WEIGHT_ANNOTATION = f"{GROUP}/queue-weight"
CAP_ANNOTATION = f"{GROUP}/max-running"
NAMESPACES_PATH = "/api/v1/namespaces"


@dataclass(frozen=True)
class Override:
    weight: float | None = None
    cap: int | None = None


def parse_override(namespace: str, annotations: Mapping[str, Any]) -> Override:
    """The override a Namespace's annotations set; an invalid value is logged and ignored."""
    weight: float | None = None
    cap: int | None = None
    raw = annotations.get(WEIGHT_ANNOTATION)
    if raw is not None:
        try:
            weight = float(raw)
        except (TypeError, ValueError):
            weight = None
        if weight is None or not math.isfinite(weight) or not 0 < weight <= 1000:
            log.warning(
                "namespace %s: annotation %s=%r is not a number in (0, 1000]: ignored",
                namespace,
                WEIGHT_ANNOTATION,
                raw,
            )
            weight = None
    raw = annotations.get(CAP_ANNOTATION)
    if raw is not None:
        text = str(raw).strip()
        if text.isdigit() and 1 <= int(text) <= 100_000:
            cap = int(text)
        elif text.lower() not in ("", "none", "unlimited"):
            log.warning(
                "namespace %s: annotation %s=%r is not a whole number >= 1 (or 'none'): ignored",
                namespace,
                CAP_ANNOTATION,
                raw,
            )
    return Override(weight, cap)


class NamespaceShares:
    """Weight and cap per namespace: an annotation override, else the setting, else weight 1 and no
    cap. Listeners hear about every change (the queue grants what a raised cap allows)."""

    def __init__(self, weights: Mapping[str, float] | None = None, default_cap: int | None = None) -> None:
        self.weights = dict(weights or {})
        self.default_cap = default_cap
        self.overrides: dict[str, Override] = {}
        self._listeners: list[Callable[[], None]] = []

    def listen(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def weight(self, namespace: str) -> float:
        o = self.overrides.get(namespace)
        if o is not None and o.weight is not None:
            return o.weight
        return self.weights.get(namespace, 1.0)

    def cap(self, namespace: str) -> int | None:
        o = self.overrides.get(namespace)
        if o is not None and o.cap is not None:
            return o.cap
        return self.default_cap

    def set_overrides(self, overrides: Mapping[str, Override]) -> None:
        new = {ns: o for ns, o in overrides.items() if o != Override()}
        if new == self.overrides:
            return
        for ns in sorted(set(new) | set(self.overrides)):
            if new.get(ns) != self.overrides.get(ns):
                o = new.get(ns, Override())
                log.info("namespace %s: weight %s, cap %s", ns, o.weight or "default", o.cap or "default")
        self.overrides = new
        for listener in list(self._listeners):
            listener()


class NamespaceWatcher:
    """Keeps ``shares.overrides`` equal to the annotations of the Namespace objects."""

    def __init__(self, shares: NamespaceShares, client: Callable[[], ListWatch], *, watch_timeout_s: int = 300) -> None:
        self.shares = shares
        self.informer = Informer("namespaces", client, NAMESPACES_PATH, self._apply, watch_timeout_s=watch_timeout_s)

    def _apply(self) -> None:
        self.shares.set_overrides(
            {
                name: parse_override(name, (obj.get("metadata") or {}).get("annotations") or {})
                for name, obj in self.informer.objects.items()
            }
        )

    async def run(self) -> None:
        try:
            await self.informer.run()
        except DiscoveryUnavailable as e:
            log.warning("namespace overrides unavailable (%s): weights and caps come from the settings only", e)
