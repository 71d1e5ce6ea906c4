#!/usr/bin/env python3
"""Mints a signed loyalty cookie value (docs/cookie-signing.md).

Import sign() into the shop's login code, or run
    python3 sign.py KEY_HEX ID EXPIRES
to print a value.  Standard library only.
"""

import base64
import hashlib
import hmac
import re
import sys


def sign(customer_id, expires, key_hex):
    """Returns "<id>.<expires>.<sig>" signed with the hex key key_hex."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", customer_id):
        raise ValueError("id must be 1 to 64 of A-Z a-z 0-9 _ -")
    if not isinstance(expires, int) or expires < 0:
        raise ValueError("expires must be a Unix time in seconds")
    if not re.fullmatch(r"(?:[0-9A-Fa-f]{2}){32,128}", key_hex):
        raise ValueError("key must be 64 to 256 hex digits")

    payload = "%s.%d" % (customer_id, expires)
    mac = hmac.new(bytes.fromhex(key_hex), payload.encode("ascii"),
                   hashlib.sha256).digest()
    sig = base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")
    return payload + "." + sig


if __name__ == "__main__":
    if len(sys.argv) != 4 or not re.fullmatch(r"[0-9]{1,19}", sys.argv[3]):
        sys.exit("usage: sign.py KEY_HEX ID EXPIRES")
    print(sign(sys.argv[2], int(sys.argv[3]), sys.argv[1]))
