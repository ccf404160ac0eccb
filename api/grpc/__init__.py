"""The centres' way in: ``suanli.v1.Redemption`` over gRPC with mutual TLS.

* ``server``: the server (TLS, health, reflection) on its own event loop thread;
* ``interceptor``: who is calling (the centre of the client certificate);
* ``servicer``: each RPC: parse, check at the edge, call one use case or view, answer;
* ``stream``: ClaimStream, many claims over one call;
* ``messages``: protobuf messages to and from what the use cases take and give.
"""
