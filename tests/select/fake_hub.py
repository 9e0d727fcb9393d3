"""A local stand-in for the Hugging Face Hub API that records what a push sends (the Hub is unreachable here).

It answers the calls a dataset push makes — create the repository, ask how each file is uploaded
(``preupload``: every file inline, "regular"), validate the README's YAML header, and the commit
(NDJSON: a header, then one line per file, base64) — and keeps each request and the files
committed. Anything else is a
404, recorded too, so a test sees any call it did not expect.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self) -> None:
        self.requests: list[dict] = []  # {"method", "path", "headers", "body"}
        self.repos: list[dict] = []
        self.validated: list[dict] = []
        self.commits: list[dict] = []  # {"repo", "header", "files": {path: bytes}}
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                hub.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers), "body": b""})
                self._reply(404, {"error": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
                path = self.path.split("?")[0]
                parts = path.strip("/").split("/")
                if path == "/api/validate-yaml":  # the README's YAML header, checked before the commit
                    hub.validated.append(json.loads(body))
                    return self._reply(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    req = json.loads(body)
                    hub.repos.append(req)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}"
                    return self._reply(200, {"url": f"{hub.endpoint}/datasets/{repo}", "name": repo})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "preupload":
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
                if len(parts) == 6 and parts[:2] == ["api", "datasets"] and parts[4] == "commit":
                    header, files = None, {}
                    for line in body.decode().splitlines():
                        item = json.loads(line)
                        if item["key"] == "header":
                            header = item["value"]
                        elif item["key"] == "file":
                            files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    hub.commits.append({"repo": "/".join(parts[2:4]), "header": header, "files": files})
                    return self._reply(200, {"commitUrl": f"{hub.endpoint}/datasets/{parts[2]}/{parts[3]}/commit/1",
                                             "commitOid": "1" * 40, "success": True})
                self._reply(404, {"error": "not found"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
