#!/usr/bin/env python3
"""Webhooks verified by Stripe's own library (run by .ci/check-stripe).

Starts the real server (the binary given as argv[1]) on 127.0.0.1 with a CA
made here (openssl), and an HTTPS receiver whose certificate that CA signed.
Creates an endpoint on the receiver, makes payments, and checks that every
delivery's `x-vinr-signature` header verifies with
`stripe.WebhookSignature.verify_header` under the endpoint's secret; then rolls
the secret and checks that, during the overlap, a delivery verifies under the
new secret and under the old one, each on its own, as Stripe's verifiers do
during a rotation; and that a wrong secret fails. Exits non-zero on any failure.
"""

import http.server
import json
import os
import queue
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import stripe

KEY = "sk_ci_stripe_check_0123456789abcdef"
TOLERANCE = 300
WAIT_SECONDS = 30


def run(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    """A CA, and a server certificate for localhost/127.0.0.1 signed by it."""
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=ci test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
        "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "srv.pem", "-days", "1", "-extfile", "ext.cnf", cwd=d)


def receiver(d, deliveries):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            deliveries.put((body.decode(), self.headers.get("x-vinr-signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "srv.pem"), os.path.join(d, "srv.key"))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(port, method, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def verifies(payload, header, secret):
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, TOLERANCE)
        return True
    except stripe.SignatureVerificationError:
        return False


def next_delivery(deliveries):
    try:
        return deliveries.get(timeout=WAIT_SECONDS)
    except queue.Empty:
        sys.exit("check-stripe: no delivery arrived within %d s" % WAIT_SECONDS)


def main():
    binary = os.path.abspath(sys.argv[1])
    with tempfile.TemporaryDirectory() as d:
        make_certs(d)
        deliveries = queue.Queue()
        hook_port = receiver(d, deliveries)
        port = free_port()
        env = dict(os.environ, LEDGER_SECRET_KEY=KEY, LEDGER_WEBHOOK_CA_FILE=os.path.join(d, "ca.pem"),
                   LEDGER_WEBHOOK_ALLOW_PRIVATE="1", RUST_LOG="warn")
        server = subprocess.Popen([binary, "serve", "--data", os.path.join(d, "data"), "--listen",
                                   f"127.0.0.1:{port}"], env=env, stdout=subprocess.DEVNULL)
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2)
                    break
                except Exception:
                    if time.time() > deadline or server.poll() is not None:
                        sys.exit("check-stripe: the server did not become ready")
                    time.sleep(0.2)
            endpoint = api(port, "POST", "/v1/webhook_endpoints",
                           {"url": f"https://localhost:{hook_port}/hooks", "enabled_events": ["payment.completed"]})
            old = endpoint["secret"]
            api(port, "POST", "/v1/payments", {"amount": 500, "currency": "eur", "confirm": True})
            payload, header = next_delivery(deliveries)
            assert json.loads(payload)["type"] == "payment.completed", payload
            assert verifies(payload, header, old), f"Stripe's verifier refused {header!r}"
            assert not verifies(payload, header, "whsec_wrong"), "a wrong secret verified"

            new = api(port, "POST", f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret",
                      {"expire_in_seconds": 3600})["secret"]
            assert new != old
            api(port, "POST", "/v1/payments", {"amount": 700, "currency": "eur", "confirm": True})
            payload, header = next_delivery(deliveries)
            assert header.count("v1=") == 2, header
            assert verifies(payload, header, new), "the new secret does not verify during the overlap"
            assert verifies(payload, header, old), "the old secret does not verify during the overlap"

            api(port, "POST", f"/v1/webhook_endpoints/{endpoint['id']}/roll_secret", {"expire_in_seconds": 0})
            api(port, "POST", "/v1/payments", {"amount": 900, "currency": "eur", "confirm": True})
            payload, header = next_delivery(deliveries)
            assert not verifies(payload, header, old) and not verifies(payload, header, new), \
                "secrets rolled away still verify"
        finally:
            server.kill()
            server.wait()
    print("check-stripe: ok: deliveries over HTTPS verified by stripe %s, across a secret roll" % stripe.VERSION)


if __name__ == "__main__":
    main()
