"""The shape of Tango's reference order IDs, which a request names and a URL path carries."""

from __future__ import annotations

import re

# RA + YYMMDD + "-" + digits + "-" + digits, e.g. RA180426-1401-64. Nothing outside this
# alphabet can reach the request path, so no id can alter the URL we call.
REFERENCE_ORDER_ID = re.compile(r"RA[0-9]{6}-[0-9]{1,10}-[0-9]{1,10}")
