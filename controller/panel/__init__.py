"""The agent panel: a static page (``static/``), its live stream (:mod:`.hub`), CRM lookups (:mod:`.crm`).

Served by the controller's HTTP API (``acdctl run`` and ``acdctl demo``) at ``/``; the contract
between page and services is in ``docs/panel.md``.
"""
