"""Classifies PEM certificates as expired, expiring or valid, the way an operator's script
does it with the `cryptography` package: the baseline of the scan benchmark.

Usage: python3 scan.py DIR WARNING_DAYS NOW_UNIX. Prints one JSON line with the counts and the
seconds spent reading and classifying (interpreter start-up and imports excluded).
"""

import datetime
import json
import os
import sys
import time

from cryptography import x509


def main() -> None:
    directory, warning_days, now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    now = datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)
    warning = datetime.timedelta(days=warning_days)

    started = time.perf_counter()
    counts = {"valid": 0, "expiring": 0, "expired": 0}
    for entry in sorted(os.listdir(directory)):
        with open(os.path.join(directory, entry), "rb") as pem:
            certificate = x509.load_pem_x509_certificate(pem.read())
        not_after = certificate.not_valid_after_utc
        if now > not_after:
            counts["expired"] += 1
        elif not_after - now < warning:
            counts["expiring"] += 1
        else:
            counts["valid"] += 1
    counts["seconds"] = time.perf_counter() - started
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
