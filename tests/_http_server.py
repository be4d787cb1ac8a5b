"""A file server on 127.0.0.1 for the download tests: HTTP Range requests, and the ways a real
server misbehaves (a dropped connection, a slow or stalled response)."""

from __future__ import annotations

import http.server
import threading
import time


class FileServer:
    """Serves ``files`` (path -> bytes) with HTTP Range support and records every request.

    - ``truncate_first``: the first full response of each path named there stops half-way, as a
      dropped connection does;
    - ``delay``: seconds every response waits before it starts;
    - ``stall``: full responses stop half-way until ``resume`` is set (or the server closes).
    """

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.truncate_first: set[str] = set()
        self.delay = 0.0
        self.stall = False
        self.resume = threading.Event()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):  # noqa: N802 - the http.server name
                body, rng = server.files.get(self.path), self.headers.get("Range")
                server.requests.append((self.path, rng))
                time.sleep(server.delay)
                if body is None:
                    self.send_error(404)
                    return
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                chunk = body[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                cut = not rng and (server.stall or self.path in server.truncate_first)
                if cut:
                    server.truncate_first.discard(self.path)
                    self.wfile.write(chunk[: len(chunk) // 2])
                    self.wfile.flush()
                    if server.stall:
                        server.resume.wait(60)
                    self.close_connection = True
                    return
                self.wfile.write(chunk)

        return Handler

    def close(self) -> None:
        self.resume.set()
        self.httpd.shutdown()
        self.httpd.server_close()
