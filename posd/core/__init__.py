# SPDX-License-Identifier: MIT
"""The functional core: every rule of posd, as pure values and functions.

Nothing here does I/O or reads a clock: money and payment codes, scanner framing, the sale
state machine, receipt and report layout, print jobs, the channels' wire formats and code
tables, the HQ record format. The shell (store, engine, channels' clients, devices, API,
sync) calls into this package; this package imports nothing of the shell, and
``tests/core/test_core_imports.py`` walks the folder to hold it to that.
"""
