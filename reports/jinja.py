"""The one Jinja environment of the report pages (``reports/templates/``).

Autoescape is on and undefined names are errors, for every page and fragment: nothing that comes
from a record is ever marked safe.  Built once per process, so a page that renders many fragments
(a model card per dataset) compiles each template once.
"""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    loader = jinja2.PackageLoader("lmladder.reports", "templates")
    return jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)
