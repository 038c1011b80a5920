# SPDX-License-Identifier: MIT
"""Exceptions posd raises on purpose, sorted by whose fault they are.

Channel *outcomes* (paid, declined, unknown, ...) are values (see ``posd.core.sale``), never
exceptions; these classes are for the shell's own failures and for refusing bad input.
"""

from __future__ import annotations


class PosdError(Exception):
    """Base for every error posd raises on purpose."""


class ConfigError(PosdError):
    """Refuse to start: the CLI exits 78 (EX_CONFIG) so systemd does not restart-loop."""


class InputError(PosdError, ValueError):
    """Bad input from a person or a register (amount, payment code, request).

    The message is a sentence a cashier or register developer can act on.
    """


class AmountError(InputError):
    """Not a valid CNY amount."""


class CodeError(InputError):
    """Not a payment code posd can take."""


class ConflictError(PosdError):
    """The request contradicts what is already recorded (e.g. the order is already paid)."""


class UnavailableError(PosdError):
    """posd cannot take the request now (shutting down); try again shortly."""


class NotFoundError(PosdError):
    """No such sale."""


class DeviceError(PosdError):
    """Scanner or printer unusable; the shell reopens with backoff."""


class StoreError(PosdError):
    """Database unusable: stop taking sales, alert."""


class InvariantError(PosdError):
    """A bug (an impossible transition): crash, systemd restarts us, recovery resumes."""
