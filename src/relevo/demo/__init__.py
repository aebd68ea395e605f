"""`relevo demo`: the story of a model going to production, told over a real server.

The story is a sequence of chapters (`relevo.demo.chapters.CHAPTERS`); each is a thin caller of
relevo's public API (registry, deployments, server, client, export), never a second
implementation. `Demo` holds what they share; `Demo.run` tells them in order.

>>> from relevo.demo import CHAPTERS, Demo, DemoOptions, View     # doctest: +SKIP
>>> with Demo(DemoOptions(home=Path("/tmp/demo")), View()) as demo:  # doctest: +SKIP
...     summary = demo.run(CHAPTERS)
"""

from __future__ import annotations

from relevo.demo.chapters import CHAPTERS
from relevo.demo.story import Chapter, Demo, DemoOptions, new_home
from relevo.demo.view import View

__all__ = ["CHAPTERS", "Chapter", "Demo", "DemoOptions", "View", "new_home"]
