"""A webhook receiver on 127.0.0.1 that keeps every JSON body posted to it."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, status: int = 200) -> None:
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "Receiver":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()


class TelemetryReceiver:
    """Application Insights' ingestion endpoint (``/v2.1/track``) on 127.0.0.1: keeps every envelope."""

    def __init__(self) -> None:
        import gzip

        envelopes: list[dict] = []
        self.envelopes = envelopes

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                batch = json.loads(body)
                envelopes.extend(batch if isinstance(batch, list) else [batch])
                answer = json.dumps({"itemsReceived": len(batch), "itemsAccepted": len(batch), "errors": []})
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(answer.encode())

            def log_message(self, *_) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.connection_string = (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
            f"IngestionEndpoint=http://127.0.0.1:{self.server.server_address[1]}/"
        )
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def of_type(self, base_type: str) -> list[dict]:
        return [e for e in list(self.envelopes) if e.get("data", {}).get("baseType") == base_type]

    def __enter__(self) -> "TelemetryReceiver":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()
