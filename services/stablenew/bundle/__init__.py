"""The bundle service: drafts, the prompt-pack library and normalisation into executable jobs."""
