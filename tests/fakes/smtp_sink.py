"""A real SMTP server on loopback for the notification tests (aiosmtpd).

Usage: python smtp_sink.py <port> <out_dir>

Each message received is parsed with Python's email package and written to
<out_dir>/<n>.json as {"mail_from", "rcpt_tos", "from", "to", "subject", "content_type",
"body", "raw"} (written to a temporary name, then renamed, so a reader never sees half a file).
Prints "ready" once it listens; stops when its standard input closes or on SIGTERM.
"""

import asyncio
import email
import json
import os
import sys
from email import policy

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        self.count += 1
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(message["from"]),
            "to": str(message["to"]),
            "subject": str(message["subject"]),
            "content_type": message.get_content_type(),
            "body": message.get_content(),
            "raw": envelope.content.decode("utf-8", "replace"),
        }
        path = os.path.join(self.out_dir, f"{self.count}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(path + ".tmp", path)
        return "250 Message accepted for delivery"


def main():
    port, out_dir = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(out_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
