"""R4 rest-hook Subscriptions: match committed writes against Subscription criteria and deliver notifications.

:mod:`~hub.subscriptions.matcher` turns the store's write events into deliveries (only what
the subscribing client may read), :mod:`~hub.subscriptions.delivery` sends them with retries
and backoff, :mod:`~hub.subscriptions.worker` runs both in the background of the API process.
"""
