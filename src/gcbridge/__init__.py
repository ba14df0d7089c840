"""gcbridge: Genesys Cloud notifications into ServiceNow.

Two faces:

* :mod:`gcbridge.genesys` -- an asyncio notification client (``NotificationClient``) that owns tokens,
  channels, subscriptions, the WebSocket and every kind of rotation, and yields events plus explicit gaps.
* ``gcbridge run`` -- the bridge service: the client, a durable outbox and a ServiceNow writer.
"""

__version__ = "0.1.0"
