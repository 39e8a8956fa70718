"""The runner service: one Stable Diffusion WebUI on its GPU host, and the images it writes."""
