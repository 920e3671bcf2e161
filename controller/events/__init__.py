"""Outgoing events: the webhook deliverer that drains the store's outbox."""

from controller.events.webhook import WebhookDeliverer, sign

__all__ = ["WebhookDeliverer", "sign"]
