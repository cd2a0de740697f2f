"""The twin domain: device.twin, updateDesiredState, twinChanged."""
