"""Test-wide setup: two CPU devices, so the multi-device path is tested on any laptop.

The flag must be set before JAX starts its CPU backend, i.e. before any test runs.
"""

import os

if "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    ).strip()
