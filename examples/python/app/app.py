"""A small web service for kiln, on Python's standard library only.

GET / answers the greeting (the GREETING variable, else the file GREETING_FILE names),
the version and the server's name; GET /healthz answers "ok". It listens on PORT (8080).

Like most Python programs, it installs no SIGTERM handler. Run as a container's first
process (PID 1), it therefore ignores SIGTERM, since the kernel delivers no signal to
PID 1 that the process has not asked for: such a server only stops when it is killed,
once the stop timeout has passed. The service's `init = true` runs a minimal init as
PID 1 instead, which forwards SIGTERM to this program, and it stops at once.
"""

import os
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def load_greeting():
    if os.environ.get("GREETING"):
        return os.environ["GREETING"].strip()
    path = os.environ.get("GREETING_FILE", "/app/greeting.txt")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return "Hello from Python!"


GREETING = load_greeting()
VERSION = os.environ.get("VERSION", "dev")
SERVER = socket.gethostname()


class Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the front door's connections are reused.
    protocol_version = "HTTP/1.1"
    # An idle connection is closed after this long, so it does not hold a thread.
    timeout = 30

    def do_GET(self):
        if self.path == "/":
            self.answer(200, f"{GREETING}\nversion: {VERSION}\nserver: {SERVER}\n")
        elif self.path == "/healthz":
            self.answer(200, "ok\n")
        else:
            self.answer(404, "not found\n")

    def answer(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        # One line per request would flood the server's log under load.
        pass


def main():
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer(("", port), Handler)
    server.daemon_threads = True
    print(f"listening on :{port}, version {VERSION}, pid {os.getpid()}", file=sys.stderr)
    server.serve_forever()


if __name__ == "__main__":
    main()
