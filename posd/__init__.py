# SPDX-License-Identifier: MIT
"""posd: payment-code (付款码 / micropay) terminal daemon."""

__version__ = "0.1.0"
