"""The audit log: who did what to which rollout or device, and why (store, REST view, CLI)."""
