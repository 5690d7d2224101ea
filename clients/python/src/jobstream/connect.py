"""Channels to a jobstream server: address, token and TLS, shared by clients and workers."""

import os

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
# Messages up to the server's own limit (an artifact chunk is 1 MiB, a job's params and
# result up to --max_params_bytes).
_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.keepalive_time_ms", 30000),
            # Reconnects to a server that went away are tried at least every 2 s (gRPC's
            # default backoff grows to 2 min): a call made once it is back finds it soon,
            # and the retry loops here, which bound how long they try, do the waiting.
            # (Not grpc.min_reconnect_backoff_ms: that is also how long a connection attempt
            # may take, a TLS handshake on a busy machine included; its default stays 20 s.)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000)]


class TLS:
    """How to reach a server over TLS.

    ca: the PEM file of the CA that signed the server's certificate (None: the system's).
    cert, key: this client's certificate and key (PEM files), for a server that asks for
    them (mutual TLS; workers of a server started with --tls_client_ca).
    server_name: the name to check the certificate against, when it is not the address's.
    """

    def __init__(self, ca=None, cert=None, key=None, server_name=None):
        if (cert is None) != (key is None):
            raise ValueError("TLS: cert and key go together")
        self.ca, self.cert, self.key, self.server_name = ca, cert, key, server_name

    def credentials(self):
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        return grpc.ssl_channel_credentials(read(self.ca), read(self.key), read(self.cert))


def _tls_of(tls):
    if tls is None or tls is False:
        return None
    if tls is True:
        return TLS()
    if isinstance(tls, TLS):
        return tls
    if isinstance(tls, dict):
        return TLS(**tls)
    raise TypeError("tls must be None, True, a dict or jobstream.TLS, not %r" % (tls,))


class Connection:
    """What every call of a client needs: the target, credentials and call metadata.

    token: a bearer token for a server started with --auth_tokens; None reads
    $JOBSTREAM_TOKEN (empty: none).
    """

    def __init__(self, address=None, token=None, tls=None, options=None):
        self.address = address or os.environ.get("JOBSTREAM_SERVER") or DEFAULT_ADDRESS
        if token is None:
            token = os.environ.get("JOBSTREAM_TOKEN", "").strip()
        self.metadata = (("authorization", "Bearer " + token),) if token else ()
        self.tls = _tls_of(tls)
        self.options = list(_OPTIONS) + list(options or [])
        if self.tls is not None and self.tls.server_name:
            self.options.append(("grpc.ssl_target_name_override", self.tls.server_name))

    def channel(self):
        if self.tls is None:
            return grpc.insecure_channel(self.address, options=self.options)
        return grpc.secure_channel(self.address, self.tls.credentials(), options=self.options)

    def aio_channel(self):
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address, options=self.options)
        return grpc.aio.secure_channel(self.address, self.tls.credentials(), options=self.options)

    def with_trace(self, traceparent):
        """The call metadata, plus a W3C traceparent if given."""
        if not traceparent:
            return self.metadata
        return self.metadata + (("traceparent", traceparent),)
