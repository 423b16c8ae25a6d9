"""The review web app over a store (``ribin serve``): lead queue, leads, search, exhibits.

Flask serves server-rendered pages (Jinja2 templates in ``templates/``) and a few static
files (``static/``: CSS and a little plain JavaScript for zoom, pan and keyboard shortcuts);
nothing is fetched from outside the app, so it works on an air-gapped lab network. Routes are
thin: they parse the request, call the library (:mod:`ribin.search`, :mod:`ribin.report`,
:mod:`ribin.workflow`) and render. The library never imports this package.
"""

from __future__ import annotations

from ribin.web.app import ServeConfig, create_app

__all__ = ["ServeConfig", "create_app"]
