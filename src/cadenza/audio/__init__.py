"""Audio in and out: transcription of recordings, the audio codec and the audio prior (issue 8)."""
