"""``acdctl harness``: real SIP phones and callers (pjsua2) to check a deployment and load-test it.

Optional: needs ``pip install '.[harness]'`` (the ``pjsua2-python`` wheel, matplotlib). pjsua2 runs
only inside :mod:`controller.harness.worker` subprocesses; everything else here is plain asyncio
talking to them in JSON lines, so importing this package never loads pjsua2.
"""
