"""GCS test fixtures (gcp-storage-emulator on 127.0.0.1): filled in by the GCS work."""
