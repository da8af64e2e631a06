"""A minimal SMS gateway for phone-verify's webhook provider: checks the Standard Webhooks
signature, prints the message, answers 202 with an id. Replace the print with your carrier's API.

    SMS_WEBHOOK_SECRET=whsec_... python3 receiver.py 8091
"""
import base64, hashlib, hmac, json, os, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer

KEY = base64.b64decode(os.environ["SMS_WEBHOOK_SECRET"].removeprefix("whsec_"))

class Gateway(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        msg_id, ts = self.headers["webhook-id"], self.headers["webhook-timestamp"]
        mac = hmac.new(KEY, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
        expected = "v1," + base64.b64encode(mac).decode()
        signed = any(hmac.compare_digest(expected, s) for s in self.headers["webhook-signature"].split())
        if not signed or abs(time.time() - int(ts)) > 300:
            return self.answer(401, {"error": "invalid_signature"})
        sms = json.loads(body)
        print(f"SMS {msg_id} to {sms['to']}: {sms['body']!r}", flush=True)
        self.answer(202, {"provider_message_id": "gw-" + msg_id[:8]})

    def answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

HTTPServer(("127.0.0.1", int(sys.argv[1])), Gateway).serve_forever()
