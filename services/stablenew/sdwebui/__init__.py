"""Facts of the AUTOMATIC1111 WebUI API shared by the runner (its client), the emulator, and the
queue and the bundle (which check the names jobs use against what the runners' WebUIs offer)."""
