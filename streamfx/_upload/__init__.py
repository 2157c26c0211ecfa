"""Internal; import the public names from `streamfx`."""
