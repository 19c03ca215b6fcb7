"""Oscar's class loading for the plugin's own views, so that a shop can override one.

``get_class("personalisation.views", "home")`` goes through :func:`oscar.core.loading.get_class` with the app's
label: a shop that forks the app (an app config labelled ``oscar_fashion_ai`` whose ``name`` is the shop's own
package) and defines ``home`` in its ``personalisation/views.py`` gets its own view. Unlike Oscar's apps, the plugin
is not under ``oscar.apps``, so a fork that lacks the module or the name falls back to the plugin's.
"""

from importlib import import_module

from oscar.core.exceptions import AppNotFoundError, ClassNotFoundError
from oscar.core.loading import get_class as oscar_get_class


def get_class(module: str, name: str, app_label: str = "oscar_fashion_ai", package: str = "oscar_fashion_ai"):
    """``name`` from ``module`` (relative to the app, e.g. ``"views"``) of the installed app ``app_label``, or from
    the plugin's ``package`` when the installed app (a fork) does not define it."""
    try:
        return oscar_get_class(f"{app_label}.{module}", name)
    except (AppNotFoundError, ModuleNotFoundError, ClassNotFoundError):
        return getattr(import_module(f"{package}.{module}"), name)
