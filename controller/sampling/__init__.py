"""Per-group sampling on the devices: the share of prediction records a group keeps, set by
the operator per label selector and delivered to each device as a retained order."""
