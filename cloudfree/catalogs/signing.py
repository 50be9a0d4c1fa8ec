"""Href signers: functions ``href -> href`` applied to every asset a prepared item keeps.

Built in:

``"none"``
    the identity (Earth Search, CDSE, local catalogs).
``"planetary-computer"``
    ``planetary_computer.sign`` (the href-level function of the ``planetary-computer``
    package), which appends a SAS token to ``*.blob.core.windows.net`` hrefs. The package is
    imported only when an href is actually signed; without it the signer raises
    :class:`~cloudfree.errors.SigningUnavailableError` saying how to get it (or to pass
    ``--signer none`` with hrefs that already carry a SAS token).

:func:`register_signer` adds a named signer (tests register a local one).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from cloudfree.errors import InvalidParameterError, SigningUnavailableError

__all__ = ["Signer", "get_signer", "register_signer", "signer_names"]

Signer = Callable[[str], str]


def _identity(href: str) -> str:
    return href


def _planetary_computer(href: str) -> str:
    if "?" in href and "sig=" in href:  # already carries a SAS token
        return href
    try:
        module = importlib.import_module("planetary_computer")
    except ImportError as exc:
        raise SigningUnavailableError(
            "planetary-computer",
            f"{href} needs a SAS token and the planetary-computer package is not installed; "
            "run `pip install planetary-computer`, or pass --signer none with hrefs that "
            "already carry a SAS token") from exc
    signed = module.sign(href)
    return str(signed)


_SIGNERS: dict[str, Signer] = {"none": _identity, "planetary-computer": _planetary_computer}


def register_signer(name: str, fn: Signer) -> None:
    """Make ``fn`` available as the signer ``name`` (replacing one of that name)."""
    if not name or not callable(fn):
        raise InvalidParameterError("signer", name, "give a non-empty name and a callable "
                                    "href -> href")
    _SIGNERS[name] = fn


def signer_names() -> tuple[str, ...]:
    return tuple(_SIGNERS)


def get_signer(name_or_callable: str | Signer | None) -> Signer:
    """The signer named ``name_or_callable`` (or the callable itself; None: ``"none"``).

    Raises:
        InvalidParameterError: no signer has that name.
    """
    if name_or_callable is None:
        return _identity
    if callable(name_or_callable):
        return name_or_callable
    signer = _SIGNERS.get(name_or_callable)
    if signer is None:
        raise InvalidParameterError(
            "signer", name_or_callable, f"known signers: {', '.join(_SIGNERS)}")
    return signer
