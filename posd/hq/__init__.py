# SPDX-License-Identifier: MIT
"""The reference HQ receiver (``posd hq serve``) and the HQ sync wire format.

- ``protocol``: the batch and record format, signatures, record checks (pure);
- ``storage``: what the receiver needs from a database, and the day totals;
- ``sqlite`` / ``postgres``: the two databases (embedded default / production);
- ``server``: the HTTP service.

The terminal's side is :mod:`posd.sync`. The format is in docs/hq-sync.md.
"""
