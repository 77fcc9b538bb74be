"""Fleet security kept by the controller: the fleet CA and device credentials (``pki``), the
Mosquitto password hashes (``passwords``), the generated broker configuration
(``broker_config``), enrollment bundles (``enrollment``) and manifest-signing keys
(``signing_keys``). API tokens live in :mod:`controller.security.auth`.

Everything here works on files under the controller's data directory and runs on the controller
host (``edgewise devices enroll``, ``edgewise keys create`` ...): none of it is reachable over the
REST API, so a stolen API token cannot mint device credentials or signing keys.
"""

from controller.security.pki import (
    CONTROLLER_IDENTITY,
    FleetCA,
    Identity,
    PkiError,
)

__all__ = ["CONTROLLER_IDENTITY", "FleetCA", "Identity", "PkiError"]
