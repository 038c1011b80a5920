# SPDX-License-Identifier: MIT
"""The devices at the counter: scanners in (console, USB HID, serial), printers out (ESC/POS
over USB, serial, network, a file; the console), the durable print queue between the sales
and the printer, and PNG previews of what would be printed."""
