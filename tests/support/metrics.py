"""Reading the app's Prometheus metrics in tests."""

from __future__ import annotations


def metric(app, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    text = app.extensions["authsvc"].metrics.render()[0].decode()
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total
