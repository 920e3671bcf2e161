"""WhatsApp Cloud API sidecar: Meta's webhooks in, agents' messages out, failures explained.

Layout (one job per module):

- ``parse``   : webhook JSON -> typed events, tolerant of every shape Meta may send
- ``chat``    : the pure rules (status lattice, sort keys, 24-hour window)
- ``errors``  : Meta error catalog with agent-facing pt-BR/en texts and retry classes
- ``models``  : tables (on controller.store.Base)
- ``ingest``  : stored webhook bodies -> conversations, messages, statuses, alerts, change log
- ``graph``   : the Graph API client (send text/template)
- ``sender``  : per-conversation send queues, retries, failures
- ``relay``   : live push (WebSocket/SSE hub) and the outgoing webhook
- ``writer``  : write transactions (SQLite: one synchronous connection, no per-statement thread hops)
- ``webhook`` / ``api`` : HTTP routes; ``cors`` the panel's origins; ``templates`` approved templates
- ``auth``    : the controller's token check (``controller.api.auth``) plus conversation visibility
- ``metrics`` : counters and their Prometheus export; ``service`` wiring; ``demo`` simulated traffic
"""

from controller.store.base import register_models

register_models("controller.whatsapp.models")  # its tables, for migrations (the store names no feature)
