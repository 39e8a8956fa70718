"""Facts of the AUTOMATIC1111 WebUI API shared by the runner (its client) and the emulator."""
