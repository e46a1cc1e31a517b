"""HTTP plumbing shared by the OMOAI services (never by the operator): one error shape, bearer
authentication, probes and ``/metrics``, request-size limits and bounded admission.
"""
